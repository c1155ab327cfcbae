// Experiments: a campaign's A/B variants with significance (GET /v1/reports/ab) and its
// holdout lift (GET /v1/reports/lift). Each loads when its section is opened, not with
// the page: most campaigns have neither variants nor a holdout.
import "./panels.css";
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { api, fmt } from "./api.js";

const html = htm.bind(h);

const pct = (x) => (100 * x).toFixed(2) + "%";
const pp = (x) => (x >= 0 ? "+" : "") + (100 * x).toFixed(2) + " pt";

// useOnOpen loads path the first time the <details> opens, and again on refresh.
function useOnOpen(path, refresh) {
  const [open, setOpen] = useState(false);
  const [rep, setRep] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!open) return;
    let stale = false;
    setError(null);
    api("GET", path).then(
      (r) => !stale && setRep(r),
      (err) => !stale && setError(err)
    );
    return () => (stale = true);
  }, [open, path, refresh]);
  return [rep, error, (e) => setOpen(e.currentTarget.open)];
}

function Significance({ p, isControl }) {
  if (isControl) return html`<span class="badge">control</span>`;
  if (p < 0.01) return html`<span class="badge good">significant (p < 0.01)</span>`;
  if (p < 0.05) return html`<span class="badge good">significant (p < 0.05)</span>`;
  return html`<span class="badge">not significant</span>`;
}

export function ABCard({ id, refresh }) {
  const [step, setStep] = useState("read");
  const [rep, error, onToggle] = useOnOpen("/v1/reports/ab?campaign=" + encodeURIComponent(id) + "&step=" + step, refresh);
  return html`<details class="card" id="ab" onToggle=${onToggle}>
    <summary>A/B variants</summary>
    <div class="row" style="margin-top:8px">
      <label for="ab-step" style="margin:0">Compared at</label>
      <select id="ab-step" value=${step} onChange=${(e) => setStep(e.target.value)}>
        ${["delivered", "read", "clicked", "replied", "converted"].map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
    </div>
    ${error && html`<div class="error" role="alert">${error.message}</div>`}
    ${!rep && !error && html`<p class="muted">Loading…</p>`}
    ${rep && rep.variants.length === 0 && html`<p class="muted">No variant was sent yet.</p>`}
    ${rep &&
    rep.variants.length > 0 &&
    html`<table id="ab-variants" data-step=${rep.step}>
      <thead><tr><th>Variant</th><th class="num">Sent</th><th class="num">${rep.step}</th><th class="num">Rate</th>
        <th class="num">vs ${rep.control || "control"}</th><th class="num">z</th><th class="num">p</th><th></th></tr></thead>
      <tbody>${rep.variants.map((v) => {
        const ctl = v.variant === rep.control;
        return html`<tr data-variant=${v.variant}>
          <td>${v.variant || "–"}</td><td class="num" data-sent=${v.sent}>${fmt.format(v.sent)}</td>
          <td class="num" data-converted=${v.converted}>${fmt.format(v.converted)}</td><td class="num">${pct(v.rate)}</td>
          <td class="num">${ctl ? "" : pp(v.lift)}</td><td class="num">${ctl ? "" : v.z.toFixed(2)}</td>
          <td class="num">${ctl ? "" : v.p_value.toFixed(4)}</td><td><${Significance} p=${v.p_value} isControl=${ctl} /></td>
        </tr>`;
      })}</tbody>
    </table>
    <p class="muted">Two-sided two-proportion z-test against the control, pooled proportion.</p>`}
  </details>`;
}

function money(rev) {
  if (!rev || rev.length === 0) return "–";
  return rev.map((a) => `${fmt.format(Math.round(a.value * 100) / 100)} ${a.currency} (${fmt.format(a.orders)} orders)`).join(", ");
}

export function LiftCard({ id, refresh }) {
  const [rep, error, onToggle] = useOnOpen("/v1/reports/lift?campaign=" + encodeURIComponent(id), refresh);
  return html`<details class="card" id="lift" onToggle=${onToggle}>
    <summary>Holdout lift</summary>
    ${error && html`<div class="error" role="alert">${error.message}</div>`}
    ${!rep && !error && html`<p class="muted">Loading…</p>`}
    ${rep &&
    html`${rep.holdout.contacts === 0 && html`<p class="muted">This campaign has no holdout group.</p>`}
      <table id="lift-groups">
        <thead><tr><th>Group</th><th class="num">Contacts</th><th class="num">Converted</th><th class="num">Rate</th><th>Revenue</th></tr></thead>
        <tbody>${[
          ["treated", rep.treated],
          ["holdout", rep.holdout],
        ].map(
          ([name, g]) => html`<tr data-group=${name}><td>${name}</td><td class="num" data-contacts=${g.contacts}>${fmt.format(g.contacts)}</td>
            <td class="num">${fmt.format(g.converted)}</td><td class="num">${pct(g.rate)}</td><td>${money(g.revenue)}</td></tr>`
        )}</tbody>
      </table>
      <p id="lift-result" data-lift=${rep.lift}>
        Lift <strong>${pp(rep.lift)}</strong>${rep.relative_lift ? html` (${(100 * rep.relative_lift).toFixed(1)}% relative)` : ""}
        · z ${rep.z.toFixed(2)} · p ${rep.p_value.toFixed(4)} ·
        <${Significance} p=${rep.holdout.contacts ? rep.p_value : 1} isControl=${false} />
        <span class="muted"> · conversions within ${Math.round(rep.window_ms / 3600000)} h of the send or hold-out</span>
      </p>`}
  </details>`;
}
