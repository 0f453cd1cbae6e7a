// The run browser's curves: fetch the runs' metrics from the server and draw one interactive
// Plotly plot per metric, one line per run (Plotly from /static/plotly.min.js, no CDN).
"use strict";
(async function () {
  const names = JSON.parse(document.getElementById("runs-selected").textContent);
  const status = document.getElementById("plots-status");
  const query = names.map((n) => "run=" + encodeURIComponent(n)).join("&");
  let data;
  try {
    const response = await fetch("/api/runs/metrics?" + query);
    data = await response.json();
    if (!response.ok) throw new Error(data.error);
  } catch (error) {
    status.textContent = `The curves cannot be loaded: ${error.message || error}`;
    status.className = "error";
    return;
  }
  const problems = Object.entries(data.errors).map(([name, message]) => `${name}: ${message}`);
  if (!data.panels.length) problems.push("no learning curve was logged yet");
  status.textContent = problems.join("; ");
  status.className = problems.length ? "error" : "muted";
  const holder = document.getElementById("plots");
  for (const panel of data.panels) {
    const div = document.createElement("div");
    div.className = "plot";
    div.dataset.metric = panel.name;
    holder.appendChild(div);
    const traces = [];
    for (const [name, columns] of Object.entries(data.runs)) {
      if (!columns[panel.name]) continue;
      traces.push({ x: columns.step, y: columns[panel.name], name: name, mode: "lines+markers",
        type: "scatter", connectgaps: true, marker: { size: 4 } });
    }
    Plotly.newPlot(div, traces, {
      title: { text: panel.name }, height: 320, margin: { t: 40, r: 20, b: 45, l: 60 },
      xaxis: { title: { text: data.x_label } },
      yaxis: { title: { text: panel.name }, type: panel.log ? "log" : "linear" },
      showlegend: true, legend: { orientation: "h", y: -0.25 },
    }, { responsive: true, displaylogo: false });
  }
  document.body.dataset.plotted = String(data.panels.length);
})();
