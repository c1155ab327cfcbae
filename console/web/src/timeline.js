// TimelineCard: a campaign's sends and statuses over time (GET /v1/campaigns/{id}/timeline),
// a line per kind and the totals as text.
import "./panels.css";
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { api, fmt } from "./api.js";
import { LineChart } from "./linechart.js";

const html = htm.bind(h);

const lines = [
  ["sent", "#16a34a"],
  ["delivered", "#2563eb"],
  ["read", "#7c3aed"],
  ["failed", "#dc2626"],
];
const steps = ["1m", "5m", "15m", "1h", "6h", "1d"];

function label(t, stepSeconds) {
  const s = new Date(t).toISOString();
  return stepSeconds >= 86400 ? s.slice(0, 10) : s.slice(5, 16).replace("T", " ");
}

export function TimelineCard({ id, refresh }) {
  const [step, setStep] = useState("1m");
  const [rep, setRep] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let stale = false;
    setError(null);
    api("GET", "/v1/campaigns/" + encodeURIComponent(id) + "/timeline?step=" + step).then(
      (r) => !stale && setRep(r),
      (err) => {
        if (stale) return;
        // A long campaign at a short step: take the next longer step.
        const next = steps[steps.indexOf(step) + 1];
        if (err.status === 400 && next) setStep(next);
        else setError(err);
      }
    );
    return () => (stale = true);
  }, [id, step, refresh]);
  const totals = {};
  if (rep) for (const [k] of lines) totals[k] = rep.points.reduce((n, p) => n + p[k], 0);
  return html`<div class="card" id="timeline" data-step=${rep ? rep.step_seconds : ""}>
    <div class="row">
      <h2 style="margin:0">Over time</h2>
      <select id="timeline-step" value=${step} onChange=${(e) => setStep(e.target.value)}>
        ${steps.map((s) => html`<option value=${s}>per ${s}</option>`)}
      </select>
      <span class="muted">distinct contacts per step</span>
    </div>
    ${error && html`<div class="error" role="alert">${error.message}</div>`}
    ${!rep && !error && html`<p class="muted">Loading…</p>`}
    ${rep && rep.points.length === 0 && html`<p class="muted">No sends yet.</p>`}
    ${rep &&
    rep.points.length > 0 &&
    html`<${LineChart}
        label="sends and statuses over time"
        labels=${rep.points.map((p) => label(p.t, rep.step_seconds))}
        series=${lines.map(([k, color]) => ({ label: k, color, values: rep.points.map((p) => p[k]) }))}
      />
      <p class="row" id="timeline-totals">
        ${lines.map(([k]) => html`<span data-kind=${k} data-total=${totals[k]}>${k} <strong>${fmt.format(totals[k])}</strong></span>`)}
        <span class="muted">over ${fmt.format(rep.points.length)} steps</span>
      </p>`}
  </div>`;
}
