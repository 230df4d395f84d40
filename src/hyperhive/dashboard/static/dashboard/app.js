/* hyperhive — the operator dashboard (no build step).
 *
 * Live model: GET /api/state (a snapshot with `seq`), then /api/stream (SSE, id = hub seq);
 * events with seq <= the snapshot's are dropped; EventSource resumes with Last-Event-ID. A gap
 * in seq (the hub dropped us and its ring moved on) triggers one fresh snapshot. No polling.
 * Agent-provided text only ever goes through hive.el / textContent.
 *
 * The page is ES modules, one per section (agents.js, approvals.js, questions.js, messages.js,
 * deadletters.js, spend.js, notify.js, header.js) over one shared model (store.js); this one
 * applies the snapshot and the live events and keeps the stream connected. The connection
 * state is public: #conn[data-state] is "live", "down" or absent until the first snapshot.
 */
import { renderAgents, renderKept } from "./agents.js";
import { renderApprovals } from "./approvals.js";
import { renderDead } from "./deadletters.js";
import { renderHeader } from "./header.js";
import { flowAppend, renderInbox, resetFlow } from "./messages.js";
import { notify, renderNotifyBtn } from "./notify.js";
import { renderQuestions } from "./questions.js";
import { refreshSpend, renderSpend } from "./spend.js";
import { $, el, h, INBOX_MAX, KINDS, now, S } from "./store.js";

// the session's CSRF token is in this page's <meta> (the hh_csrf cookie is HttpOnly, so no
// agent page on this origin can read it)
const csrfMeta = document.querySelector('meta[name="hh-csrf"]');
h.csrfToken = () => (csrfMeta ? csrfMeta.content : "");

/* ---------------- events ---------------- */
function apply(ev) {
  const d = ev.data || {};
  switch (ev.kind) {
    case "usage":
    case "budget":
      refreshSpend();
      break;
    case "stats_written":
      if (window.hiveStats) refreshSpend();
      break;
    case "agent_changed":
      S.agents.set(d.name, d);
      S.kept.delete(d.name);
      renderAgents(); renderKept();
      break;
    case "agent_added":
      if (!S.agents.has(d.name)) S.agents.set(d.name, { name: d.name, cage: S.cage, isolated: S.isolated, state: "starting", unread: 0 });
      S.kept.delete(d.name);
      renderAgents(); renderKept();
      break;
    case "agent_removed":
      S.agents.delete(d.name);
      S.busy.delete(d.name);
      if (d.purged) S.kept.delete(d.name);
      else S.kept.set(d.name, { name: d.name, destroyed_at: ev.ts, size_bytes: null, has_credentials: null });
      renderAgents(); renderKept();
      break;
    case "container_crash":
      h.toast(`${d.name || d.agent || "an agent"} crashed`, "error");
      notify("agent crashed", d.name || d.agent || "", "crash-" + (d.name || d.agent));
      break;
    case "approval_added":
      S.approvals.set(d.id, d);
      renderApprovals();
      notify(`approval #${d.id}: ${d.kind} ${d.agent}`, d.description, "approval-" + d.id);
      break;
    case "approval_resolving":
      S.resolving.add(d.id);
      renderApprovals();
      break;
    case "approval_resolved":
      S.approvals.delete(d.id);
      S.resolving.delete(d.id);
      renderApprovals();
      break;
    case "dead_letter":
      S.dead.set(d.id, d);
      renderDead();
      notify(`message #${d.id} to ${d.recipient} parked`, `${d.attempts} delivery attempts failed`, "dead-" + d.id);
      break;
    case "dead_letter_resolved":
      if (S.dead.delete(d.id)) renderDead();
      break;
    case "question_added":
      S.questions.set(d.id, d);
      renderQuestions();
      notify(`${d.asker} asks`, d.question, "question-" + d.id);
      break;
    case "question_resolved":
      if (S.questions.delete(d.id)) {
        if (d.answer === "[expired]") h.toast(`question #${d.id} expired`, "info");
      }
      renderQuestions();
      break;
    case "message_sent": {
      flowAppend([Object.assign({ kind: "sent" }, d)]);
      if (d.recipient === "operator") { // the inbox shows whole messages: the event carries the body
        S.inbox.unshift({ id: d.id, sender: d.sender, recipient: d.recipient, body: d.body ?? d.preview, sent_at: d.ts, in_reply_to: d.in_reply_to });
        S.inbox.length = Math.min(S.inbox.length, INBOX_MAX);
        renderInbox();
      } else {
        setUnread(d.recipient, d.unread);
      }
      break;
    }
    case "message_delivered":
      flowAppend([Object.assign({ kind: "delivered", ts: ev.ts }, d)]);
      setUnread(d.recipient, d.unread);
      break;
    case "message_acked":
    case "message_requeued":
      setUnread(d.agent, d.unread);
      break;
    default:
      break;
  }
}

