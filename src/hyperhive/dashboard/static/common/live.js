/* hyperhive — shared front-end helpers (dashboard + per-agent pages; no build step).
 *
 * window.hive:
 *   csrfToken()                    the CSRF token: on /agent/<name>/ the `hh_page_csrf` cookie (bound
 *                                  to that agent), elsewhere the page's <meta name="hh-csrf">
 *   post(url, data?)               POST JSON with X-CSRF-Token; resolves to the JSON reply,
 *                                  rejects with Error(message) (.status, .body) on !ok
 *   getJSON(url)                   GET, same-origin credentials, rejects on !ok
 *   toast(text, kind?, ms?)        kind: "ok" | "error" | "info"
 *   busy(button, fn)               spinner in the button while `await fn()` runs; error → toast
 *   el(tag, props?, ...children)   build DOM; string children become TEXT nodes (never HTML)
 *   fmtAge(seconds) fmtClock(ts) fmtDate(ts) fmtBytes(n) fmtMMSS(seconds)
 *   stream(url, {onEvent, onOpen, onError, after, epoch, onReset, onMissed})
 *                                  EventSource that drops events with seq <= the last one seen
 *                                  (snapshot seq passed as `after`); resumes via Last-Event-ID.
 *                                  `epoch` (the snapshot's) makes the server answer `reset` once
 *                                  its ids began again (a restart): onReset closes the stream and
 *                                  the page reloads its snapshot. onMissed({missed}) says the
 *                                  server's history no longer reached back to `after`.
 *
 * Agent-provided text must go through el()/textContent — never innerHTML.
 */
(function () {
  "use strict";
  const hive = window.hive || (window.hive = {});

  hive.csrfToken = function () {
    if (location.pathname.startsWith("/agent/")) { // the agent serves this page's HTML: no <meta> trusted
      const m = document.cookie.match(/(?:^|;\s*)hh_page_csrf=([^;]+)/);
      return m ? decodeURIComponent(m[1]) : "";
    }
    const meta = document.querySelector('meta[name="hh-csrf"]');
    return meta ? meta.content : "";
  };

  async function parse(resp) {
    const type = resp.headers.get("content-type") || "";
    let body = null;
    if (type.includes("application/json")) {
      try { body = await resp.json(); } catch (_e) { body = null; }
    } else {
      try { body = { text: await resp.text() }; } catch (_e) { body = null; }
    }
    if (!resp.ok || (body && body.ok === false)) {
      let msg = (body && (body.error || body.detail)) || resp.statusText || "request failed";
      if (resp.status === 401) msg = "session expired — log in again with the url from `hive dashboard-url`";
      const err = new Error(String(msg));
      err.status = resp.status;
      err.body = body;
      throw err;
    }
    return body;
  }

  hive.post = async function (url, data) {
    const resp = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": hive.csrfToken() },
      body: JSON.stringify(data || {}),
    });
    return parse(resp);
  };

  hive.getJSON = async function (url) {
    const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    return parse(resp);
  };

  /* ---- DOM ---- */
  hive.el = function (tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === "class" || k === "className") node.className = v;
        else if (k === "text") node.textContent = String(v);
        else if (k === "dataset") Object.assign(node.dataset, v);
        else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
        else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
        else if (v === true) node.setAttribute(k, "");
        else node.setAttribute(k, String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  };

  /* ---- toasts ---- */
  let toasts = null;
  hive.toast = function (text, kind, ms) {
    if (!toasts) {
      toasts = hive.el("div", { class: "hh-toasts", role: "status", "aria-live": "polite" });
      document.body.appendChild(toasts);
    }
    const t = hive.el("div", { class: "hh-toast " + (kind || "ok") }, String(text));
    toasts.appendChild(t);
    setTimeout(() => t.remove(), ms || (kind === "error" ? 7000 : 3500));
    return t;
  };

  /* ---- spinner buttons ---- */
  hive.busy = async function (button, fn) {
    if (button && button.disabled) return undefined;
    let spin = null;
    if (button) {
      button.disabled = true;
      spin = hive.el("span", { class: "spinner", "aria-hidden": "true" });
      button.prepend(spin);
    }
    try {
      return await fn();
    } catch (err) {
      hive.toast(err && err.message ? err.message : String(err), "error");
      return undefined;
    } finally {
      if (button) {
        button.disabled = false;
        if (spin) spin.remove();
      }
    }
  };

  /* ---- formatting ---- */
  hive.fmtAge = function (seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
  };
  hive.fmtMMSS = function (seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  };
  /* the one date format of the web UI and the CLI: local YYYY-MM-DD HH:MM:SS */
  hive.fmtDate = function (ts) {
    if (!ts) return "—";
    const d = new Date(ts * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  };
  hive.fmtClock = function (ts) {
    if (!ts) return "";
    const d = new Date(ts * 1000);
    return d.toTimeString().slice(0, 8);
  };
  hive.fmtBytes = function (n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : String(v)) + " " + units[i];
  };

  /* ---- live stream ---- */
  hive.stream = function (url, opts) {
    const o = opts || {};
    let last = o.after || 0;
    const sep = url.includes("?") ? "&" : "?";
    // always name the resume point (0 included): a reconnect before any event then still
    // replays what was published in between; later reconnects send Last-Event-ID, which wins
    let full = o.after !== undefined && o.after !== null ? url + sep + "last_event_id=" + encodeURIComponent(last) : url;
    if (o.epoch) full += (full.includes("?") ? "&" : "?") + "epoch=" + encodeURIComponent(o.epoch);
    const es = new EventSource(full, { withCredentials: false });
    const control = (msg) => { try { return JSON.parse(msg.data); } catch (_e) { return {}; } };
    es.addEventListener("reset", (msg) => { es.close(); if (o.onReset) o.onReset(control(msg)); });
    es.addEventListener("missed", (msg) => { if (o.onMissed) o.onMissed(control(msg)); });
    const handle = (msg) => {
      const seq = Number(msg.lastEventId);
      if (!Number.isFinite(seq) || seq <= last) return; // snapshot already covers it, or a dupe
      last = seq;
      let data;
      try { data = JSON.parse(msg.data); } catch (_e) { return; }
      if (o.onEvent) o.onEvent(data, seq);
    };
    es.onmessage = handle;
    for (const kind of o.kinds || []) es.addEventListener(kind, handle);
    es.onopen = () => { if (o.onOpen) o.onOpen(); };
    es.onerror = (e) => { if (o.onError) o.onError(e, es.readyState); };
    return {
      source: es,
      get last() { return last; },
      close() { es.close(); },
    };
  };
})();
