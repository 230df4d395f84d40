/* hyperhive dashboard — the shared state and helpers every section module reads (an ES module).
 * S is the page's model: the snapshot (GET /api/state) plus the live events applied since. */
export const h = window.hive;
export const el = h.el;
export const $ = (id) => document.getElementById(id);

export const S = {
  seq: 0,
  epoch: "", // the daemon run the snapshot came from; the stream says `reset` when it changed
  agents: new Map(),
  kept: new Map(),
  dead: new Map(), // message id -> dead letter (parked after its last delivery attempt failed)
  approvals: new Map(),
  questions: new Map(),
  inbox: [],
  busy: new Map(), // agent name -> action in flight
  resolving: new Set(), // approval ids being approved
  cage: "",
  cageReason: "",
  isolated: true,
  hasManager: false,
  stream: null,
  live: false,
};
export const KINDS = ["message_sent", "message_delivered", "message_acked", "message_requeued", "agent_changed", "agent_added", "agent_removed",
  "container_crash", "approval_added", "approval_resolving", "approval_resolved", "question_added",
  "question_resolved", "dead_letter", "dead_letter_resolved", "usage", "budget", "stats_written"];
export const INBOX_MAX = 50;
export const now = () => Date.now() / 1000;
