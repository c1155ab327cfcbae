// Channels: a campaign's funnel per channel and its fallbacks (GET /v1/reports/channels),
// shown on the campaign page only when the campaign used more than one channel.
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { api, fmt } from "./api.js";
import { BarChart } from "./charts.js";

const html = htm.bind(h);
const channelColors = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

function ms(n) {
  if (n < 1000) return n + " ms";
  if (n < 120000) return (n / 1000).toFixed(1) + " s";
  return (n / 60000).toFixed(1) + " min";
}

function reachText(t) {
  return t.contacts === 0 ? "–" : `p50 ${ms(t.p50_ms)} · p90 ${ms(t.p90_ms)} · p99 ${ms(t.p99_ms)}`;
}

export function ChannelsCard({ id, refresh }) {
  const [rep, setRep] = useState(null);
  useEffect(() => {
    // The section is an addition: a server without the report shows the page without it.
    api("GET", "/v1/reports/channels?campaign=" + encodeURIComponent(id)).then(setRep, () => setRep(null));
  }, [id, refresh]);
  if (!rep || (rep.channels.length < 2 && rep.fell_back === 0)) return null;
  const steps = rep.channels[0].steps.map((s) => s.name);
  return html`<div class="card" id="channels">
    <h2 style="margin-top:0">Channels</h2>
    <dl class="kv" id="channels-summary">
      <dt>reached</dt><dd data-reached=${rep.reached}>${fmt.format(rep.reached)} of ${fmt.format(rep.contacts)}</dd>
      <dt>fell back</dt><dd data-fell-back=${rep.fell_back}>${fmt.format(rep.fell_back)}</dd>
      <dt>reached first by a fallback</dt><dd data-reached-by-fallback=${rep.reached_by_fallback}>${fmt.format(rep.reached_by_fallback)}</dd>
      <dt>reached only by a fallback</dt><dd data-reached-only-by-fallback=${rep.reached_only_by_fallback}>${fmt.format(rep.reached_only_by_fallback)}</dd>
      <dt>late receipts on the first channel</dt><dd>${fmt.format(rep.late_first_channel)}</dd>
      <dt>time to reach</dt><dd>${reachText(rep.time_to_reach)}</dd>
      <dt>through a fallback</dt><dd>${reachText(rep.time_to_reach_by_fallback)}</dd>
    </dl>
    <div class="grid2">
      ${rep.channels.map(
        (c, i) => html`<div data-channel-chart=${c.channel}>
          <h2>${c.channel}</h2>
          <${BarChart} label=${c.channel} color=${channelColors[i % channelColors.length]}
            labels=${c.steps.map((s) => s.name)} values=${c.steps.map((s) => s.contacts)} />
        </div>`
      )}
    </div>
    <table id="channels-figures">
      <thead><tr><th>Channel</th>${steps.map((s) => html`<th class="num">${s}</th>`)}<th class="num">failed</th>
        <th class="num">by fallback: sent</th><th class="num">delivered</th><th class="num">fell back from</th></tr></thead>
      <tbody>${rep.channels.map(
        (c) => html`<tr data-channel=${c.channel}><td>${c.channel}</td>
          ${c.steps.map((s) => html`<td class="num" data-step=${s.name} data-contacts=${s.contacts}>${fmt.format(s.contacts)}</td>`)}
          <td class="num">${fmt.format(c.failed)}</td><td class="num" data-fallback-sent=${c.fallback_sent}>${fmt.format(c.fallback_sent)}</td>
          <td class="num" data-fallback-delivered=${c.fallback_delivered}>${fmt.format(c.fallback_delivered)}</td>
          <td class="num" data-fallback-out=${c.fallback_out}>${fmt.format(c.fallback_out)}</td></tr>`
      )}</tbody>
    </table>
    ${rep.fallbacks.length > 0 &&
    html`<div class="grid2">
      <div>
        <h2>Fallbacks by reason</h2>
        <${BarChart} label="contacts" color="#d97706" labels=${rep.fallback_reasons.map((r) => r.reason)}
          values=${rep.fallback_reasons.map((r) => r.contacts)} />
      </div>
      <div>
        <h2>From → to</h2>
        <table id="channels-fallbacks"><tbody>${rep.fallbacks.map(
          (f) => html`<tr data-reason=${f.reason} data-from=${f.from_channel} data-to=${f.to_channel}>
            <td>${f.from_channel} → ${f.to_channel}</td><td>${f.reason}</td><td class="num" data-contacts=${f.contacts}>${fmt.format(f.contacts)}</td></tr>`
        )}</tbody></table>
      </div>
    </div>`}
    ${(rep.sent_twice_without_fallback > 0 || rep.sent_on_more_than_two_channels > 0) &&
    html`<p class="error" id="channels-invariant">${fmt.format(rep.sent_twice_without_fallback)} contacts sent on two channels without a fallback,
      ${fmt.format(rep.sent_on_more_than_two_channels)} on more than two: both must be 0.</p>`}
  </div>`;
}
