// The instruction page: its acknowledgement timeline, filled in live from the event stream
// (the session's view of GET /v1/events), and the distribution of first-answer latencies.
"use strict";
(function () {
  const live = JSON.parse(document.getElementById("live-data").textContent);
  const body = document.querySelector("#timeline tbody");
  const seen = new Set();
  const first = new Map(); // DER -> seconds to its first answer
  let chart = null;

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  function add(ack) {
    if (ack.instruction_id !== live.instruction_id || seen.has(ack.id)) return;
    seen.add(ack.id);
    const at = Date.parse(ack.at) / 1000;
    const after = at - live.created;
    const row = document.createElement("tr");
    row.className = "ack";
    cell(row, new Date(at * 1000).toISOString().replace(".000", ""));
    cell(row, after.toFixed(2));
    cell(row, ack.resource_id);
    cell(row, ack.status);
    cell(row, ack.protocol_status);
    body.appendChild(row);
    if (!first.has(ack.resource_id) || first.get(ack.resource_id) > after) {
      first.set(ack.resource_id, after);
    }
  }
  function quantile(sorted, q) {
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }
  function refresh() {
    const values = Array.from(first.values()).sort(function (a, b) { return a - b; });
    document.getElementById("acked").textContent = String(values.length);
    if (!values.length) return;
    document.getElementById("latency").textContent =
      "p50 " + quantile(values, 0.5).toFixed(2) + " s, p95 " + quantile(values, 0.95).toFixed(2) +
      " s, max " + values[values.length - 1].toFixed(2) + " s";
    const width = Math.max(0.1, values[values.length - 1] / 10);
    const edges = [], counts = [];
    for (let i = 0; i <= 10; i++) { edges.push(+(i * width).toFixed(3)); counts.push(0); }
    values.forEach(function (v) { counts[Math.min(10, Math.floor(v / width))] += 1; });
    const el = document.getElementById("plot-latency");
    if (chart) { chart.destroy(); }
    chart = window.dergwPlots.bars(el, edges, counts);
    el.dataset.points = String(values.length);
  }

  live.acks.forEach(add);
  refresh();
  const stream = new EventSource("/ui/events?topics=acknowledgement&after=" + live.after);
  stream.addEventListener("acknowledgement", function (e) {
    add(JSON.parse(e.data));
    refresh();
  });
  stream.onopen = function () { document.getElementById("live-state").textContent = "(live)"; };
  stream.onerror = function () {
    document.getElementById("live-state").textContent = "(reconnecting…)";
  };
})();
