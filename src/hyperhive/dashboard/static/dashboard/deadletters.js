/* hyperhive dashboard — ◆ D34D L3TT3RS ◆: retry or discard a parked message (an ES module). */
import { $, el, h, now, S } from "./store.js";

/* ---------------- D34D L3TT3RS ---------------- */
export function renderDead() {
  const rows = [...S.dead.values()].sort((a, b) => a.id - b.id).map((m) =>
    el("tr", { "data-dead": m.id },
      el("td", { class: "name" }, `#${m.id}`),
      el("td", { "data-label": "from → to" }, `${m.sender} → ${m.recipient}`),
      el("td", { "data-label": "attempts" }, String(m.attempts)),
      el("td", { "data-label": "parked" }, m.dead_at ? h.fmtAge(now() - m.dead_at) + " ago" : "—"),
      el("td", { class: "preview" }, (m.body || m.preview || "").slice(0, 200)),
      el("td", { class: "actions" },
        el("button", { type: "button", class: "small go", "data-action": "retry-dead",
          onclick: (ev) => h.busy(ev.currentTarget, async () => {
            await h.post(`/api/dead-letters/${m.id}/retry`);
            h.toast(`#${m.id} requeued for ${m.recipient}`);
          }) }, "↻ R3TRY"),
        " ",
        el("button", { type: "button", class: "small danger", "data-action": "discard-dead",
          onclick: (ev) => {
            if (!window.confirm(`discard message #${m.id} to ${m.recipient} without delivering it?`)) return;
            h.busy(ev.currentTarget, async () => {
              await h.post(`/api/dead-letters/${m.id}/discard`);
              h.toast(`#${m.id} discarded`);
            });
          } }, "D1SC4RD"),
      ),
    ));
  $("dead-rows").replaceChildren(...rows);
  $("dead-empty").classList.toggle("hidden", rows.length > 0);
  $("dead-count").textContent = rows.length ? `${rows.length}` : "";
}
