// The DER page: effective control, readings and acknowledgements as plots.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("plot-data").textContent);
  const P = window.dergwPlots;
  const c = data.control;
  P.line(document.getElementById("plot-control"), c.x, [
    { label: "export max W", values: c.export_max_w, stroke: "#cf222e" },
    { label: "import max W (negative)", values: c.import_max_w, stroke: "#8250df" },
    { label: "setpoint W", values: c.setpoint_w, stroke: "#1f6feb" },
  ]);
  const colours = { W: "#1f6feb", V: "#bf8700", soc_pct: "#2da44e" };
  Object.keys(data.readings).forEach(function (q) {
    const el = document.getElementById("plot-" + q);
    if (el) {
      P.line(el, data.readings[q].x, [{ label: q, values: data.readings[q].y, stroke: colours[q] }]);
    }
  });
  const statuses = [];
  data.acks.forEach(function (a) { if (statuses.indexOf(a.status) < 0) statuses.push(a.status); });
  P.points(document.getElementById("plot-acks"), data.acks.map(function (a) { return a.at; }),
           data.acks.map(function (a) { return statuses.indexOf(a.status); }), statuses);
})();
