/* hyperhive dashboard — ◆ C0NTAINERS ◆ (one row per agent, updated in place) and ◆ K3PT ST4T3 ◆
 * (an ES module). */
import { renderHeader } from "./header.js";
import { $, el, h, now, S } from "./store.js";

/* ---------------- C0NTAINERS ---------------- */
function badgeOf(a) {
  let label;
  // queued: its next turn waits for a slot of the core's burst scheduler (core/scheduler.py)
  if (a.state === "running") label = a.queued_since ? "queued" : a.harness_state || "running";
  else if (a.state === "stopped") label = "offline";
  else label = a.state;
  label = String(label).replace(/[_-]+/g, " ");
  if (/login/.test(label)) label = "needs login";
  return label;
}

function actionBtn(name, verb, label, opts) {
  const o = opts || {};
  return el("button", {
    type: "button", class: "small" + (o.danger ? " danger" : ""), "data-action": verb, title: o.title,
    onclick: (ev) => agentAction(ev.currentTarget, name, verb, o.confirm),
  }, label);
}

async function agentAction(btn, name, verb, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  S.busy.set(name, verb);
  renderAgents();
  await h.busy(btn, async () => {
    try {
      await h.post(`/api/agents/${encodeURIComponent(name)}/${verb}`);
      h.toast(`${verb}: ${name}`);
    } finally {
      S.busy.delete(name);
      renderAgents();
    }
  });
}

/* rows are built once per agent and updated in place, so a button never vanishes under a
   click just because an unrelated event arrived */
function agentRow(name) {
  const isManager = name === "manager";
  const cells = {
    link: el("a", { href: `/agent/${encodeURIComponent(name)}/`, target: "_blank", rel: "noopener" }, name),
    cage: el("td", { class: "cage" }),
    badge: el("span", { class: "badge" }),
    age: el("span", { class: "dim age" }),
    model: el("td", { class: "model" }),
    turn: el("td", { class: "turn" }),
    unread: el("td", { class: "unread" }),
    spin: el("span", { class: "spinner hidden" }),
    start: actionBtn(name, "start", "▶ start"),
    stop: actionBtn(name, "stop", "■ stop"),
    restart: actionBtn(name, "restart", "↻ restart"),
    destroy: isManager ? null : actionBtn(name, "destroy", "DESTR0Y", { danger: true, title: "stop and remove; keep its state",
      confirm: `destroy ${name}? its state stays (K3PT ST4T3) and can be revived.` }),
    purge: isManager ? null : actionBtn(name, "purge", "PURG3", { danger: true, title: "destroy and wipe its state",
      confirm: `purge ${name}? this deletes its state, config and credentials for good.` }),
    log: el("a", { class: "btn small", "data-action": "log", href: `/api/agents/${encodeURIComponent(name)}/log`,
      target: "_blank", rel: "noopener", title: "the tail of its harness log" }, "log"),
    down: el("div", { class: "down-why hidden" }),
  };
  cells.cage.dataset.label = "cage";
  cells.model.dataset.label = "model";
  cells.turn.dataset.label = "last turn";
  cells.unread.dataset.label = "unread";
  const tr = el("tr", { "data-agent": name },
    el("td", { class: "name" }, cells.link), cells.cage,
    el("td", { class: "state", "data-label": "state" }, cells.badge, cells.age, cells.down),
    cells.model, cells.turn, cells.unread,
    el("td", { class: "actions", "data-label": "actions" }, cells.spin, cells.start, cells.stop, cells.restart,
      cells.log, cells.destroy, cells.purge));
  tr._cells = cells;
  addHarnessControls(tr, name);
  return tr;
}

/* the agent's own controls, through the core's /agent/<name>/ proxy (same session, CSRF):
   switch its model (the operator's override) and end a nap */
function addHarnessControls(tr, name) {
  const path = (route) => `/agent/${encodeURIComponent(name)}/api/${route}`;
  const model = el("button", { type: "button", class: "small", "data-action": "model",
    title: "switch its model from the next turn (the operator's override; empty = its config's model)",
    onclick: (ev) => {
      const a = S.agents.get(name) || {};
      const value = window.prompt(`model for ${name} from its next turn (empty: its config's model)`, a.model || "");
      if (value === null) return;
      h.busy(ev.currentTarget, async () => h.toast(`${name}: ${(await h.post(path("model"), { model: value.trim() })).result}`));
    } }, "⇄ model");
  const nap = el("button", { type: "button", class: "small hidden", "data-action": "end-nap", title: "wake it now",
    onclick: (ev) => h.busy(ev.currentTarget, async () => h.toast(`${name}: ${(await h.post(path("end-nap"), {})).result}`)) },
    "☀ end nap");
  tr._cells.spin.after(nap, model);
  tr._harness = { model, nap };
}

