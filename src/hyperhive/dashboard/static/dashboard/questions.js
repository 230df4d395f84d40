/* hyperhive dashboard — ◆ M1ND H4S QU3STI0NS ◆: answer, override or cancel (an ES module). */
import { renderHeader } from "./header.js";
import { $, el, h, now, S } from "./store.js";

/* ---------------- M1ND H4S QU3STI0NS ---------------- */
function ttlText(q) {
  const left = q.deadline_at - now();
  return left > 0 ? "◷ " + h.fmtMMSS(left) : "◷ 00:00 expired";
}

function questionCard(q) {
  const peer = q.target && q.target !== "operator";
  const group = "q" + q.id;
  const opts = el("div", { class: "opts" }, (q.options || []).map((o, i) =>
    el("label", null, el("input", { type: q.multi ? "checkbox" : "radio", name: group, value: o, "data-index": i }), " ", o)));
  const free = el("input", { type: "text", name: "answer", placeholder: (q.options || []).length ? "or say something else…" : "your answer…", spellcheck: "false" });
  const answerBtn = el("button", { type: "submit", class: "go", "data-action": "answer" }, peer ? "0V3RR1D3" : "answer");
  const form = el("form", { class: "row", autocomplete: "off" }, free, answerBtn,
    el("button", { type: "button", class: "danger", "data-action": "cancel",
      onclick: (ev) => h.busy(ev.currentTarget, async () => {
        await h.post(`/api/questions/${q.id}/cancel`);
        h.toast(`question #${q.id} cancelled`);
      }) }, "cancel"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const picked = [...opts.querySelectorAll("input:checked")].map((i) => i.value);
    const text = free.value.trim();
    const answer = [picked.join(", "), text].filter(Boolean).join(" — ");
    if (!answer) { h.toast("pick an option or type an answer", "error"); return; }
    h.busy(answerBtn, async () => {
      await h.post(`/api/questions/${q.id}/answer`, { answer });
      h.toast(`answered #${q.id}`);
    });
  });
  return el("div", { class: "card question pulse", "data-question": q.id },
    el("div", { class: "head" },
      el("span", { class: "id" }, "#" + q.id),
      el("span", { class: "who amber" }, q.asker), el("span", { class: "dim" }, "→"),
      el("span", { class: peer ? "mauve" : "green" }, "@" + (q.target || "operator")),
      peer ? el("span", { class: "chip" }, "peer question — you may override") : null,
      q.multi ? el("span", { class: "chip" }, "pick any") : null,
      q.deadline_at ? el("span", { class: "ttl", "data-deadline": q.deadline_at }, ttlText(q)) : null,
      el("span", { class: "dim" }, h.fmtAge(now() - q.asked_at) + " ago")),
    el("div", { class: "text" }, q.question),
    (q.options || []).length ? opts : null,
    form);
}

export function renderQuestions() {
  const list = $("questions-list");
  // keep cards that still exist (so a half-typed answer survives other events)
  const existing = new Map([...list.children].map((c) => [Number(c.dataset.question), c]));
  const ids = [...S.questions.keys()].sort((a, b) => a - b);
  const cards = ids.map((id) => existing.get(id) || questionCard(S.questions.get(id)));
  const same = cards.length === list.children.length && cards.every((c, i) => list.children[i] === c);
  if (!same) list.replaceChildren(...cards);
  $("questions-empty").classList.toggle("hidden", ids.length > 0);
  $("questions-count").textContent = ids.length ? `${ids.length} waiting` : "";
  $("sec-questions").classList.toggle("pulse", ids.length > 0);
  renderHeader();
}
