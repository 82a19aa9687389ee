// The API explorer's run: sends the request from this browser to the
// gateway (same origin) with the API key typed in, and shows the answer.
// The key lives in sessionStorage only (this tab, until it closes): it is
// never sent to the portal and never stored beyond the tab.

const form = document.getElementById("explorer");
const keyField = document.getElementById("api-key");
const request = document.getElementById("request");
const statusLine = document.getElementById("response-status");
const output = document.getElementById("response");
const storageKey = "helix-explorer-api-key";

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: the key is typed each time
  }
}

if (form && keyField && request && statusLine && output) {
  for (const el of document.querySelectorAll(".js-only")) el.hidden = false;
  for (const el of document.querySelectorAll(".no-js")) el.hidden = true;
  const saved = storage()?.getItem(storageKey);
  if (saved) keyField.value = saved;
  keyField.addEventListener("change", () => {
    const s = storage();
    if (!s) return;
    if (keyField.value) s.setItem(storageKey, keyField.value.trim());
    else s.removeItem(storageKey);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyField.value.trim();
    output.textContent = "";
    if (!key) {
      statusLine.textContent = "Enter an API key first.";
      keyField.focus();
      return;
    }
    try {
      JSON.parse(request.value);
    } catch (err) {
      statusLine.textContent = "The request is not valid JSON: " + err.message;
      request.focus();
      return;
    }
    storage()?.setItem(storageKey, key);
    const button = document.getElementById("run");
    button.disabled = true;
    statusLine.textContent = "Running…";
    const started = performance.now();
    try {
      const answer = await fetch(form.dataset.inferPath, {
        method: "POST",
        // The portal's cookies stay out of the inference call.
        credentials: "omit",
        cache: "no-store",
        headers: { "Authorization": "Bearer " + key, "Content-Type": "application/json" },
        body: request.value,
      });
      const ms = Math.round(performance.now() - started);
      const text = await answer.text();
      let shown = text;
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        // not JSON: shown as it came
      }
      statusLine.textContent = answer.status + " " + answer.statusText + " in " + ms + " ms";
      output.textContent = shown;
    } catch (err) {
      statusLine.textContent = "The request failed: " + err.message;
    } finally {
      button.disabled = false;
    }
  });
}
