/* hyperhive — the per-agent page: live terminal, state badge, model chip, slash commands, inbox,
 * stats and the login panel. Served by the agent's harness and reached through the core at
 * /agent/<name>/, so every harness URL here is RELATIVE ("api/state", "events/stream"); the one
 * absolute URL is the core's own POST /api/send (the harness socket cannot send as the operator).
 *
 * Uses the core's shared helpers: window.hive from /static/common/live.js (post/getJSON with the
 * CSRF header, toast, busy, el, fmt*, stream) and hive.Terminal from /static/common/terminal.js
 * (sticky-bottom log with the "↓ N new" pill). Agent text only ever goes through textContent
 * (hive.el builds text nodes); nothing the agent says is parsed as HTML.
 *
 * The page is ES modules: renderers.js (the trail), chart.js, login.js, prompt.js over page.js
 * (the shared model); this one draws the header, keeps the trail live and boots the page.
 */
import { drawChart } from "./chart.js";
import { renderLogin, wireLogin } from "./login.js";
import { $, el, hive, note, now, P } from "./page.js";
import { buildPrompt, control } from "./prompt.js";
import { oneLine, renderers } from "./renderers.js";

// POSTs carry this page's token, which the core binds to <name> (never a <meta> the agent serves)
hive.csrfToken = function () {
  const m = document.cookie.match(/(?:^|;\s*)hh_page_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
};

let online = false;
let offlineSince = Date.now() / 1000;
let lastId = 0; // the newest event id rendered: history and stream never repeat one
let epoch = ""; // the Bus's: ids began again (a harness without a store restarted) when it changes
let live = null;
let reconnectTimer = null;
let refreshTimer = null;

/* ---- header: state badge, model chip, last turn ------------------------------------------ */

const LABELS = { idle: "idle", thinking: "thinking", compacting: "compacting ▣", needs_login: "needs login",
  starting: "starting", offline: "offline" };

function renderHeader() {
  const t = now();
  const st = online && P.snap ? P.snap.state : "offline";
  const since = online && P.snap ? P.snap.state_since : offlineSince;
  let label = LABELS[st] || st;
  if (st === "napping") {
    const left = P.snap.nap_until ? P.snap.nap_until - t : 0;
    label = "napping ☾ · " + hive.fmtMMSS(Math.max(0, left));
  }
  const badge = $("state-badge");
  badge.textContent = label + " · " + hive.fmtAge(t - (since || t));
  badge.className = "badge " + st.replace("_", "-");
  badge.dataset.state = st;
  badge.title = "since " + hive.fmtClock(since);
  $("cancel-btn").classList.toggle("hidden", st !== "thinking");
  $("end-nap-btn").classList.toggle("hidden", st !== "napping");
  $("compact-btn").classList.toggle("hidden", st !== "idle");
  $("compact-notes-btn").classList.toggle("hidden", st !== "idle");
  $("conn").textContent = online ? "live" : "offline · reconnecting";
  if (!P.snap) return;
  const chip = $("model-chip");
  const model = P.snap.model || "default";
  let status;
  if (P.snap.model_active && P.snap.model_active === P.snap.model) status = "active";
  else status = "queued for next turn";
  chip.textContent = "model " + model + " · " + status +
    (P.snap.model_queued_at ? " · switched " + hive.fmtClock(P.snap.model_queued_at) + (P.snap.model_switch_source === "config" ? " (deploy)" : "") : "") +
    (P.snap.model_config_hidden ? " · overrides the config's " + P.snap.model_default : "");
  chip.dataset.source = P.snap.model_switch_source || "";
  chip.dataset.hidden = P.snap.model_config_hidden ? "1" : "";
  chip.dataset.model = model;
  chip.dataset.status = status;
  chip.title = "default " + (P.snap.model_default || "—") + (P.snap.model_override ? ", override " + P.snap.model_override : "") +
    (P.snap.model_active ? ", last turn ran " + P.snap.model_active : "");
  $("last-turn").textContent = P.snap.last_turn_ms === null || P.snap.last_turn_ms === undefined
    ? "last turn —" : "last turn " + (P.snap.last_turn_ms / 1000).toFixed(1) + " s";
  $("store-chip").classList.toggle("hidden", P.snap.events_persistent !== false);
  if (typeof P.snap.notes_bytes === "number") {
    const limit = P.snap.notes_compact_bytes || 0;
    const notes = $("notes-chip");
    notes.textContent = "notes " + hive.fmtBytes(P.snap.notes_bytes) + (limit ? " / " + hive.fmtBytes(limit) : "");
    notes.dataset.bytes = String(P.snap.notes_bytes);
    notes.classList.toggle("warn", limit > 0 && P.snap.notes_bytes > limit);
    notes.title = "/state/notes.md: " + P.snap.notes_bytes + " bytes" + (limit ? ", compacted after a turn past " + limit : ", never compacted automatically") +
      (P.snap.notes_kept ? "; " + P.snap.notes_kept + " previous version(s) kept in /state/notes.history/" : "");
  }
  if (P.snap.events_store_error) $("store-chip").title = "event trail not persisted: " + P.snap.events_store_error;
  renderLogin(P.snap.login, st === "needs_login");
}

async function refreshState() {
  try {
    P.snap = await hive.getJSON("api/state");
  } catch (_err) {
    setOnline(false);
    return;
  }
  renderHeader();
}

function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refreshState(); }, 150);
}

function setOnline(value) {
  if (online === value) return;
  online = value;
  if (!value) offlineSince = now();
  renderHeader();
}

/* ---- the live trail ----------------------------------------------------------------------- */

