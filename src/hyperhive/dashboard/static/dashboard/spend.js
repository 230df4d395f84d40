/* hyperhive dashboard — ◆ SP3ND ◆: the gateway's accounting per agent and for the hive, refreshed on
 * usage and budget events (an ES module). */
import { $, el, h, S } from "./store.js";

/* ---------------- SP3ND (the gateway's accounting) ---------------- */
function fmtSpend(x) {
  if (!x) return "—";
  const tok = x.tokens >= 1000 ? (x.tokens / 1000).toFixed(1) + "k" : String(x.tokens);
  return `$${Number(x.usd).toFixed(4)} · ${tok} tok`;
}
function fmtBudget(b) {
  if (!b) return "—";
  const parts = [];
  if (b.usd_budget != null) parts.push(`$${Number(b.usd).toFixed(4)} of $${Number(b.usd_budget).toFixed(4)}`);
  if (b.tokens_budget != null) parts.push(`${b.tokens} of ${b.tokens_budget} tok`);
  return parts.join(" · ") + ` (${b.window})`;
}
export function renderSpend() {
  const sp = S.spend;
  const rows = $("spend-rows");
  const names = sp ? Object.keys(sp.agents).sort() : [];
  $("spend-empty").classList.toggle("hidden", names.length > 0);
  $("spend-total").textContent = sp ? `today ${fmtSpend(sp.today)} · 7d ${fmtSpend(sp.week)}` : "";
  const trs = names.map((n) => {
    const a = sp.agents[n];
    return el("tr", { "data-agent": n, class: a.paused ? "over-budget" : "" },
      el("td", { class: "name" }, n),
      el("td", { "data-label": "today" }, fmtSpend(a.today)),
      el("td", { "data-label": "7 days" }, fmtSpend(a.week)),
      el("td", { "data-label": "budget" }, fmtBudget(a.budget),
        a.paused ? el("span", { class: "badge over-budget" }, " over budget") : ""));
  });
  if (sp && names.length) {
    trs.push(el("tr", { class: "total" }, el("td", { class: "name" }, "the hive"),
      el("td", { "data-label": "today" }, fmtSpend(sp.today)), el("td", { "data-label": "7 days" }, fmtSpend(sp.week)),
      el("td", { "data-label": "budget" }, fmtBudget(sp.budget))));
  }
  rows.replaceChildren(...trs);
}
let spendTimer = null;
export function refreshSpend() {  /* on a usage/budget event, at most one fetch per 2 s */
  if (spendTimer) return;
  spendTimer = setTimeout(async () => {
    spendTimer = null;
    try {
      const r = await fetch("/api/spend", { credentials: "same-origin" });
      if (r.ok) { S.spend = (await r.json()).spend; renderSpend(); }
    } catch (_e) { /* the next event retries */ }
    if (window.hiveStats) window.hiveStats.refresh();
  }, 2000);
}
