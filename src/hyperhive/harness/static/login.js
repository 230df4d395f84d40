/* hyperhive agent page — the login panel: run the CLI's login, show its URL, pass the code (an ES
 * module). */
import { $, hive, P } from "./page.js";

let loginPoll = null;

/* ---- login panel -------------------------------------------------------------------------- */

export function renderLogin(login, needed) {
  const panel = $("login-panel");
  const show = needed || (login && (login.running || login.note));
  panel.classList.toggle("hidden", !show);
  if (!login) return;
  const urlOk = login.url && /^https?:\/\//.test(login.url);
  $("login-url-row").classList.toggle("hidden", !urlOk);
  if (urlOk) { $("login-url").href = login.url; $("login-url").textContent = login.url; }
  $("login-code-form").classList.toggle("hidden", !login.running);
  $("login-output").textContent = (login.output || []).join("\n");
  $("login-status").textContent = login.running ? "login running…" : (login.note || "");
  $("login-start").textContent = login.started ? "restart login" : "start login";
  $("login-start").disabled = !!login.running;
  if (login.running && !loginPoll) {
    loginPoll = setInterval(async () => {
      try {
        const l = await hive.getJSON("api/login");
        if (P.snap) P.snap.login = l;
        renderLogin(l, P.snap && P.snap.state === "needs_login");
        if (!l.running) { clearInterval(loginPoll); loginPoll = null; P.refreshState(); }
      } catch (_e) { /* the next tick tries again */ }
    }, 1000);
  }
}

export function wireLogin() {
  $("login-start").addEventListener("click", () => hive.busy($("login-start"), async () => {
    const r = await hive.post("api/login/start", {});
    if (P.snap) P.snap.login = r.result;
    renderLogin(r.result, true);
  }));
  $("login-code-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    hive.busy($("login-code-btn"), async () => {
      const r = await hive.post("api/login/code", { code: $("login-code").value });
      $("login-code").value = "";
      if (P.snap) P.snap.login = r.result;
      renderLogin(r.result, true);
      hive.toast(r.result.note || "code sent", r.result.exit_code ? "error" : "ok");
    });
  });
}