function updateAgentRow(tr, a) {
  const c = tr._cells;
  const badge = badgeOf(a);
  const busy = S.busy.get(a.name);
  const running = a.state === "running" || a.state === "starting";
  tr.dataset.state = badge;
  c.cage.replaceChildren(a.cage || "", a.isolated === false ? el("span", { class: "unisolated", title: "no sandbox" }, " ⚠ unisolated") : "");
  c.badge.className = "badge " + badge.replace(/ /g, "-");
  c.badge.textContent = badge;
  if (a.blocked_until && a.state === "running") {  /* the gateway's rate limit: a countdown */
    c.badge.dataset.until = a.blocked_until;
    c.badge.dataset.label = badge;
    c.badge.textContent = badge + " · " + h.fmtMMSS(Math.max(0, a.blocked_until - now()));
  } else {
    delete c.badge.dataset.until;
  }
  c.age.dataset.since = a.state_since || "";
  c.age.textContent = a.state_since ? " " + h.fmtAge(now() - a.state_since) : "";
  c.model.textContent = a.model || "—";
  c.turn.textContent = a.last_turn_ms != null ? (a.last_turn_ms / 1000).toFixed(1) + "s" : "—";
  c.unread.textContent = String(a.unread || 0);
  c.unread.className = "unread" + (a.unread ? " amber" : " dim");
  c.spin.classList.toggle("hidden", !busy);
  c.spin.title = busy ? busy + "…" : "";
  c.start.classList.toggle("hidden", running);
  c.stop.classList.toggle("hidden", !running);
  tr._harness.model.classList.toggle("hidden", a.state !== "running");
  tr._harness.nap.classList.toggle("hidden", !(a.state === "running" && a.harness_state === "napping"));
  renderDown(c.down, a, running);
}

/* why a down agent is down: exit status or signal, when, the restart policy and count, and
   the last lines of its output (agent text: textContent only) */
function renderDown(box, a, running) {
  const d = a.down;
  if (running || !d) {
    box.classList.add("hidden");
    box.replaceChildren();
    box.dataset.key = "";
    return;
  }
  let plan = `restart: ${d.policy}`;
  if (d.policy === "on-failure" && d.exit_code === 0 && d.signal == null) plan += " · a clean exit is not restarted";
  else if (d.gave_up) plan += ` · gave up after ${a.restarts} restart${a.restarts === 1 ? "" : "s"}`;
  else if (d.next_restart_at) plan += ` · restart ${a.restarts} at ${h.fmtDate(d.next_restart_at)}`;
  else if (a.restarts) plan += ` · ${a.restarts} restart${a.restarts === 1 ? "" : "s"} in a row`;
  const lines = (d.last_lines || []).join("\n");
  const key = JSON.stringify([d, a.restarts]);
  if (box.dataset.key === key) return; // keeps an opened "last lines" open across updates
  box.dataset.key = key;
  box.replaceChildren(
    el("div", { class: "red reason" }, `${d.reason} · ${h.fmtDate(d.at)}`),
    el("div", { class: "dim plan" }, plan),
    lines ? el("details", { class: "tail" }, el("summary", null, "last lines"), el("pre", null, lines)) : null);
  box.classList.remove("hidden");
}

export function renderAgents() {
  const tbody = $("containers-rows");
  const names = [...S.agents.keys()].sort((a, b) => (a === "manager" ? -1 : b === "manager" ? 1 : a.localeCompare(b)));
  const existing = new Map([...tbody.children].map((tr) => [tr.dataset.agent, tr]));
  const rows = names.map((name) => {
    const tr = existing.get(name) || agentRow(name);
    updateAgentRow(tr, S.agents.get(name));
    return tr;
  });
  // reorder / drop only when the set changed (keeps focus and clicks on stable rows)
  const same = rows.length === tbody.children.length && rows.every((r, i) => tbody.children[i] === r);
  if (!same) tbody.replaceChildren(...rows);
  $("containers-empty").classList.toggle("hidden", rows.length > 0);
  $("containers-count").textContent = rows.length ? `${rows.length}` : "";
  renderHeader();
}

/* ---------------- K3PT ST4T3 ---------------- */
export function renderKept() {
  const rows = [...S.kept.values()].sort((a, b) => a.name.localeCompare(b.name)).map((k) =>
    el("tr", { "data-kept": k.name },
      el("td", { class: "name" }, k.name),
      el("td", { "data-label": "size" }, k.size_bytes == null ? "—" : h.fmtBytes(k.size_bytes)),
      el("td", { "data-label": "destroyed", title: k.destroyed_at ? h.fmtDate(k.destroyed_at) : "" },
        k.destroyed_at ? h.fmtAge(now() - k.destroyed_at) + " ago" : "—"),
      el("td", { "data-label": "credentials" }, k.has_credentials == null ? "—" : k.has_credentials ? el("span", { class: "green" }, "creds kept") : el("span", { class: "dim" }, "none")),
      el("td", { class: "actions" },
        el("button", { type: "button", class: "small go", "data-action": "revive",
          onclick: (ev) => h.busy(ev.currentTarget, async () => {
            await h.post(`/api/kept/${encodeURIComponent(k.name)}/revive`);
            h.toast(`revive of ${k.name} queued for approval`);
          }) }, "⊕ R3V1V3"),
        " ",
        el("button", { type: "button", class: "small danger", "data-action": "purge",
          onclick: (ev) => {
            if (!window.confirm(`purge the kept state of ${k.name}? this cannot be undone.`)) return;
            h.busy(ev.currentTarget, async () => {
              await h.post(`/api/kept/${encodeURIComponent(k.name)}/purge`);
              h.toast(`purged ${k.name}`);
            });
          } }, "PURG3"),
      ),
    ));
  $("kept-rows").replaceChildren(...rows);
  $("kept-empty").classList.toggle("hidden", rows.length > 0);
  $("kept-count").textContent = rows.length ? `${rows.length}` : "";
}
