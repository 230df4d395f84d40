/* hyperhive — what the dashboard's hive charts (dashboard/hivestats.js) and the agent page's
 * telemetry (the harness's telemetry.js) share around uPlot: compact axis numbers, a readable
 * time axis for one point, and the theme's colours. window.hiveChartKit. */
(function () {
  "use strict";

  function compact(v) {
    if (v === null || v === undefined) return "";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    if (a > 0 && a < 0.01) return v.toExponential(0);
    return String(Math.round(v * 100) / 100);
  }
  /* one point (or none) still gets a readable time axis: ±1 min around it */
  const xRange = (_u, min, max) => (min === max || min == null ? [(min || Date.now() / 1000) - 60, (max || Date.now() / 1000) + 60] : [min, max]);

  function cssVar(n, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(n).trim();
    return v || fallback;
  }

  window.hiveChartKit = Object.freeze({ compact, xRange, cssVar });
})();
