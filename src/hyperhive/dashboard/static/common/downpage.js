/* The core's down page for an agent (dashboard/downpage.py).
 * `▶ start` posts with fetch, since a plain form post carries `Origin: null` under the
 * no-referrer policy and the guard refuses it; the token is the page's own, bound to this
 * agent's path. The page follows the hive's live stream from the seq it was rendered at and
 * reloads into the agent's own page once its harness reports in. */
(function () {
  "use strict";
  const body = document.body;
  const name = body.dataset.agent;
  const status = document.getElementById("down-status");
  const say = (text) => { if (status) status.textContent = text; };

  const form = document.getElementById("down-start-form");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      say("starting…");
      try {
        const resp = await fetch(form.action, {
          method: "POST", credentials: "same-origin", redirect: "manual",
          headers: { "X-CSRF-Token": form.elements.csrf.value },
        });
        if (resp.type === "opaqueredirect" || resp.ok) {
          say("started; this page opens the agent's own page when its harness reports in");
          return;
        }
        say("not started: " + (await resp.text()).replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 300));
      } catch (e) {
        say("not started: " + e.message);
      }
      button.disabled = false;
    });
  }

  if (!name || !window.EventSource) return;
  const es = new EventSource("/api/stream?last_event_id=" + encodeURIComponent(body.dataset.seq || "0"));
  es.addEventListener("agent_changed", (msg) => {
    let d = null;
    try { d = JSON.parse(msg.data).data; } catch (_e) { return; }
    if (!d || d.name !== name) return;
    if (d.state === "running" && d.harness_state && d.harness_state !== "starting") {
      es.close();
      window.location.reload();
    } else if (d.state === "crashed" && d.down) {
      say("crashed again: " + d.down.reason + (d.down.gave_up ? " — gave up" : ""));
      if (form) form.querySelector("button").disabled = false;
    } else {
      say("state: " + d.state);
    }
  });
  es.addEventListener("agent_removed", (msg) => {
    let d = null;
    try { d = JSON.parse(msg.data).data; } catch (_e) { return; }
    if (d && d.name === name) { es.close(); window.location.reload(); }
  });
})();
