// cloudq dashboard: the throughput chart (uPlot), fed by /api/queues/history every 30 s.
// No inline script anywhere (the Content-Security-Policy forbids it); htmx does the rest.
(function () {
  "use strict";
  var REFRESH_MS = 30000;

  function draw(box) {
    var chart = null;
    function load() {
      fetch(box.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (d) {
          var data = [d.t, d.succeeded, d.failed];
          if (chart) { chart.setData(data); return; }
          box.textContent = "";
          chart = new uPlot({
            width: Math.max(400, box.clientWidth || 800),
            height: 240,
            series: [
              {},
              { label: d.source === "events" ? "succeeded" : "finished", stroke: "#2e7d32", width: 2 },
              { label: "failed", stroke: "#c62828", width: 2 }
            ],
            axes: [{}, { label: "tasks / minute" }]
          }, data, box);
          box.dataset.ready = "1";
        })
        .catch(function (e) { box.textContent = "chart unavailable (" + e + ")"; });
    }
    load();
    setInterval(load, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("chart");
    if (box && window.uPlot) { draw(box); }
  });
})();
