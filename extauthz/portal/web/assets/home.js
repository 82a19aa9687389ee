// The home page's live demo: a short-lived demo token from the portal
// (POST /portal/demo/token with the form's CSRF field), then a KServe v2
// inference request to the gateway on this same origin. The form is
// hidden until this script runs (without script the page says so).

const form = document.querySelector("#demo");
if (form) {
  const status = form.querySelector("#demo-status");
  const output = form.querySelector("#demo-response");
  const request = form.querySelector("#demo-request");
  const button = form.querySelector("button[type=submit]");
  let token = null;
  let expires = 0;

  const say = (text, bad = false) => {
    status.textContent = text;
    status.classList.toggle("error-text", bad);
  };

  // demoToken reuses the token until a few seconds before it expires.
  async function demoToken() {
    if (token && Date.now() < expires - 10000) return token;
    const res = await fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf: form.elements.csrf.value }),
    });
    if (!res.ok) {
      let why = "the demo is unavailable right now";
      try { why = (await res.json()).error_description || why; } catch { /* an HTML error page */ }
      throw new Error(why);
    }
    const body = await res.json();
    token = body.access_token;
    expires = Date.now() + body.expires_in * 1000;
    return token;
  }

  form.hidden = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = JSON.stringify(JSON.parse(request.value));
    } catch (err) {
      say("The request body is not valid JSON: " + err.message, true);
      request.focus();
      return;
    }
    button.disabled = true;
    output.textContent = "";
    try {
      say("Getting a demo token…");
      const bearer = await demoToken();
      say("Running inference…");
      const started = performance.now();
      const res = await fetch(form.dataset.infer, {
        method: "POST",
        headers: { "Authorization": "Bearer " + bearer, "Content-Type": "application/json" },
        body,
      });
      const ms = Math.round(performance.now() - started);
      const text = await res.text();
      try {
        // Indented, with arrays of numbers kept on one line.
        output.textContent = JSON.stringify(JSON.parse(text), null, 2)
          .replace(/\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]/g, (_, items) => "[" + items.split(/,\s*/).join(", ") + "]");
      } catch {
        output.textContent = text;
      }
      if (res.ok) {
        say(`Done: ${res.status} in ${ms} ms.`);
      } else {
        if (res.status === 401) token = null;
        say(`The gateway answered ${res.status} ${res.statusText}` + (res.status === 429 ? ": the demo's plan limit; wait a moment." : "."), true);
      }
    } catch (err) {
      say("The demo failed: " + err.message, true);
    } finally {
      button.disabled = false;
    }
  });
}
