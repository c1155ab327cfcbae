// SendersPage: every sender with its limits and its governor's live state (GET
// /v1/senders/{id}/governor), refreshed every few seconds: the rate it gets now against
// its configured rate, its per-minute or per-hour cap used, its daily tier used, holds
// and 130429 slowdowns. Roles with senders:write may hold and resume a sender.
import "./panels.css";
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { api, duration, fmt, when } from "./api.js";

const html = htm.bind(h);

export const governorRefreshMs = 3000;

function Meter({ used, limit, id }) {
  if (!limit) return html`<span class="muted">${used ? fmt.format(used) : "–"}</span>`;
  const share = Math.min(1, used / limit);
  const cls = share >= 1 ? "meter full" : share >= 0.8 ? "meter warn" : "meter";
  return html`<div data-meter=${id} data-used=${used} data-limit=${limit}>
    <div class=${cls}><span style=${{ width: (100 * share).toFixed(1) + "%" }}></span></div>
    <span class="muted">${fmt.format(used)} / ${fmt.format(limit)}</span>
  </div>`;
}

function SenderRow({ s, st, now, canWrite, onChange }) {
  const g = (st && st.governor) || {};
  const held = g.held_until && new Date(g.held_until) > now;
  const busyFor = g.next_free ? (new Date(g.next_free) - now) / 1000 : 0;
  const rate = s.rate * (g.factor === undefined ? 1 : g.factor);
  let current = "–";
  if (s.per_minute) current = fmt.format(Math.round(((g.last_minute || 0) / 60) * 10) / 10) + "/s (last minute)";
  else if (s.per_hour) current = fmt.format(g.last_hour || 0) + " in the last hour";
  else if (st) current = busyFor > 0.5 ? "at its limit" : "below its limit";
  const act = async (op) => {
    try {
      onChange(s.id, await api("POST", "/v1/senders/" + encodeURIComponent(s.id) + "/" + op, op === "hold" ? { for_seconds: 3600 } : undefined));
    } catch (err) {
      onChange(s.id, null, err);
    }
  };
  return html`<tr data-sender=${s.id} data-factor=${g.factor} data-tier-used=${st ? st.tier_used : ""}>
    <td><strong>${s.id}</strong><div class="muted">${s.name || ""} · ${s.channel}</div></td>
    <td class="num">${fmt.format(s.rate)}/s</td>
    <td class="num" data-effective-rate=${rate}>${fmt.format(Math.round(rate * 100) / 100)}/s
      ${g.factor !== undefined && g.factor < 1 && html`<div><span class="badge warn">slowed ×${g.factor.toFixed(2)}</span></div>`}</td>
    <td>${current}</td>
    <td>${s.per_minute ? html`<${Meter} id="minute" used=${g.last_minute || 0} limit=${s.per_minute} />` : s.per_hour ? html`<${Meter} id="hour" used=${g.last_hour || 0} limit=${s.per_hour} />` : html`<span class="muted">none</span>`}</td>
    <td>${s.tier ? html`<${Meter} id="tier" used=${st ? st.tier_used : 0} limit=${s.tier} />` : html`<span class="muted">unlimited${st && st.tier_used ? " · " + fmt.format(st.tier_used) + " today" : ""}</span>`}</td>
    <td>${held
      ? html`<span class="badge bad" data-held-until=${g.held_until}>held ${duration((new Date(g.held_until) - now) / 1000)}</span>`
      : g.slowed_at
      ? html`<span class="badge warn" title=${when(g.slowed_at)}>recovering from 130429</span>`
      : st
      ? html`<span class="badge good">sending</span>`
      : html`<span class="muted">…</span>`}
      ${busyFor > 1 && html`<div class="muted">next slot in ${duration(busyFor)}</div>`}</td>
    ${canWrite &&
    html`<td>${held
      ? html`<button data-action="resume" onClick=${() => act("resume")}>Resume</button>`
      : html`<button data-action="hold" onClick=${() => act("hold")}>Hold 1 h</button>`}</td>`}
  </tr>`;
}

export function SendersPage({ canWrite }) {
  const [senders, setSenders] = useState(null);
  const [states, setStates] = useState({});
  const [error, setError] = useState(null);
  const [now, setNow] = useState(new Date());
  const [updated, setUpdated] = useState(null);
  useEffect(() => {
    api("GET", "/v1/senders?limit=500").then((p) => setSenders(p.items), setError);
  }, []);
  useEffect(() => {
    if (!senders) return;
    let stop = false;
    const poll = async () => {
      const got = await Promise.all(
        senders.slice(0, 100).map((s) =>
          api("GET", "/v1/senders/" + encodeURIComponent(s.id) + "/governor").then(
            (st) => [s.id, st],
            () => [s.id, null]
          )
        )
      );
      if (stop) return;
      setStates(Object.fromEntries(got.filter(([, st]) => st)));
      setNow(new Date());
      setUpdated(new Date());
    };
    poll();
    const t = setInterval(poll, governorRefreshMs);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [senders]);
  const onChange = (id, st, err) => {
    if (err) return setError(err);
    setError(null);
    setStates((old) => ({ ...old, [id]: st }));
  };
  return html`<div>
    <div class="row"><h1>Senders</h1>
      <span class="muted" id="governor-updated" data-updated=${updated ? updated.toISOString() : ""}>${updated ? "live · updated " + updated.toLocaleTimeString() + ", every " + governorRefreshMs / 1000 + " s" : "loading the governors…"}</span></div>
    ${error && html`<div class="error" role="alert">${error.message}</div>`}
    ${senders && senders.length === 0 && html`<p class="muted">No senders (herald senders add).</p>`}
    ${senders &&
    senders.length > 0 &&
    html`<table id="senders">
      <thead><tr><th>Sender</th><th class="num">Rate</th><th class="num">Gets now</th><th>Current</th><th>Cap used</th><th>Daily tier</th><th>State</th>${canWrite && html`<th></th>`}</tr></thead>
      <tbody>${senders.map((s) => html`<${SenderRow} key=${s.id} s=${s} st=${states[s.id]} now=${now} canWrite=${canWrite} onChange=${onChange} />`)}</tbody>
    </table>`}
  </div>`;
}
