/* hyperhive — the per-agent page: live terminal, state badge, model chip, slash commands, inbox,
 * stats and the login panel. Served by the agent's harness and reached through the core at
 * /agent/<name>/, so every harness URL here is RELATIVE ("api/state", "events/stream"); the one
 * absolute URL is the core's own POST /api/send (the harness socket cannot send as the operator).
 *
 * Uses the core's shared helpers: window.hive from /static/common/live.js (post/getJSON with the
 * CSRF header, toast, busy, el, fmt*, stream) and hive.Terminal from /static/common/terminal.js
 * (sticky-bottom log with the "↓ N new" pill). Agent text only ever goes through textContent
 * (hive.el builds text nodes); nothing the agent says is parsed as HTML.
 */
(function () {
  "use strict";
  const hive = window.hive;
  const el = hive.el;
  // Who this page talks to comes from the URL the core routed (/agent/<name>/), never from the
  // HTML the agent serves; POSTs carry this page's token, which the core binds to <name>.
  const NAME = (/^\/agent\/([a-z][a-z0-9-]{0,30})\//.exec(location.pathname) || [])[1] || "";
  hive.csrfToken = function () {
    const m = document.cookie.match(/(?:^|;\s*)hh_page_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  };
  const $ = (id) => document.getElementById(id);

  const COMMANDS = [
    ["/help", "list the commands"],
    ["/clear", "clear this view (the trail is kept: reload brings it back)"],
    ["/model ", "/model <name> — use <name> from the next turn; /model default clears the override"],
    ["/compact", "compact the current session"],
    ["/compact-notes", "rewrite /state/notes.md shorter now (the previous version is kept)"],
    ["/cancel", "interrupt the turn in flight, or end a nap"],
    ["/new-session", "start a fresh claude session on the next turn"],
  ];
  const COLLAPSE_CHARS = 600;
  const COLLAPSE_LINES = 8;
  const HH = "mcp__hyperhive__";

  let term = null;
  let snap = null; // the last /api/state
  let online = false;
  let offlineSince = Date.now() / 1000;
  let lastId = 0; // the newest event id rendered: history and stream never repeat one
  let epoch = ""; // the Bus's: ids began again (a harness without a store restarted) when it changes
  let live = null;
  let reconnectTimer = null;
  let loginPoll = null;
  let refreshTimer = null;
  const toolNames = {};

  const now = () => Date.now() / 1000;

  /* ---- small builders ---------------------------------------------------------------------- */

  function tsSpan(e) {
    return el("span", { class: "ts" }, e && e.ts ? hive.fmtClock(e.ts) : hive.fmtClock(now()));
  }

  function row(cls, e, ...children) {
    const attrs = { class: "hh-term-row " + cls };
    if (e && e.id) attrs.dataset = { id: String(e.id), kind: e.kind };
    return el("div", attrs, tsSpan(e), ...children);
  }

  function line(cls, ...children) {
    return el("span", { class: "line " + cls }, ...children);
  }

  function asText(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "string") return value;
    if (Array.isArray(value)) {
      return value.map((b) => (b && typeof b === "object" ? (b.type === "text" ? String(b.text || "") : JSON.stringify(b)) : String(b))).join("\n");
    }
    try { return JSON.stringify(value); } catch (_e) { return String(value); }
  }

  function oneLine(text, limit) {
    const flat = String(text).replace(/\s+/g, " ").trim();
    return flat.length > limit ? flat.slice(0, limit - 1) + "…" : flat;
  }

  /* a block of text, collapsed behind a <details> when it is long */
  function maybeCollapsed(cls, prefix, text) {
    const lines = text.split("\n");
    if (text.length <= COLLAPSE_CHARS && lines.length <= COLLAPSE_LINES) {
      return line(cls, prefix, el("pre", {}, text));
    }
    const summary = prefix + oneLine(lines[0], 100) + "  (" + lines.length + " lines, " + text.length + " chars)";
    return el("details", { class: "line " + cls + " collapsed" }, el("summary", {}, summary), el("pre", {}, text));
  }

  function diffBlock(tool, path, oldText, newText) {
    const oldLines = oldText ? String(oldText).split("\n") : [];
    const newLines = newText ? String(newText).split("\n") : [];
    const pre = el("pre", { class: "diff" });
    if (oldLines.length) pre.appendChild(el("span", { class: "hunk" }, "@@ " + path + " @@\n"));
    for (const l of oldLines) pre.appendChild(el("span", { class: "del" }, "- " + l + "\n"));
    for (const l of newLines) pre.appendChild(el("span", { class: "add" }, "+ " + l + "\n"));
    const stat = (oldLines.length ? "−" + oldLines.length + " " : "") + "+" + newLines.length;
    return el("details", { class: "line tool diff-tool", dataset: { tool } },
      el("summary", {}, tool + " ", el("span", { class: "arg" }, String(path || "?")), "  (" + stat + ")"), pre);
  }

  /* ---- tool calls, per tool ---------------------------------------------------------------- */

  function toolUse(block) {
    const name = String(block.name || "?");
    const input = block.input && typeof block.input === "object" ? block.input : {};
    if (block.id) toolNames[block.id] = name;
    const tool = (label, arg, cls) => line("tool" + (cls ? " " + cls : ""), label, el("span", { class: "arg" }, String(arg)));
    switch (name) {
      case "Read": {
        let where = String(input.file_path || "?");
        if (input.offset || input.limit) where += " [" + (input.offset || 0) + (input.limit ? "+" + input.limit : "") + "]";
        return tool("Read ", where);
      }
      case "Bash":
        return tool("Bash $ ", input.command || "");
      case "Write":
        return diffBlock("Write", input.file_path, "", input.content);
      case "Edit":
        return diffBlock("Edit", input.file_path, input.old_string, input.new_string);
      case "MultiEdit": {
        const wrap = el("span", { class: "line" });
        for (const edit of input.edits || []) wrap.appendChild(diffBlock("Edit", input.file_path, edit.old_string, edit.new_string));
        return wrap;
      }
      case "Glob":
        return tool("Glob ", (input.pattern || "") + (input.path ? "  in " + input.path : ""));
      case "Grep":
        return tool("Grep ", (input.pattern || "") + (input.path ? "  in " + input.path : ""));
      case HH + "send":
        return line("tool send", "send → ", el("span", { class: "who" }, String(input.to || "?")), ": ",
          el("span", { class: "arg" }, String(input.body || "")));
      case HH + "recv":
        return tool("recv ", "wait " + (input.wait_seconds || 0) + " s");
      case HH + "nap":
        return tool("nap ", (input.seconds || "?") + " s");
      case HH + "ask":
        return tool("ask → " + (input.to || "operator") + ": ", input.question || "");
      default: {
        const short = name.startsWith(HH) ? name.slice(HH.length) : name;
        let args = "";
        try { args = JSON.stringify(input); } catch (_e) { args = String(input); }
        return tool(short + " ", oneLine(args, 300));
      }
    }
  }

  function toolResult(block) {
    const name = toolNames[block.tool_use_id] || "";
    const text = asText(block.content);
    const cls = "result" + (block.is_error ? " error" : "");
    const prefix = "↳ " + (block.is_error ? "error " : "") + (name ? (name.startsWith(HH) ? name.slice(HH.length) : name) + ": " : "");
    return maybeCollapsed(cls, prefix, text || "(no output)");
  }

  /* ---- one renderer per event kind (null hides the row) ------------------------------------ */

  function renderStream(e) {
    const p = e.payload || {};
    const parts = [];
    switch (p.type) {
      case "assistant": {
        for (const b of Array.isArray(p.content) ? p.content : []) {
          if (!b || typeof b !== "object") continue;
          if (b.type === "text") { if (String(b.text || "").trim()) parts.push(line("agent-text", String(b.text))); }
          else if (b.type === "thinking") parts.push(maybeCollapsed("thinking", "✻ ", String(b.thinking || "")));
          else if (b.type === "tool_use" || b.type === "server_tool_use") parts.push(toolUse(b));
          else if (b.type === "tool_result") parts.push(toolResult(b));
          else parts.push(hive.jsonFallback(b));
        }
        if (p.error) parts.push(line("note warning", "model error: " + String(p.error)));
        break;
      }
      case "user": {
        if (typeof p.content === "string") { parts.push(line("result", oneLine(p.content, 200))); break; }
        for (const b of Array.isArray(p.content) ? p.content : []) {
          if (b && b.type === "tool_result") parts.push(toolResult(b));
          else if (b && b.type === "text") parts.push(line("result", oneLine(String(b.text || ""), 200)));
        }
        break;
      }
      case "system":
        if (p.subtype === "init") { // claude is up: one dim line, not the whole tool list
          const d = p.data && typeof p.data === "object" ? p.data : {};
          parts.push(line("state-line", "· claude up · session " + String(d.session_id || "?").slice(0, 8) +
            (d.model ? " · model " + d.model : "")));
          break;
        }
        parts.push(line("state-line", "system " + String(p.subtype || "") + " " + oneLine(asText(p.data), 200)));
        break;
      case "result":
        if (!p.is_error) return null; // turn_end carries the summary
        parts.push(line("note warning", "result: " + oneLine(asText(p.result || p.subtype), 300)));
        break;
      case "stream_event":
      case "rate_limit_event":
        return null;
      default:
        return row("stream unknown", e, hive.jsonFallback(e));
    }
    if (!parts.length) return null;
    return row("stream " + String(p.type), e, ...parts);
  }

  const renderers = {
    turn_start(e) {
      const p = e.payload || {};
      const body = String(p.body === undefined ? "" : p.body);
      const extra = [];
      if (p.unread) extra.push(" · " + p.unread + " unread");
      if (p.redelivered) extra.push(" · redelivered");
      return row("turn-start in", e,
        line("", "▶ ", el("span", { class: "who" }, String(p.from || "?")), " → " + NAME + (p.id ? " #" + p.id : "") + extra.join("") + ":"),
        el("pre", { class: "body" }, body));
    },
    stream: renderStream,
    note(e) {
      const p = e.payload || {};
      return row("note-row", e, line("note " + String(p.level || ""), "· " + String(p.text || "")));
    },
    turn_end(e) {
      const p = e.payload || {};
      const u = p.usage || {};
      const bits = [];
      if (p.duration_ms !== undefined && p.duration_ms !== null) bits.push((p.duration_ms / 1000).toFixed(1) + " s");
      if (u.input_tokens !== undefined) bits.push((u.input_tokens || 0) + " in / " + (u.output_tokens || 0) + " out tok");
      if (p.cost_usd) bits.push("$" + Number(p.cost_usd).toFixed(4));
      if (p.model) bits.push(String(p.model));
      let cls = "ok", head = "■ turn done";
      if (p.cancelled) { cls = "cancelled"; head = "■ turn cancelled"; }
      else if (!p.ok) { cls = "fail"; head = "✗ turn failed"; }
      const text = head + (bits.length ? " · " + bits.join(" · ") : "") + (!p.ok && p.note ? " · " + oneLine(String(p.note), 300) : "");
      return row("turn-end-row", e, line("turn-end " + cls, text));
    },
    state_changed(e) {
      const p = e.payload || {};
      if (p.state === "napping") return row("state-row", e, line("state-line", "· napping until " + hive.fmtClock(p.until)));
      if (p.state === "compacting") return row("state-row", e, line("state-line", "· compacting ▣"));
      if (p.state === "needs_login") return row("state-row", e, line("note warning", "needs login: use the login panel above"));
      return null;
    },
    model_changed(e) {
      const p = e.payload || {};
      const why = p.source === "config" ? " (a deploy changed the config's model" + (p.previous_default ? " from " + p.previous_default : "") + ")" : "";
      const parts = [line("model-line", "· model → " + String(p.model || "default") + (p.override ? "" : " (the config's default)") + " from the next turn" + why)];
      if (p.hidden_by_override) parts.push(line("note warning", "the operator's override " + String(p.override) + " hides the config's model " + String(p.default)));
      if (p.warning) parts.push(line("note warning", String(p.warning)));
      return row("model-row", e, ...parts);
    },
    notes_compacted(e) {
      const p = e.payload || {};
      return row("note-row", e, line("note", "· notes compacted: " + hive.fmtBytes(p.before_bytes) + " → " +
        hive.fmtBytes(p.after_bytes) + " (previous kept at " + String(p.kept || "?") + ")"));
    },
    notes_compaction_failed(e) {
      const p = e.payload || {};
      return row("note-row", e, line("note warning", "notes compaction rejected, notes unchanged: " + String(p.reason || "?")));
    },
    ui(e) {
      const cls = "ui-note" + (e.level === "error" ? " error" : "");
      return row("ui-row", null, line(cls, el("pre", {}, String(e.text))));
    },
  };

  function note(text, level) {
    term.append({ kind: "ui", text, level });
  }

  /* ---- header: state badge, model chip, last turn ------------------------------------------ */

  const LABELS = { idle: "idle", thinking: "thinking", compacting: "compacting ▣", needs_login: "needs login",
    starting: "starting", offline: "offline" };

  function renderHeader() {
    const t = now();
    const st = online && snap ? snap.state : "offline";
    const since = online && snap ? snap.state_since : offlineSince;
    let label = LABELS[st] || st;
    if (st === "napping") {
      const left = snap.nap_until ? snap.nap_until - t : 0;
      label = "napping ☾ · " + hive.fmtMMSS(Math.max(0, left));
    }
    const badge = $("state-badge");
    badge.textContent = label + " · " + hive.fmtAge(t - (since || t));
    badge.className = "badge " + st.replace("_", "-");
    badge.dataset.state = st;
    badge.title = "since " + hive.fmtClock(since);
    $("cancel-btn").classList.toggle("hidden", st !== "thinking");
    $("end-nap-btn").classList.toggle("hidden", st !== "napping");
    $("compact-btn").classList.toggle("hidden", st !== "idle");
    $("compact-notes-btn").classList.toggle("hidden", st !== "idle");
    $("conn").textContent = online ? "live" : "offline · reconnecting";
    if (!snap) return;
    const chip = $("model-chip");
    const model = snap.model || "default";
    let status;
    if (snap.model_active && snap.model_active === snap.model) status = "active";
    else status = "queued for next turn";
    chip.textContent = "model " + model + " · " + status +
      (snap.model_queued_at ? " · switched " + hive.fmtClock(snap.model_queued_at) + (snap.model_switch_source === "config" ? " (deploy)" : "") : "") +
      (snap.model_config_hidden ? " · overrides the config's " + snap.model_default : "");
    chip.dataset.source = snap.model_switch_source || "";
    chip.dataset.hidden = snap.model_config_hidden ? "1" : "";
    chip.dataset.model = model;
    chip.dataset.status = status;
    chip.title = "default " + (snap.model_default || "—") + (snap.model_override ? ", override " + snap.model_override : "") +
      (snap.model_active ? ", last turn ran " + snap.model_active : "");
    $("last-turn").textContent = snap.last_turn_ms === null || snap.last_turn_ms === undefined
      ? "last turn —" : "last turn " + (snap.last_turn_ms / 1000).toFixed(1) + " s";
    $("store-chip").classList.toggle("hidden", snap.events_persistent !== false);
    if (typeof snap.notes_bytes === "number") {
      const limit = snap.notes_compact_bytes || 0;
      const notes = $("notes-chip");
      notes.textContent = "notes " + hive.fmtBytes(snap.notes_bytes) + (limit ? " / " + hive.fmtBytes(limit) : "");
      notes.dataset.bytes = String(snap.notes_bytes);
      notes.classList.toggle("warn", limit > 0 && snap.notes_bytes > limit);
      notes.title = "/state/notes.md: " + snap.notes_bytes + " bytes" + (limit ? ", compacted after a turn past " + limit : ", never compacted automatically") +
        (snap.notes_kept ? "; " + snap.notes_kept + " previous version(s) kept in /state/notes.history/" : "");
    }
    if (snap.events_store_error) $("store-chip").title = "event trail not persisted: " + snap.events_store_error;
    renderLogin(snap.login, st === "needs_login");
  }

  async function refreshState() {
    try {
      snap = await hive.getJSON("api/state");
    } catch (_err) {
      setOnline(false);
      return;
    }
    renderHeader();
  }

  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; refreshState(); }, 150);
  }

  function setOnline(value) {
    if (online === value) return;
    online = value;
    if (!value) offlineSince = now();
    renderHeader();
  }

  /* ---- the live trail ----------------------------------------------------------------------- */

  function onEvent(e) {
    if (!e || typeof e.id !== "number" || e.id <= lastId) return;
    lastId = e.id;
    term.append(e);
    const p = e.payload || {};
    if (snap && e.kind === "state_changed") {
      snap.state = p.state;
      snap.state_since = p.since || e.ts;
      if (p.until) snap.nap_until = p.until;
      renderHeader();
    }
    if (e.kind === "turn_end") {
      if (snap && p.duration_ms !== undefined) snap.last_turn_ms = p.duration_ms;
      refreshStats();
      if (window.hiveTelemetry) window.hiveTelemetry.refresh();
      refreshInbox();
    }
    if (e.kind === "turn_start") refreshInbox();
    if (e.kind === "state_changed" || e.kind === "model_changed" || e.kind === "turn_end" || e.kind === "turn_start" ||
      e.kind === "notes_compacted" || e.kind === "notes_compaction_failed") refreshSoon();
  }

  async function loadHistory() {
    const h = await hive.getJSON("events/history?after=" + lastId);
    epoch = h.epoch || "";
    const fresh = (h.events || []).filter((e) => e.id > lastId);
    if (fresh.length) {
      term.appendMany(fresh);
      lastId = fresh[fresh.length - 1].id;
    }
    term.scrollToBottom();
  }

  function connect() {
    if (live) live.close();
    live = hive.stream("events/stream", {
      after: lastId,
      epoch,
      onEvent,
      onReset() { // the trail's ids began again: start the page's copy over
        lastId = 0;
        term.clear();
        loadHistory().then(connect, () => setOnline(false));
      },
      onMissed(m) {
        term.appendMany([{ id: 0, ts: Date.now() / 1000, kind: "note",
          payload: { text: "missed " + m.missed + " events: this page fell too far behind the live trail" } }]);
      },
      onOpen() { setOnline(true); refreshState(); },
      onError(_e, readyState) {
        setOnline(false);
        if (readyState === 2 && !reconnectTimer) { // closed for good (e.g. a 502 from the proxy): retry
          reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, 2000);
        }
      },
    });
    // stream.last starts at lastId: the server resumes after it, the helper drops anything older
  }

  /* ---- inbox and stats ---------------------------------------------------------------------- */

  async function refreshInbox() {
    let reply;
    try { reply = await hive.getJSON("api/inbox?limit=20"); } catch (_e) { return; }
    const list = $("inbox");
    const msgs = reply.messages || [];
    $("inbox-count").textContent = msgs.length ? "last " + msgs.length : "";
    if (!msgs.length) { list.replaceChildren(el("li", { class: "hh-empty" }, "no messages yet")); return; }
    list.replaceChildren(...msgs.map((m) => el("li", { class: m.acked_at ? "acked" : "pending", dataset: { id: String(m.id) } },
      el("span", { class: "meta" }, "#" + m.id + " from " + m.sender + " · " + hive.fmtClock(m.sent_at)),
      el("span", { class: "body" }, oneLine(String(m.body || ""), 400)))));
  }

  let statsSeq = 0; // refreshes can overlap (turn_end + boot): only the newest reply is drawn

  async function refreshStats() {
    const seq = ++statsSeq;
    let s;
    try { s = await hive.getJSON("api/stats"); } catch (_e) { return; }
    if (seq !== statsSeq) return;
    const box = $("stats");
    const kv = (k, v) => [el("span", { class: "k" }, k), el("span", { class: "v", dataset: { stat: k } }, String(v))];
    const avg = s.turns ? (s.total_ms / s.turns / 1000).toFixed(1) + " s" : "—";
    box.replaceChildren(
      ...kv("turns", s.turns + " (" + s.ok + " ok, " + s.failed + " failed, " + s.cancelled + " cancelled)"),
      ...kv("tokens in", s.input_tokens), ...kv("tokens out", s.output_tokens),
      ...kv("cache read", s.cache_read_input_tokens), ...kv("cache write", s.cache_creation_input_tokens),
      ...kv("cost", "$" + Number(s.cost_usd || 0).toFixed(4)), ...kv("avg turn", avg));
    $("stats-since").textContent = s.since ? "since " + hive.fmtDate(s.since) : "";
    drawChart(Array.isArray(s.series) ? s.series : []);
  }

  /* The stats chart: uPlot (the core's /static/vendor/uplot/), the last turns from api/stats'
   * `series` — duration (s, left axis, matrix green), tokens in+out (right axis, amber), failed or
   * cancelled turns as red points on the duration scale. x is the turn number in the trail.
   * Created once, then `setData` on every refresh (each turn_end refreshes the stats), so a new turn
   * is a new point without a reload. The instance is window.__hiveStatsChart (for the tests). */
  let chart = null;
  let chartWidth = 0;

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function chartData(series) {
    const x = [], dur = [], tok = [], bad = [];
    for (const t of series) {
      const s = Number(t.duration_ms || 0) / 1000;
      x.push(Number(t.n));
      dur.push(s);
      tok.push(Number(t.tokens || 0));
      bad.push(t.ok ? null : s);
    }
    return [x, dur, tok, bad];
  }

  function compact(v) {
    if (v === null || v === undefined) return "—";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    return String(Math.round(v));
  }

  function makeChart(host, data) {
    const matrix = cssVar("--matrix", "#3cff7a");
    const amber = cssVar("--amber", "#f9c74f");
    const red = cssVar("--red", "#f38ba8");
    const muted = cssVar("--muted", "#7f849c");
    const font = "10px " + (cssVar("--font", "monospace"));
    const grid = { stroke: "rgba(88, 91, 112, 0.28)", width: 1 };
    const ticks = { stroke: "rgba(88, 91, 112, 0.45)", width: 1, size: 4 };
    const axis = (extra) => Object.assign({ stroke: muted, font, labelFont: font, grid, ticks, size: 34, gap: 3 }, extra);
    chartWidth = Math.max(120, Math.floor(host.clientWidth || 280));
    const opts = {
      width: chartWidth,
      height: 110,
      pxAlign: 0,
      cursor: { points: { size: 6 }, drag: { x: false, y: false } },
      legend: { show: true, live: true },
      scales: { x: { time: false }, s: { auto: true, range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] },
        tok: { auto: true, range: (_u, _min, max) => [0, Math.max(10, max) * 1.1] } },
      axes: [
        axis({ size: 22, grid: { show: false }, values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? "#" + v : "")) }),
        axis({ scale: "s", values: (_u, splits) => splits.map((v) => v + "s") }),
        axis({ scale: "tok", side: 1, grid: { show: false }, values: (_u, splits) => splits.map(compact) }),
      ],
      series: [
        { label: "turn", value: (_u, v) => (v === null || v === undefined ? "—" : "#" + v) },
        { label: "duration", scale: "s", stroke: matrix, width: 1.5, fill: "rgba(60, 255, 122, 0.07)",
          points: { show: true, size: 4, fill: matrix, stroke: matrix },
          value: (_u, v) => (v === null || v === undefined ? "—" : v.toFixed(1) + " s") },
        { label: "tokens", scale: "tok", stroke: amber, width: 1.25, dash: [4, 3],
          points: { show: true, size: 4, fill: amber, stroke: amber }, value: (_u, v) => compact(v) },
        { label: "failed", scale: "s", stroke: red, width: 0, paths: () => null,
          points: { show: true, size: 7, fill: red, stroke: red },
          value: (_u, v) => (v === null || v === undefined ? "—" : v.toFixed(1) + " s") },
      ],
    };
    const c = new window.uPlot(opts, data, host);
    if (window.ResizeObserver) {
      new ResizeObserver(() => {
        const w = Math.max(120, Math.floor(host.clientWidth));
        if (w && w !== chartWidth) { chartWidth = w; c.setSize({ width: w, height: 110 }); }
      }).observe(host);
    }
    return c;
  }

  function drawChart(series) {
    const host = $("turn-chart");
    if (!window.uPlot) {
      host.textContent = "chart unavailable (uPlot did not load)";
      return;
    }
    const data = chartData(series);
    if (!chart) {
      chart = makeChart(host, data);
      window.__hiveStatsChart = chart;
    } else {
      chart.setData(data);
    }
    host.dataset.points = String(data[0].length);
  }

  /* ---- login panel -------------------------------------------------------------------------- */

  function renderLogin(login, needed) {
    const panel = $("login-panel");
    const show = needed || (login && (login.running || login.note));
    panel.classList.toggle("hidden", !show);
    if (!login) return;
    const urlOk = login.url && /^https?:\/\//.test(login.url);
    $("login-url-row").classList.toggle("hidden", !urlOk);
    if (urlOk) { $("login-url").href = login.url; $("login-url").textContent = login.url; }
    $("login-code-form").classList.toggle("hidden", !login.running);
    $("login-output").textContent = (login.output || []).join("\n");
    $("login-status").textContent = login.running ? "login running…" : (login.note || "");
    $("login-start").textContent = login.started ? "restart login" : "start login";
    $("login-start").disabled = !!login.running;
    if (login.running && !loginPoll) {
      loginPoll = setInterval(async () => {
        try {
          const l = await hive.getJSON("api/login");
          if (snap) snap.login = l;
          renderLogin(l, snap && snap.state === "needs_login");
          if (!l.running) { clearInterval(loginPoll); loginPoll = null; refreshState(); }
        } catch (_e) { /* the next tick tries again */ }
      }, 1000);
    }
  }

  function wireLogin() {
    $("login-start").addEventListener("click", () => hive.busy($("login-start"), async () => {
      const r = await hive.post("api/login/start", {});
      if (snap) snap.login = r.result;
      renderLogin(r.result, true);
    }));
    $("login-code-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      hive.busy($("login-code-btn"), async () => {
        const r = await hive.post("api/login/code", { code: $("login-code").value });
        $("login-code").value = "";
        if (snap) snap.login = r.result;
        renderLogin(r.result, true);
        hive.toast(r.result.note || "code sent", r.result.exit_code ? "error" : "ok");
      });
    });
  }

  /* ---- the prompt and slash commands -------------------------------------------------------- */

  async function control(path, data) {
    const r = await hive.post(path, data || {});
    if (r.state) { snap = r.state; renderHeader(); }
    return r.result;
  }

  async function slash(text) {
    const [cmd, ...rest] = text.trim().split(/\s+/);
    const arg = rest.join(" ");
    try {
      switch (cmd) {
        case "/help":
          note(COMMANDS.map(([c, h]) => c.trim().padEnd(13) + " " + h).join("\n") +
            "\nenter sends a message to " + NAME + " as the operator · shift+enter adds a newline · tab completes");
          return;
        case "/clear":
          term.clear();
          note("view cleared — the trail is kept (reload to see it again)");
          return;
        case "/model": {
          if (!arg) {
            note("model " + (snap && snap.model) + " (default " + (snap && snap.model_default) + "). usage: /model <name>, /model default");
            return;
          }
          const result = await control("api/model", { model: arg === "default" ? "" : arg });
          note(String(result));
          return;
        }
        case "/compact":
          note("compacting…");
          note(String(await control("api/compact")));
          return;
        case "/compact-notes":
          note("compacting the notes…");
          note(String(await control("api/compact-notes")));
          return;
        case "/cancel":
          note(String(await control("api/cancel")));
          return;
        case "/new-session":
          note(String(await control("api/new-session")));
          return;
        default:
          note("unknown command " + cmd + " — try /help", "error");
      }
    } catch (err) {
      note(cmd + ": " + (err && err.message ? err.message : String(err)), "error");
    }
  }

  async function sendMessage(body) {
    try {
      const r = await hive.post("/api/send", { to: NAME, body });
      const ids = (r && (r.ids || (r.id ? [r.id] : []))) || [];
      note("→ sent to " + NAME + (ids.length ? " as message #" + ids.join(", #") : ""));
      return true;
    } catch (err) {
      note("send failed: " + (err && err.message ? err.message : String(err)), "error");
      return false;
    }
  }

  function complete(input) {
    const value = input.value;
    if (!value.startsWith("/")) return false;
    if (/\s/.test(value)) return true; // a command with its argument: nothing to complete
    const matches = COMMANDS.map(([c]) => c).filter((c) => c.startsWith(value) && c !== value);
    if (matches.length === 1) {
      input.value = matches[0];
    } else if (matches.length > 1) {
      let prefix = matches[0];
      for (const m of matches) while (!m.startsWith(prefix)) prefix = prefix.slice(0, -1);
      if (prefix.length > value.length) input.value = prefix;
      else note(matches.map((m) => m.trim()).join("  "));
    }
    return true;
  }

  function buildPrompt() {
    const input = el("textarea", { id: "term-input", rows: "1", spellcheck: "false", autocomplete: "off",
      placeholder: "message " + NAME + " as the operator, or /help", "aria-label": "message or slash command" });
    const wrap = el("div", { class: "term-prompt" }, el("span", { class: "caret" }, "›"), input,
      el("span", { class: "hint" }, "enter send · shift+enter newline · tab complete"));
    term.root.appendChild(wrap);
    const grow = () => { input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight, 160) + "px"; };
    input.addEventListener("input", grow);
    input.addEventListener("keydown", async (ev) => {
      if (ev.key === "Tab" && !ev.shiftKey) {
        if (complete(input)) ev.preventDefault();
        return;
      }
      if (ev.key !== "Enter" || ev.shiftKey || ev.isComposing) return;
      ev.preventDefault();
      const text = input.value;
      if (!text.trim() || input.dataset.busy) return;
      input.dataset.busy = "1";
      try {
        if (text.trim().startsWith("/")) {
          input.value = "";
          grow();
          await slash(text);
        } else if (await sendMessage(text)) {
          input.value = "";
          grow();
        }
      } finally {
        delete input.dataset.busy;
      }
      term.scrollToBottom();
    });
    return input;
  }

  /* ---- boot --------------------------------------------------------------------------------- */

  async function boot() {
    const host = $("term-host");
    host.classList.add("agent-term");
    term = new hive.Terminal(host, { renderers, maxRows: 2000 });
    term.scroll.id = "term";
    term.pill.id = "term-pill";
    const input = buildPrompt();
    $("cancel-btn").addEventListener("click", () => hive.busy($("cancel-btn"), async () => note(String(await control("api/cancel")))));
    $("end-nap-btn").addEventListener("click", () => hive.busy($("end-nap-btn"), async () => note(String(await control("api/end-nap")))));
    $("compact-btn").addEventListener("click", () => hive.busy($("compact-btn"), async () => {
      note("compacting…");
      note(String(await control("api/compact")));
    }));
    $("compact-notes-btn").addEventListener("click", () => hive.busy($("compact-notes-btn"), async () => {
      note("compacting the notes…");
      note(String(await control("api/compact-notes")));
    }));
    wireLogin();
    renderHeader();
    await refreshState();
    try {
      await loadHistory();
    } catch (err) {
      note("could not load the trail: " + (err && err.message ? err.message : String(err)), "error");
    }
    connect();
    refreshInbox();
    refreshStats();
    setInterval(renderHeader, 1000);
    input.focus();
    document.body.dataset.ready = "1";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
