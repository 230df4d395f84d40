/* hyperhive agent page — the stats chart (uPlot): the last turns' duration, tokens and failures
 * (an ES module). */
import { $ } from "./page.js";

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

export function drawChart(series) {
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
