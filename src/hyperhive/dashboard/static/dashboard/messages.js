/* hyperhive dashboard — ◆ 0PER4T0R 1NB0X ◆, ◆ MESS4GE FL0W ◆ and the compose prompt (sticky
 * @recipient, @name switches, tab completes, replies) (an ES module). */
import { $, el, h, S } from "./store.js";

/* ---------------- 0PER4T0R 1NB0X ---------------- */
function inboxItem(m) {
  return el("li", { "data-message": m.id },
    el("div", { class: "meta" },
      el("span", { class: "dim" }, h.fmtClock(m.sent_at) + " "),
      el("span", { class: "amber" }, m.sender),
      m.in_reply_to ? el("span", { class: "mauve" }, ` ↳ #${m.in_reply_to}`) : null,
      el("span", { class: "dim" }, ` #${m.id} `),
      el("button", { type: "button", class: "small", "data-action": "reply",
        onclick: () => replyTo(m.sender, m.id) }, "↩ reply")),
    el("div", { class: "body" }, m.body));
}

export function renderInbox() {
  $("inbox-list").replaceChildren(...S.inbox.map(inboxItem));
  $("inbox-empty").classList.toggle("hidden", S.inbox.length > 0);
  $("inbox-count").textContent = S.inbox.length ? `${S.inbox.length}` : "";
}

/* ---------------- MESS4GE FL0W ---------------- */
const term = new h.Terminal($("flow-term"), {
  height: "360px",
  maxRows: 1000,
  renderers: {
    sent: (m) => el("div", { class: "hh-term-row sent" + (m.sender === "operator" ? " from-operator" : ""), "data-flow": m.id },
      el("span", { class: "ts" }, h.fmtClock(m.ts)),
      el("span", { class: "who" }, m.sender), el("span", { class: "arrow" }, " → "),
      el("span", { class: "to" }, m.recipient),
      m.broadcast ? el("span", { class: "bcast" }, " [*]") : null,
      m.in_reply_to ? el("span", { class: "reply" }, ` ↳ #${m.in_reply_to}`) : null,
      el("span", { class: "dim" }, ` #${m.id}`),
      m.delivered_at ? el("span", { class: "dim" }, " ✓") : null,
      ": ", el("span", { class: "preview" }, m.preview)),
    delivered: (m) => el("div", { class: "hh-term-row delivered", "data-flow-delivered": m.id },
      el("span", { class: "ts" }, h.fmtClock(m.ts)),
      `✓ delivered #${m.id} ${m.sender || ""} → ${m.recipient}`),
  },
});
let flowCount = 0;
export function flowAppend(items) {
  flowCount += term.appendMany(items);
  $("flow-count").textContent = flowCount ? `${flowCount}` : "";
}
/* a fresh snapshot: the flow starts again from its rows */
export function resetFlow(items) {
  term.clear();
  flowCount = 0;
  flowAppend(items);
}

/* compose: sticky @recipient> prompt, @name switches, tab completes */
const toKey = "hh.compose.to";
let composeTo = localStorage.getItem(toKey) || "manager";
let replyId = null;
function setRecipient(name) {
  composeTo = name;
  localStorage.setItem(toKey, name);
  $("compose-prompt").textContent = "@" + name + ">";
}
function replyTo(name, id) {
  setRecipient(name);
  replyId = id;
  const chip = $("reply-chip");
  chip.textContent = `↳ #${id} ✕`;
  chip.classList.remove("hidden");
  $("compose-input").focus();
}
$("reply-chip").addEventListener("click", () => { replyId = null; $("reply-chip").classList.add("hidden"); });
function candidates() {
  const names = new Set(["manager", ...S.agents.keys(), "*"]);
  return [...names];
}
let suggestSel = 0;
function suggestions() {
  const v = $("compose-input").value;
  const m = v.match(/^@([a-z0-9*-]*)$/);
  if (!m) return [];
  return candidates().filter((n) => n.startsWith(m[1]) && n !== m[1] + "\u0000").slice(0, 10);
}
function renderSuggest() {
  const box = $("compose-suggest");
  const list = suggestions();
  if (!list.length) { box.classList.add("hidden"); box.replaceChildren(); return; }
  suggestSel = Math.min(suggestSel, list.length - 1);
  box.replaceChildren(...list.map((n, i) => el("button", { type: "button", class: i === suggestSel ? "sel" : "",
    "data-name": n, onmousedown: (ev) => { ev.preventDefault(); complete(n); } }, "@" + n)));
  box.classList.remove("hidden");
}
function complete(name) {
  $("compose-input").value = "@" + name + " ";
  suggestSel = 0;
  renderSuggest();
  $("compose-input").focus();
}
$("compose-input").addEventListener("input", () => { suggestSel = 0; renderSuggest(); });
$("compose-input").addEventListener("keydown", (ev) => {
  const list = suggestions();
  if (!list.length) return;
  if (ev.key === "Tab") { ev.preventDefault(); complete(list[suggestSel] || list[0]); }
  else if (ev.key === "ArrowDown") { ev.preventDefault(); suggestSel = (suggestSel + 1) % list.length; renderSuggest(); }
  else if (ev.key === "ArrowUp") { ev.preventDefault(); suggestSel = (suggestSel - 1 + list.length) % list.length; renderSuggest(); }
  else if (ev.key === "Escape") { $("compose-suggest").classList.add("hidden"); }
});
$("compose").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("compose-input");
  let text = input.value;
  const m = text.match(/^@([a-z0-9*][a-z0-9-]*)(?:\s+([\s\S]*))?$/);
  if (m) {
    if (m[1] !== composeTo) { replyId = null; $("reply-chip").classList.add("hidden"); }
    setRecipient(m[1]);
    text = m[2] || "";
    if (!text.trim()) { input.value = ""; renderSuggest(); return; }
  }
  if (!text.trim()) return;
  const body = { to: composeTo, body: text };
  if (replyId) body.in_reply_to = replyId;
  h.busy($("compose-btn"), async () => {
    await h.post("/api/send", body);
    input.value = "";
    replyId = null;
    $("reply-chip").classList.add("hidden");
    renderSuggest();
    h.toast(`sent to @${body.to}`);
  });
});

setRecipient(composeTo);
