/* hyperhive — the dashboard's hive-level charts (uPlot) in ◆ SP3ND ◆: turns/min, the approval
 * queue length and the cumulative spend, from GET /api/stats (no agent: the hive, last 24 h).
 * app.js calls hiveStats.refresh() at load and (debounced) on usage / budget / approval events.
 * The charts are window.__hiveCharts (for the tests). */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const charts = {};
  window.__hiveCharts = charts;

  const { compact, xRange, cssVar } = window.hiveChartKit; /* /static/common/chartkit.js */

  function cumulative(pts) {
    let sum = 0;
    return pts.map((p) => [p[0], (sum += p[1])]);
  }

  const SPECS = [
    { id: "turns", title: "turns / min (hive)", pts: (s) => s.turns_per_min, color: "--matrix" },
    { id: "approvals", title: "approval queue", pts: (s) => s.approval_queue.concat([[s.now, s.approval_queue_current]]), color: "--mauve" },
    { id: "spend", title: "spend, USD (cumulative, 24 h)", pts: (s) => cumulative(s.gateway_cost_usd), color: "--amber" },
  ];

  function draw(spec, s) {
    const pts = spec.pts(s) || [];
    const data = pts.length === 1  /* one point: pad the time axis ±1 min (uPlot would span years) */
      ? [[pts[0][0] - 60, pts[0][0], pts[0][0] + 60], [null, pts[0][1], null]]
      : [pts.map((p) => p[0]), pts.map((p) => p[1])];
    const box = $("hc-" + spec.id);
    if (!box) return;
    box.dataset.points = String(pts.length);
    if (charts[spec.id]) { charts[spec.id].setData(data); return; }
    const color = cssVar(spec.color, "#3cff7a");
    const muted = cssVar("--muted", "#7f849c");
    const font = "10px " + cssVar("--font", "monospace");
    const axis = { stroke: muted, font, grid: { stroke: "rgba(88, 91, 112, 0.28)", width: 1 }, size: 40 };
    charts[spec.id] = new window.uPlot({
      title: spec.title, width: Math.max(200, Math.floor(box.clientWidth || 300)), height: 100,
      cursor: { drag: { x: false, y: false } }, legend: { show: false }, scales: { x: { time: true, range: xRange } },
      axes: [Object.assign({}, axis, { size: 22 }), Object.assign({}, axis, { size: 44, values: (_u, splits) => splits.map(compact) })],
      series: [{}, { label: spec.title, stroke: color, width: 1.5, points: { show: true, size: 4, fill: color } }],
    }, data, box);
  }

  let seq = 0;
  async function refresh() {
    const mine = ++seq;
    let r;
    try {
      r = await fetch(`/api/stats?since=${Date.now() / 1000 - 86400}`, { credentials: "same-origin" });
    } catch (_e) { return; }
    if (!r.ok || mine !== seq || !window.uPlot) return;
    const s = (await r.json()).stats;
    for (const spec of SPECS) draw(spec, s);
    $("hive-charts").dataset.loaded = String(mine);
  }

  window.hiveStats = { refresh };
})();