/* the server's count (every message event carries it): the page never counts by itself */
function setUnread(name, unread) {
  const a = S.agents.get(name);
  if (!a || typeof unread !== "number" || a.unread === unread) return;
  a.unread = unread;
  renderAgents();
}

function setConn(state, text) {
  const c = $("conn");
  c.dataset.state = state;
  c.textContent = text;
}

function applySnapshot(snap) {
  S.seq = snap.seq;
  S.epoch = snap.epoch || "";
  S.cage = snap.cage; S.cageReason = snap.cage_reason; S.isolated = snap.isolated; S.hasManager = snap.manager;
  S.agents = new Map(snap.agents.map((a) => [a.name, a]));
  S.kept = new Map(snap.kept.map((k) => [k.name, k]));
  S.approvals = new Map(snap.approvals.map((a) => [a.id, a]));
  S.questions = new Map(snap.questions.map((q) => [q.id, q]));
  S.dead = new Map((snap.dead_letters || []).map((m) => [m.id, m]));
  S.inbox = snap.inbox.slice(0, INBOX_MAX);
  S.spend = snap.spend || null;
  $("questions-list").replaceChildren();
  resetFlow(snap.flow.map((m) => Object.assign({ kind: "sent" }, m)));
  renderAgents(); renderKept(); renderDead(); renderQuestions(); renderApprovals(); renderInbox(); renderHeader();
  renderSpend();
  if (window.hiveStats) window.hiveStats.refresh();
}

function connect(after) {
  if (S.stream) S.stream.close();
  let last = after;
  const stream = h.stream("/api/stream", {
    after,
    epoch: S.epoch,
    kinds: KINDS,
    onReset: () => resync(), // the daemon restarted: its seq began again, reload the snapshot
    onMissed: () => resync(), // the hub's ring no longer reaches back to us
    onOpen: () => { S.live = true; setConn("live", "● live"); },
    onError: (_e, state) => {
      S.live = false;
      setConn("down", state === 2 ? "✕ disconnected (reload or log in again)" : "○ reconnecting…");
    },
    onEvent: (ev, seq) => {
      if (seq > last + 1 && last > 0) { resync(); return; } // the hub's ring moved past us
      last = seq;
      S.seq = seq;
      apply(ev);
    },
  });
  S.stream = stream;
  return stream;
}

let resyncing = false;
async function resync() {
  if (resyncing) return;
  resyncing = true;
  try {
    if (S.stream) S.stream.close();
    const snap = await h.getJSON("/api/state");
    applySnapshot(snap);
    connect(snap.seq);
  } catch (e) {
    setConn("down", "✕ " + e.message);
  } finally {
    resyncing = false;
  }
}

/* ticking ages and countdowns (display only; no reloads) */
setInterval(() => {
  for (const span of document.querySelectorAll(".ttl[data-deadline]")) {
    const left = Number(span.dataset.deadline) - now();
    span.textContent = left > 0 ? "◷ " + h.fmtMMSS(left) : "◷ 00:00 expired";
    span.classList.toggle("expired", left <= 0);
  }
  for (const span of document.querySelectorAll(".badge[data-until]")) {
    span.textContent = span.dataset.label + " · " + h.fmtMMSS(Math.max(0, Number(span.dataset.until) - now()));
  }
  for (const span of document.querySelectorAll(".age[data-since]")) {
    const since = Number(span.dataset.since);
    if (since) span.textContent = " " + h.fmtAge(now() - since);
  }
}, 1000);

$("logout-btn").addEventListener("click", (ev) => h.busy(ev.currentTarget, async () => {
  await h.post("/logout");
  if (S.stream) S.stream.close();
  setConn("down", "logged out");
  window.location.replace("/login");
}));

/* log out everywhere: every session revoked and the signing key rotated (hive sessions --revoke-all) */
const logoutAll = el("button", { type: "button", class: "small danger", id: "logout-all-btn",
  title: "revoke every dashboard session, this one included, and rotate the signing key" }, "l0g0ut 3v3rywh3r3");
$("logout-btn").after(logoutAll);
logoutAll.addEventListener("click", (ev) => h.busy(ev.currentTarget, async () => {
  if (!window.confirm("log out every dashboard session, this one included?")) return;
  await h.post("/api/sessions/revoke-all");
  if (S.stream) S.stream.close();
  setConn("down", "logged out everywhere");
  window.location.replace("/login");
}));

renderNotifyBtn();
resync();
