// The portal's shared script: progressive enhancement only (every page
// works without it). Loaded as a module from this origin (CSP: no inline
// script).

// Copy buttons: <button data-copy="#id"> copies the text of #id.
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", async () => {
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
  });
}