function onEvent(e) {
  if (!e || typeof e.id !== "number" || e.id <= lastId) return;
  lastId = e.id;
  P.term.append(e);
  const p = e.payload || {};
  if (P.snap && e.kind === "state_changed") {
    P.snap.state = p.state;
    P.snap.state_since = p.since || e.ts;
    if (p.until) P.snap.nap_until = p.until;
    renderHeader();
  }
  if (e.kind === "turn_end") {
    if (P.snap && p.duration_ms !== undefined) P.snap.last_turn_ms = p.duration_ms;
    refreshStats();
    if (window.hiveTelemetry) window.hiveTelemetry.refresh();
    refreshInbox();
  }
  if (e.kind === "turn_start") refreshInbox();
  if (e.kind === "state_changed" || e.kind === "model_changed" || e.kind === "turn_end" || e.kind === "turn_start" ||
    e.kind === "notes_compacted" || e.kind === "notes_compaction_failed") refreshSoon();
}

async function loadHistory() {
  const h = await hive.getJSON("events/history?after=" + lastId);
  epoch = h.epoch || "";
  const fresh = (h.events || []).filter((e) => e.id > lastId);
  if (fresh.length) {
    P.term.appendMany(fresh);
    lastId = fresh[fresh.length - 1].id;
  }
  P.term.scrollToBottom();
}

function connect() {
  if (live) live.close();
  live = hive.stream("events/stream", {
    after: lastId,
    epoch,
    onEvent,
    onReset() { // the trail's ids began again: start the page's copy over
      lastId = 0;
      P.term.clear();
      loadHistory().then(connect, () => setOnline(false));
    },
    onMissed(m) {
      P.term.appendMany([{ id: 0, ts: Date.now() / 1000, kind: "note",
        payload: { text: "missed " + m.missed + " events: this page fell too far behind the live trail" } }]);
    },
    onOpen() { setOnline(true); refreshState(); },
    onError(_e, readyState) {
      setOnline(false);
      if (readyState === 2 && !reconnectTimer) { // closed for good (e.g. a 502 from the proxy): retry
        reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, 2000);
      }
    },
  });
  // stream.last starts at lastId: the server resumes after it, the helper drops anything older
}

/* ---- inbox and stats ---------------------------------------------------------------------- */

async function refreshInbox() {
  let reply;
  try { reply = await hive.getJSON("api/inbox?limit=20"); } catch (_e) { return; }
  const list = $("inbox");
  const msgs = reply.messages || [];
  $("inbox-count").textContent = msgs.length ? "last " + msgs.length : "";
  if (!msgs.length) { list.replaceChildren(el("li", { class: "hh-empty" }, "no messages yet")); return; }
  list.replaceChildren(...msgs.map((m) => el("li", { class: m.acked_at ? "acked" : "pending", dataset: { id: String(m.id) } },
    el("span", { class: "meta" }, "#" + m.id + " from " + m.sender + " · " + hive.fmtClock(m.sent_at)),
    el("span", { class: "body" }, oneLine(String(m.body || ""), 400)))));
}

let statsSeq = 0; // refreshes can overlap (turn_end + boot): only the newest reply is drawn

async function refreshStats() {
  const seq = ++statsSeq;
  let s;
  try { s = await hive.getJSON("api/stats"); } catch (_e) { return; }
  if (seq !== statsSeq) return;
  const box = $("stats");
  const kv = (k, v) => [el("span", { class: "k" }, k), el("span", { class: "v", dataset: { stat: k } }, String(v))];
  const avg = s.turns ? (s.total_ms / s.turns / 1000).toFixed(1) + " s" : "—";
  box.replaceChildren(
    ...kv("turns", s.turns + " (" + s.ok + " ok, " + s.failed + " failed, " + s.cancelled + " cancelled)"),
    ...kv("tokens in", s.input_tokens), ...kv("tokens out", s.output_tokens),
    ...kv("cache read", s.cache_read_input_tokens), ...kv("cache write", s.cache_creation_input_tokens),
    ...kv("cost", "$" + Number(s.cost_usd || 0).toFixed(4)), ...kv("avg turn", avg));
  $("stats-since").textContent = s.since ? "since " + hive.fmtDate(s.since) : "";
  drawChart(Array.isArray(s.series) ? s.series : []);
}

P.renderHeader = renderHeader;
P.refreshState = refreshState;

/* ---- boot --------------------------------------------------------------------------------- */

async function boot() {
  const host = $("term-host");
  host.classList.add("agent-term");
  P.term = new hive.Terminal(host, { renderers, maxRows: 2000 });
  P.term.scroll.id = "term";
  P.term.pill.id = "term-pill";
  const input = buildPrompt();
  $("cancel-btn").addEventListener("click", () => hive.busy($("cancel-btn"), async () => note(String(await control("api/cancel")))));
  $("end-nap-btn").addEventListener("click", () => hive.busy($("end-nap-btn"), async () => note(String(await control("api/end-nap")))));
  $("compact-btn").addEventListener("click", () => hive.busy($("compact-btn"), async () => {
    note("compacting…");
    note(String(await control("api/compact")));
  }));
  $("compact-notes-btn").addEventListener("click", () => hive.busy($("compact-notes-btn"), async () => {
    note("compacting the notes…");
    note(String(await control("api/compact-notes")));
  }));
  wireLogin();
  renderHeader();
  await refreshState();
  try {
    await loadHistory();
  } catch (err) {
    note("could not load the trail: " + (err && err.message ? err.message : String(err)), "error");
  }
  connect();
  refreshInbox();
  refreshStats();
  setInterval(renderHeader, 1000);
  input.focus();
  document.body.dataset.ready = "1";
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
