/* hyperhive dashboard — ◆ P3NDING APPR0VALS ◆ (approve, deny with a reason, the diff) and the
 * spawn request form (an ES module). */
import { unifiedDiff } from "/static/common/diff.js";
import { renderHeader } from "./header.js";
import { $, el, h, now, S } from "./store.js";

/* ---------------- P3NDING APPR0VALS ---------------- */
function approvalCard(a) {
  const details = el("details", { class: "diff-box" }, el("summary", null, "diff"));
  const fill = (text, err) => {
    details.querySelectorAll("pre, .hh-empty").forEach((n) => n.remove());
    details.appendChild(err ? el("div", { class: "hh-empty" }, err) : text ? unifiedDiff(text) : el("div", { class: "hh-empty" }, "no diff"));
  };
  if (a.kind === "apply_commit") {
    if (a.diff !== undefined) fill(a.diff, a.diff_error);
    else details.addEventListener("toggle", async () => {
      if (!details.open || details.dataset.loaded) return;
      details.dataset.loaded = "1";
      try { const r = await h.getJSON(`/api/approvals/${a.id}/diff`); fill(r.diff); } catch (e) { fill("", e.message); }
    });
  }
  const note = el("input", { type: "text", name: "note", placeholder: "reason for denying (optional)", spellcheck: "false" });
  const approve = el("button", { type: "button", class: "go", "data-action": "approve",
    onclick: (ev) => h.busy(ev.currentTarget, async () => {
      const r = await h.post(`/api/approvals/${a.id}/approve`);
      const st = r && r.approval ? r.approval.status : "done";
      h.toast(`approval #${a.id}: ${st}`, st === "failed" ? "error" : "ok");
    }) }, "◆ APPR0VE");
  const deny = el("button", { type: "button", class: "danger", "data-action": "deny",
    onclick: (ev) => h.busy(ev.currentTarget, async () => {
      await h.post(`/api/approvals/${a.id}/deny`, { note: note.value.trim() });
      h.toast(`approval #${a.id} denied`);
    }) }, "DENY");
  const resolving = S.resolving.has(a.id) || a.status === "approving";
  if (resolving) { approve.disabled = true; deny.disabled = true; }
  return el("div", { class: "card approval pulse-mauve", "data-approval": a.id },
    el("div", { class: "head" },
      el("span", { class: "id" }, "#" + a.id),
      el("span", { class: "kind" }, String(a.kind).replace(/_/g, " ")),
      el("span", { class: "amber" }, a.agent),
      el("span", { class: "dim" }, "by " + (a.requested_by || "?")),
      a.sha ? el("span", { class: "chip" }, String(a.sha).slice(0, 10)) : null,
      resolving ? el("span", { class: "amber" }, el("span", { class: "spinner" }), "applying…") : null,
      el("span", { class: "dim" }, h.fmtAge(now() - a.requested_at) + " ago")),
    a.description ? el("div", { class: "text" }, a.description) : null,
    a.kind === "apply_commit" ? details : null,
    el("div", { class: "row" }, approve, note, deny));
}

export function renderApprovals() {
  const ids = [...S.approvals.keys()].sort((a, b) => a - b);
  const list = $("approvals-list");
  const existing = new Map([...list.children].map((c) => [Number(c.dataset.approval), c]));
  const cards = ids.map((id) => {
    const a = S.approvals.get(id);
    const resolving = String(S.resolving.has(id) || a.status === "approving");
    const card = existing.get(id);
    if (card && card.dataset.resolving === resolving) return card; // keeps a half-typed reason
    const fresh = approvalCard(a);
    fresh.dataset.resolving = resolving;
    return fresh;
  });
  const same = cards.length === list.children.length && cards.every((c, i) => list.children[i] === c);
  if (!same) list.replaceChildren(...cards);
  $("approvals-empty").classList.toggle("hidden", ids.length > 0);
  $("approvals-count").textContent = ids.length ? `${ids.length} waiting` : "";
  $("sec-approvals").classList.toggle("pulse-mauve", ids.length > 0);
  renderHeader();
}

$("spawn-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("spawn-name").value.trim();
  const description = $("spawn-description").value.trim();
  h.busy($("spawn-btn"), async () => {
    const r = await h.post("/api/request-spawn", { name, description });
    h.toast(`spawn of ${name} queued (#${r.approval.id})`);
    $("spawn-name").value = "";
    $("spawn-description").value = "";
  });
});
