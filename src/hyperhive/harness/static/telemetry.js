/* hyperhive — the agent page's ◆ T3L3M3TRY ◆ section: the core's series for this agent
 * (GET /api/stats?agent=NAME, same origin, the dashboard session; docs/gateway.md) charted with
 * uPlot. Loaded once, then refreshed by agent.js on every turn_end (no polling). Agent-provided
 * text (tool names) only goes through textContent. The charts are window.__hiveTelemetryCharts.
 */
(function () {
  "use strict";
  const name = document.body.dataset.agent;
  const $ = (id) => document.getElementById(id);
  const charts = {};
  window.__hiveTelemetryCharts = charts;
  const SINCE = 24 * 3600;

  const { compact, xRange, cssVar } = window.hiveChartKit; /* /static/common/chartkit.js */

  /* [[ts, v], ...] series → uPlot columns on one shared x (seconds) */
  function columns(list) {
    const xs = Array.from(new Set(list.flatMap((pts) => pts.map((p) => p[0])))).sort((a, b) => a - b);
    const cols = list.map((pts) => {
      const m = new Map(pts.map((p) => [p[0], p[1]]));
      return xs.map((x) => (m.has(x) ? m.get(x) : null));
    });
    if (xs.length === 1) {  /* one point: pad the time axis ±1 min (uPlot would span years) */
      return [[xs[0] - 60, xs[0], xs[0] + 60], ...cols.map((c) => [null, c[0], null])];
    }
    return [xs, ...cols];
  }

  const SPECS = [
    { id: "turns_per_min", title: "turns / min", lines: (s) => [["turns", s.turns_per_min]] },
    { id: "turn_ms", title: "turn duration (ms)", lines: (s) => [["duration", s.turn_ms]] },
    { id: "tool_calls", title: "tool calls per turn", lines: (s) => [["tool calls", s.tool_calls_per_turn]] },
    { id: "inbox", title: "inbox depth", lines: (s) => [["inbox", s.inbox_depth]] },
    { id: "sent", title: "sent per turn", lines: (s) => Object.entries(s.sent_per_turn).map(([k, v]) => ["→ " + k, v]) },
    { id: "received", title: "received per turn", lines: (s) => Object.entries(s.received_per_turn).map(([k, v]) => ["← " + k, v]) },
    { id: "tokens", title: "tokens per turn", lines: (s) => [["tokens", s.tokens_per_turn]] },
    { id: "cost", title: "cost per turn (USD)", lines: (s) => [["cost", s.cost_per_turn]] },
    { id: "notes", title: "notes file (bytes)", lines: (s) => [["notes", s.notes_bytes]] },
  ];

  function draw(spec, s) {
    const lines = spec.lines(s);
    const data = columns(lines.map((l) => l[1] || []));
    let box = $("tm-" + spec.id);
    if (!box) return;
    box.dataset.points = String(new Set(lines.flatMap((l) => (l[1] || []).map((p) => p[0]))).size);
    if (charts[spec.id] && charts[spec.id]._n === lines.length) {
      charts[spec.id].setData(data);
      return;
    }
    box.replaceChildren();
    const colors = [cssVar("--matrix", "#3cff7a"), cssVar("--amber", "#f9c74f"), cssVar("--mauve", "#cba6f7"),
      cssVar("--cyan", "#89dceb")];
    const muted = cssVar("--muted", "#7f849c");
    const font = "10px " + cssVar("--font", "monospace");
    const axis = { stroke: muted, font, grid: { stroke: "rgba(88, 91, 112, 0.28)", width: 1 }, size: 34 };
    const opts = {
      title: spec.title, width: Math.max(160, Math.floor(box.clientWidth || 260)), height: 90,
      cursor: { drag: { x: false, y: false } }, legend: { show: lines.length > 1, live: false },
      scales: { x: { time: true, range: xRange } },
      axes: [Object.assign({}, axis, { size: 22 }), Object.assign({}, axis, { size: 44, values: (_u, splits) => splits.map(compact) })],
      series: [{}, ...lines.map((l, i) => ({ label: l[0], stroke: colors[i % colors.length], width: 1.25,
        points: { show: true, size: 4, fill: colors[i % colors.length] } }))],
    };
    const c = new window.uPlot(opts, data, box);
    c._n = lines.length;
    charts[spec.id] = c;
  }

  function summary(s) {
    const box = $("tm-summary");
    const fmt = (v, unit) => (v === null || v === undefined ? "—" : Math.round(v) + unit);
    const rows = [
      ["turns", String(s.turns)],
      ["turn p50 / p95", fmt(s.turn_ms_p50, " ms") + " / " + fmt(s.turn_ms_p95, " ms")],
      ["exits", Object.entries(s.exits).map(([k, v]) => k.replace("_", "-") + " " + v).join(" · ")],
      ["inbox", s.inbox_depth_current + " now · max " + s.inbox_depth_max],
      ["approval queue", String(s.approval_queue_current)],
      ["since last turn", fmt(s.seconds_since_last_turn, " s")],
      ["tools", Object.entries(s.tools).map(([k, v]) => k + " " + v).join(" · ") || "—"],
    ];
    box.replaceChildren(...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      return [dt, dd];
    }));
  }

  let seq = 0;
  let lastTurns = -1;
  /* after a turn_end the core writes its rows once it sees the harness go idle: if they are not
     there yet, look again (at most 3 times, 1 s apart) */
  async function refresh(attempt) {
    const tries = typeof attempt === "number" ? attempt : 0;
    const mine = ++seq;
    let r;
    try {
      const since = Date.now() / 1000 - SINCE;
      r = await fetch(`/api/stats?agent=${encodeURIComponent(name)}&since=${since}`, { credentials: "same-origin" });
    } catch (_e) { return; }
    if (!r.ok || mine !== seq) return;
    const s = (await r.json()).stats;
    if (s.turns <= lastTurns && tries < 3) setTimeout(() => refresh(tries + 1), 1000);
    lastTurns = Math.max(lastTurns, s.turns);
    summary(s);
    if (!window.uPlot) { $("tm-note").textContent = "charts unavailable (uPlot did not load)"; return; }
    for (const spec of SPECS) draw(spec, s);
    $("tm-note").textContent = "";
    document.getElementById("telemetry").dataset.loaded = String(mine);
  }

  window.hiveTelemetry = { refresh };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", refresh);
  else refresh();
})();
