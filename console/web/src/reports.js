// ReportsPage: cohort retention by first-contact week (GET /v1/reports/retention), the
// send-hour heatmap in recipients' local time (GET /v1/reports/heatmap) and daily volume
// anomalies (GET /v1/reports/anomalies).
import "./panels.css";
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { api, fmt } from "./api.js";
import { Heatmap } from "./heatmap.js";

const html = htm.bind(h);

function useReport(path) {
  const [rep, setRep] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let stale = false;
    setRep(null);
    setError(null);
    api("GET", path).then(
      (r) => !stale && setRep(r),
      (err) => !stale && setError(err)
    );
    return () => (stale = true);
  }, [path]);
  return [rep, error];
}

function Status({ rep, error, empty }) {
  if (error) return html`<div class="error" role="alert">${error.message}</div>`;
  if (!rep) return html`<p class="muted">Loading…</p>`;
  if (empty) return html`<p class="muted">${empty}</p>`;
  return null;
}

function Retention() {
  const [weeks, setWeeks] = useState(8);
  const [rep, error] = useReport("/v1/reports/retention?weeks=" + weeks);
  const cohorts = rep ? rep.cohorts : [];
  return html`<div class="card" id="retention-card">
    <div class="row">
      <h2 style="margin:0">Cohort retention</h2>
      <select id="retention-weeks" value=${weeks} onChange=${(e) => setWeeks(Number(e.target.value))}>
        ${[4, 8, 12].map((w) => html`<option value=${w}>${w} weeks</option>`)}
      </select>
      <span class="muted">contacts first sent to in a week (UTC, Monday) who read, clicked, replied or converted in each week since</span>
    </div>
    <${Status} rep=${rep} error=${error} empty=${rep && cohorts.length === 0 && "No cohorts in the last 12 weeks."} />
    ${cohorts.length > 0 &&
    html`<${Heatmap}
      id="retention"
      corner="cohort"
      max=${1}
      columns=${["contacts", ...Array.from({ length: rep.weeks }, (_, k) => "week " + k)]}
      rows=${cohorts.map((c) => ({
        key: c.week,
        label: c.week,
        cells: [
          { value: 0, text: fmt.format(c.contacts), title: "cohort size" },
          ...c.retained.map((r, k) => ({ value: r, text: (100 * r).toFixed(1) + "%", title: `${fmt.format(c.active[k])} of ${fmt.format(c.contacts)}` })),
        ],
      }))}
    />`}
  </div>`;
}

const weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

function SendHours() {
  const [campaign, setCampaign] = useState("");
  const [shown, setShown] = useState("sent");
  const [rep, error] = useReport("/v1/reports/heatmap" + (campaign ? "?campaign=" + encodeURIComponent(campaign) : ""));
  const cells = rep ? rep.cells : [];
  const at = {};
  for (const c of cells) at[c.weekday + c.hour] = c;
  const total = cells.reduce((n, c) => n + c.sent, 0);
  return html`<div class="card" id="send-hours-card">
    <div class="row">
      <h2 style="margin:0">Send hours</h2>
      <select id="send-hours-shown" value=${shown} onChange=${(e) => setShown(e.target.value)}>
        <option value="sent">messages sent</option>
        <option value="rate">read rate</option>
      </select>
      <input id="send-hours-campaign" placeholder="every campaign (or a campaign id)" style="max-width:260px"
        onChange=${(e) => setCampaign(e.target.value.trim())} />
      <span class="muted">recipients' local time</span>
    </div>
    <${Status} rep=${rep} error=${error} empty=${rep && cells.length === 0 && "No messages sent yet."} />
    ${cells.length > 0 &&
    html`<${Heatmap}
        id="send-hours"
        corner="local"
        max=${shown === "rate" ? 1 : 0}
        columns=${Array.from({ length: 24 }, (_, hr) => String(hr).padStart(2, "0"))}
        rows=${weekdays.map((d) => ({
          key: d,
          label: d,
          cells: Array.from({ length: 24 }, (_, hr) => {
            const c = at[d + hr];
            if (!c) return { value: 0, text: "", title: "" };
            const title = `${d} ${hr}:00 · ${fmt.format(c.sent)} sent, ${fmt.format(c.read)} read`;
            return shown === "rate" ? { value: c.rate, text: Math.round(100 * c.rate) + "%", title } : { value: c.sent, text: fmt.format(c.sent), title };
          }),
        }))}
      />
      <p class="muted" id="send-hours-total" data-total=${total}>${fmt.format(total)} messages${rep.utc_messages ? ` · ${fmt.format(rep.utc_messages)} to contacts of unknown time zone, placed in UTC` : ""}</p>`}
  </div>`;
}

function Anomalies() {
  const [rep, error] = useReport("/v1/reports/anomalies");
  const days = rep ? rep.days : [];
  const flagged = days.filter((d) => d.anomaly);
  return html`<div class="card" id="anomalies-card">
    <h2 style="margin-top:0">Anomalies</h2>
    <${Status} rep=${rep} error=${error} empty=${rep && days.length === 0 && "No days to judge yet."} />
    ${rep &&
    days.length > 0 &&
    html`<p id="anomaly-count" data-count=${flagged.length}>${flagged.length === 0
        ? html`<span class="badge good">no anomaly</span>`
        : html`<span class="badge bad">${flagged.length} anomalous day${flagged.length > 1 ? "s" : ""}</span>`}
        <span class="muted"> · a day's volume outside mean ± 2σ of the ${rep.history} days before it</span></p>
      <table id="anomalies">
        <thead><tr><th>Day</th><th>Kind</th><th class="num">Count</th><th class="num">Mean</th><th class="num">σ</th><th></th></tr></thead>
        <tbody>${days.map(
          (d) => html`<tr class=${d.anomaly ? "anomaly" : ""} data-day=${d.day} data-kind=${d.kind} data-count=${d.count}>
            <td>${d.day}</td><td>${d.kind}</td><td class="num">${fmt.format(d.count)}</td><td class="num">${d.mean.toFixed(1)}</td>
            <td class="num">${d.sigma.toFixed(1)}</td><td>${d.anomaly ? html`<span class="badge bad">anomaly</span>` : ""}</td></tr>`
        )}</tbody>
      </table>`}
  </div>`;
}

export function ReportsPage() {
  return html`<div>
    <h1>Reports</h1>
    <${Retention} />
    <${SendHours} />
    <${Anomalies} />
  </div>`;
}
