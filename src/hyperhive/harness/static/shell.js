/* hyperhive — the agent page's shell: an xterm.js terminal onto a login shell inside the agent's
 * cage, as its uid (architecture §14). The core serves it, not the harness:
 *
 *   POST _shell/ticket   (session + CSRF)  → {ticket, ws}: single use, short-lived
 *   WS   _shell/ws?ticket=…                 binary = terminal bytes both ways;
 *                                           text = JSON control (resize ↑, hello/exit ↓)
 *   POST _shell/end                         hang the shell up
 *
 * One shell per agent, shared by every viewer; a new viewer gets the recent screen. Closing the
 * tab leaves it running until it has had no viewer for 15 minutes.
 * (Not the event log: that is common/terminal.js, a DOM log of the agent's turns.)
 */
(function () {
  "use strict";
  const hive = window.hive || (window.hive = {});
  const $ = (id) => document.getElementById(id);
  const enc = new TextEncoder();

  const state = { term: null, fit: null, ws: null, session: null, exited: false };
  hive.shell = state; // for the browser tests: the terminal's rows/cols and its buffer

  function note(text, kind) {
    const n = $("shell-note");
    n.textContent = text;
    n.className = "shell-note " + (kind || "muted");
  }

  function showOpen(label) {
    const open = $("shell-open");
    open.textContent = label;
    open.classList.remove("hidden");
  }

  function send(data) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(data);
  }

  function sendSize() {
    if (state.term) send(JSON.stringify({ type: "resize", rows: state.term.rows, cols: state.term.cols }));
  }

  function openLink(_event, uri) {
    if (!/^https?:\/\//i.test(uri)) return;
    window.open(uri, "_blank", "noopener,noreferrer");
  }

  function ensureTerm() {
    if (state.term) return;
    const host = $("shell-host");
    host.classList.remove("hidden");
    const term = new window.Terminal({
      cursorBlink: true,
      scrollback: 5000,
      fontFamily: getComputedStyle(document.body).fontFamily || "monospace",
      fontSize: 13,
      theme: { background: "#11111b", foreground: "#cdd6f4", cursor: "#a6e3a1", selectionBackground: "#585b70" },
    });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.loadAddon(new window.WebLinksAddon.WebLinksAddon(openLink));
    term.open(host);
    state.term = term;
    state.fit = fit;
    fit.fit();
    term.onData((d) => send(enc.encode(d)));
    term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)));
    term.onResize(sendSize);
    let pending = null;
    new ResizeObserver(() => {
      clearTimeout(pending);
      pending = setTimeout(() => state.fit.fit(), 60);
    }).observe(host);
  }

  function control(msg) {
    if (msg.type === "hello") {
      state.session = msg.session;
      state.exited = false;
      note(
        msg.isolated
          ? "shell #" + msg.session + " in the " + msg.cage + " cage, as the agent's uid"
          : "shell #" + msg.session + ": " + msg.cage + " cage — NOT isolated, this runs on the host",
        msg.isolated ? "muted" : "warn",
      );
      $("shell-end").classList.remove("hidden");
      sendSize();
    } else if (msg.type === "exit") {
      state.exited = true;
      const how = msg.exit_code !== null && msg.exit_code !== undefined ? "exit " + msg.exit_code : "signal " + msg.signal;
      note("shell #" + state.session + " ended (" + how + ")", "muted");
      $("shell-end").classList.add("hidden");
      showOpen("▶ new shell");
    } else if (msg.type === "error") {
      note(msg.error, "error");
    }
  }

  async function connect() {
    ensureTerm();
    const ticket = await hive.post("_shell/ticket", {});
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(proto + location.host + ticket.ws + "?ticket=" + encodeURIComponent(ticket.ticket));
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        try { control(JSON.parse(ev.data)); } catch (_e) { /* not ours */ }
      } else {
        state.term.write(new Uint8Array(ev.data));
      }
    };
    ws.onclose = () => {
      if (state.ws !== ws) return;
      state.ws = null;
      if (!state.exited) {
        note("disconnected from the shell (it keeps running for 15 minutes without a viewer)", "warn");
        showOpen("▶ reconnect");
      }
    };
    ws.onopen = () => state.term.focus();
  }

  function init() {
    const open = $("shell-open");
    if (!open) return;
    open.addEventListener("click", () => hive.busy(open, async () => {
      if (state.term && state.exited) state.term.reset();
      await connect();
      open.classList.add("hidden");
    }));
    const end = $("shell-end");
    end.addEventListener("click", () => hive.busy(end, async () => {
      if (!window.confirm("end this shell? (every viewer loses it)")) return;
      await hive.post("_shell/end", {});
    }));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
