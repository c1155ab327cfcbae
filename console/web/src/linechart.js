// LineChart: Chart.js line charts (the campaign's timeline). Registers only the pieces
// it draws; the figures are printed beside the chart by the caller, as text.
import { CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip } from "chart.js";
import { h } from "preact";
import { useEffect, useRef } from "preact/hooks";
import htm from "htm";

Chart.register(CategoryScale, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);
const html = htm.bind(h);

// series: [{ label, values, color }], all as long as labels.
export function LineChart({ labels, series, label }) {
  const canvas = useRef(null);
  const chart = useRef(null);
  const datasets = () =>
    series.map((s) => ({ label: s.label, data: s.values, borderColor: s.color, backgroundColor: s.color, pointRadius: labels.length > 60 ? 0 : 2, borderWidth: 2, tension: 0 }));
  useEffect(() => {
    chart.current = new Chart(canvas.current, {
      type: "line",
      data: { labels, datasets: datasets() },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { maxTicksLimit: 12, autoSkip: true } } },
        plugins: { legend: { position: "bottom" }, tooltip: { enabled: true } },
      },
    });
    return () => chart.current.destroy();
  }, []);
  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = labels;
    c.data.datasets = datasets();
    c.update("none");
  }, [JSON.stringify(labels), JSON.stringify(series)]);
  return html`<div class="chart"><canvas ref=${canvas} role="img" aria-label=${label || "chart"}></canvas></div>`;
}
