/* The core's down page for an agent (dashboard/downpage.py): `▶ start` posts with fetch, since a
 * plain form post carries `Origin: null` under the no-referrer policy and the guard refuses it.
 * The token is the page's own, bound to this agent's path. */
(function () {
  "use strict";
  const form = document.getElementById("down-start-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button");
    const status = document.getElementById("down-status");
    button.disabled = true;
    status.textContent = "starting…";
    try {
      const resp = await fetch(form.action, {
        method: "POST", credentials: "same-origin", redirect: "manual",
        headers: { "X-CSRF-Token": form.elements.csrf.value },
      });
      if (resp.type === "opaqueredirect" || resp.ok) { window.location.reload(); return; }
      status.textContent = "not started: " + (await resp.text()).replace(/<[^>]*>/g, " ").trim().slice(0, 300);
    } catch (e) {
      status.textContent = "not started: " + e.message;
    }
    button.disabled = false;
  });
})();
