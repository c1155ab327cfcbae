// Charts: Chart.js with only the pieces the console draws (bar charts).
import { BarController, BarElement, CategoryScale, Chart, LinearScale, Tooltip } from "chart.js";
import { h } from "preact";
import { useEffect, useRef } from "preact/hooks";
import htm from "htm";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);
const html = htm.bind(h);

// BarChart draws labels → values as bars; the figures are also printed beside the chart
// by the caller, as text, so they can be read (and tested) without the canvas.
export function BarChart({ labels, values, color, label }) {
  const canvas = useRef(null);
  const chart = useRef(null);
  useEffect(() => {
    chart.current = new Chart(canvas.current, {
      type: "bar",
      data: { labels, datasets: [{ label: label || "contacts", data: values, backgroundColor: color || "#2563eb" }] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { tooltip: { enabled: true } },
      },
    });
    return () => chart.current.destroy();
  }, []);
  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = labels;
    c.data.datasets[0].data = values;
    c.update("none");
  }, [JSON.stringify(labels), JSON.stringify(values)]);
  return html`<div class="chart"><canvas ref=${canvas} role="img" aria-label=${label || "chart"}></canvas></div>`;
}
