// Heatmap: a table whose cells are shaded by their value (0 … max), the figure printed in
// each cell, so it reads (and tests) as text too.
import { h } from "preact";
import htm from "htm";

const html = htm.bind(h);

// rows: [{ key, label, cells: [{ value, text, title }] }]; columns: header labels.
export function Heatmap({ id, columns, rows, max, corner }) {
  const top = max > 0 ? max : Math.max(0, ...rows.flatMap((r) => r.cells.map((c) => c.value || 0)));
  const shade = (v) => {
    if (!(v > 0) || !(top > 0)) return {};
    const a = Math.min(1, v / top);
    return { background: `rgba(37, 99, 235, ${(0.08 + 0.82 * a).toFixed(3)})`, color: a > 0.55 ? "#fff" : "inherit" };
  };
  return html`<div class="heatmap-wrap"><table class="heatmap" id=${id}>
    <thead><tr><th>${corner || ""}</th>${columns.map((c) => html`<th class="num">${c}</th>`)}</tr></thead>
    <tbody>${rows.map(
      (r) => html`<tr data-key=${r.key}><th>${r.label}</th>${r.cells.map(
        (c, i) => html`<td class="num cell" data-col=${i} data-value=${c.value} title=${c.title || ""} style=${shade(c.value)}>${c.text}</td>`
      )}</tr>`
    )}</tbody>
  </table></div>`;
}
