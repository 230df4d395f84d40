/* hyperhive dashboard — the header: counts, the cage chip and the page title (an ES module). */
import { $, S } from "./store.js";

/* ---------------- header ---------------- */
export function renderHeader() {
  let up = 0;
  for (const a of S.agents.values()) if (a.state === "running") up++;
  const down = S.agents.size - up;
  $("count-agents").textContent = `agents ${up} up · ${down} down`;
  $("count-agents").className = "chip" + (down ? " warn" : "");
  const na = S.approvals.size, nq = S.questions.size;
  $("count-approvals").textContent = `approvals ${na}`;
  $("count-approvals").className = "chip " + (na ? "count" : "zero");
  $("count-questions").textContent = `questions ${nq}`;
  $("count-questions").className = "chip " + (nq ? "count" : "zero");
  $("cage-chip").textContent = "cage " + (S.cage || "—") + (S.isolated ? "" : " ⚠ unisolated");
  $("cage-chip").className = "chip" + (S.isolated ? "" : " warn");
  $("cage-chip").title = S.cageReason || "";
  const alert = $("cage-alert");
  if (!S.isolated && S.cage) {
    alert.textContent = "⚠ " + (S.cageReason || "agents run without isolation");
    alert.classList.remove("hidden");
  } else {
    alert.classList.add("hidden");
  }
  document.title = (na + nq ? `(${na + nq}) ` : "") + "hyperhive · hive-c0re";
}
