// Shared plotting helpers for the status page (uPlot, served from this package).
"use strict";
window.dergwPlots = (function () {
  // One point (or equal times) would give uPlot an empty range: pad it by half an hour.
  const timeRange = function (u, min, max) {
    return min === max ? [min - 1800, max + 1800] : [min, max];
  };
  function size(el) {
    return { width: Math.max(320, el.clientWidth || 800), height: 220 };
  }
  function line(el, x, series) {
    // series: [{label, values, stroke}]
    if (!x.length) {
      el.textContent = el.dataset.title + ": no data yet";
      el.classList.add("empty");
      return null;
    }
    const opts = Object.assign(size(el), {
      title: el.dataset.title,
      scales: { x: { time: true, range: timeRange } },
      series: [{}].concat(series.map(function (s) {
        return { label: s.label, stroke: s.stroke, width: 2, spanGaps: false };
      })),
    });
    el.dataset.points = String(x.length);
    return new uPlot(opts, [x].concat(series.map(function (s) { return s.values; })), el);
  }
  function points(el, x, y, labels) {
    if (!x.length) {
      el.textContent = el.dataset.title + ": none yet";
      el.classList.add("empty");
      return null;
    }
    const opts = Object.assign(size(el), {
      title: el.dataset.title,
      scales: { x: { time: true, range: timeRange }, y: { range: [-0.5, labels.length - 0.5] } },
      axes: [{}, { values: function (u, ticks) {
        return ticks.map(function (t) { return labels[t] || ""; });
      }, size: 110 }],
      series: [{}, { label: "status", stroke: "#1f6feb", width: 0,
                     points: { show: true, size: 8, fill: "#1f6feb" } }],
    });
    el.dataset.points = String(x.length);
    return new uPlot(opts, [x, y], el);
  }
  function bars(el, edges, counts) {
    const opts = Object.assign(size(el), {
      title: el.dataset.title,
      scales: { x: { time: false } },
      series: [{ label: "s" }, { label: "DERs", stroke: "#2da44e", fill: "rgba(45,164,78,0.3)",
                                 paths: uPlot.paths.bars({ size: [0.9, 60] }) }],
    });
    return new uPlot(opts, [edges, counts], el);
  }
  return { line: line, points: points, bars: bars };
})();
