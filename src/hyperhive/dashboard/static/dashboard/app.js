/* hyperhive — the operator dashboard (no build step).
 *
 * Live model: GET /api/state (a snapshot with `seq`), then /api/stream (SSE, id = hub seq);
 * events with seq <= the snapshot's are dropped; EventSource resumes with Last-Event-ID. A gap
 * in seq (the hub dropped us and its ring moved on) triggers one fresh snapshot. No polling.
 * Agent-provided text only ever goes through hive.el / textContent.
 */
(function () {
  "use strict";
  const h = window.hive;
  const el = h.el;
  const $ = (id) => document.getElementById(id);
  // the session's CSRF token is in this page's <meta> (the hh_csrf cookie is HttpOnly, so no
  // agent page on this origin can read it)
  const csrfMeta = document.querySelector('meta[name="hh-csrf"]');
  h.csrfToken = () => (csrfMeta ? csrfMeta.content : "");

  const S = {
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
  const KINDS = ["message_sent", "message_delivered", "agent_changed", "agent_added", "agent_removed",
    "container_crash", "approval_added", "approval_resolving", "approval_resolved", "question_added",
    "question_resolved", "dead_letter", "dead_letter_resolved", "usage", "budget", "stats_written"];
  const INBOX_MAX = 50;
  const now = () => Date.now() / 1000;

  /* ---------------- notifications (opt-in, mute toggle) ---------------- */
  const notifyKey = "hh.notify";
  function notifyOn() {
    return localStorage.getItem(notifyKey) === "on" && "Notification" in window && Notification.permission === "granted";
  }
  function renderNotifyBtn() {
    const on = localStorage.getItem(notifyKey) === "on";
    $("notify-btn").textContent = on ? "◉ notify: on" : "○ notify: off";
  }
  $("notify-btn") && $("notify-btn").addEventListener("click", async () => {
    if (localStorage.getItem(notifyKey) === "on") {
      localStorage.setItem(notifyKey, "off");
    } else {
      if ("Notification" in window && Notification.permission !== "granted") {
        try { await Notification.requestPermission(); } catch (_e) { /* ignored */ }
      }
      localStorage.setItem(notifyKey, "on");
      if (!("Notification" in window) || Notification.permission !== "granted") {
        h.toast("the browser did not allow notifications", "info");
      }
    }
    renderNotifyBtn();
  });
  function notify(title, body, tag) {
    if (!notifyOn() || !S.live) return;
    try { new Notification(title, { body: String(body || "").slice(0, 200), tag }); } catch (_e) { /* ignored */ }
  }

  /* ---------------- header ---------------- */
  function renderHeader() {
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

  /* ---------------- C0NTAINERS ---------------- */
  function badgeOf(a) {
    let label;
    if (a.state === "running") label = a.harness_state || "running";
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

  function renderAgents() {
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
  function renderKept() {
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

  /* ---------------- D34D L3TT3RS ---------------- */
  function renderDead() {
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

  function renderQuestions() {
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

  /* ---------------- P3NDING APPR0VALS ---------------- */
  function diffPre(text) {
    const pre = el("pre", { class: "diff" });
    for (const line of String(text).split("\n")) {
      let cls = null;
      if (line.startsWith("+") && !line.startsWith("+++")) cls = "add";
      else if (line.startsWith("-") && !line.startsWith("---")) cls = "del";
      else if (line.startsWith("@@")) cls = "hunk";
      pre.appendChild(el("span", { class: cls }, line + "\n"));
    }
    return pre;
  }

  function approvalCard(a) {
    const details = el("details", { class: "diff-box" }, el("summary", null, "diff"));
    const fill = (text, err) => {
      details.querySelectorAll("pre, .hh-empty").forEach((n) => n.remove());
      details.appendChild(err ? el("div", { class: "hh-empty" }, err) : text ? diffPre(text) : el("div", { class: "hh-empty" }, "no diff"));
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

  function renderApprovals() {
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

  function renderInbox() {
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
  function flowAppend(items) {
    flowCount += term.appendMany(items);
    $("flow-count").textContent = flowCount ? `${flowCount}` : "";
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
  function renderSpend() {
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
  function refreshSpend() {  /* on a usage/budget event, at most one fetch per 2 s */
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
        if (d.recipient === "operator") {
          S.inbox.unshift({ id: d.id, sender: d.sender, recipient: d.recipient, body: d.preview, sent_at: d.ts, in_reply_to: d.in_reply_to });
          S.inbox.length = Math.min(S.inbox.length, INBOX_MAX);
          renderInbox();
        } else if (S.agents.has(d.recipient)) {
          S.agents.get(d.recipient).unread = (S.agents.get(d.recipient).unread || 0) + 1;
          renderAgents();
        }
        break;
      }
      case "message_delivered": {
        flowAppend([Object.assign({ kind: "delivered", ts: ev.ts }, d)]);
        const a = S.agents.get(d.recipient);
        if (a && a.unread) { a.unread -= 1; renderAgents(); }
        break;
      }
      default:
        break;
    }
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
    term.clear();
    flowCount = 0;
    flowAppend(snap.flow.map((m) => Object.assign({ kind: "sent" }, m)));
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

  /* a small handle for tests and the curious */
  window.__hh = {
    state: S,
    reconnect: () => connect(S.seq),
    resync,
    get lastSeq() { return S.seq; },
  };

  renderNotifyBtn();
  setRecipient(composeTo);
  resync();
})();
