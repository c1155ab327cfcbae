// AuditPage (auditor role): the API's audit of calls (GET /v1/audit/api), a campaign's
// consent proof (GET /v1/audit/campaigns/{id}) and a contact's ledger with its hash chain
// verified (GET /v1/audit/contacts/{id}). Routed as #/audit, #/audit/campaign/<id> and
// #/audit/contact/<id>.
import "./panels.css";
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { api, fmt, when } from "./api.js";

const html = htm.bind(h);

function useGet(path) {
  const [rep, setRep] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setRep(null);
    setError(null);
    if (!path) return;
    let stale = false;
    api("GET", path).then(
      (r) => !stale && setRep(r),
      (err) => !stale && setError(err)
    );
    return () => (stale = true);
  }, [path]);
  return [rep, error];
}

const err = (e) => e && html`<div class="error" role="alert">${e.message}</div>`;
const short = (s) => (s ? s.slice(0, 12) + "…" : "–");

function APICalls() {
  const [p, error] = useGet("/v1/audit/api?limit=100");
  return html`<div>
    ${err(error)}
    ${p &&
    html`<table id="audit">
      <thead><tr><th>time</th><th>key</th><th>route</th><th>resource</th><th>status</th><th>request</th></tr></thead>
      <tbody>${p.items.map(
        (c) => html`<tr><td>${when(c.ts)}</td><td>${c.key_name + " (" + c.role + ")"}</td><td>${c.route}</td><td>${c.resource_id || ""}</td>
          <td>${c.status}</td><td>${c.request_id}</td></tr>`
      )}</tbody>
    </table>`}
  </div>`;
}

// Picker: an id typed or chosen, which moves the page to #/audit/<kind>/<id>.
function Picker({ kind, id, placeholder, options }) {
  const [v, setV] = useState(id || "");
  const go = (e) => {
    e.preventDefault();
    if (v.trim()) location.hash = "#/audit/" + kind + "/" + encodeURIComponent(v.trim());
  };
  return html`<form class="row" onSubmit=${go}>
    <input id=${"audit-" + kind + "-id"} list=${options ? "audit-" + kind + "-options" : undefined} placeholder=${placeholder}
      value=${v} onInput=${(e) => setV(e.target.value)} style="max-width:320px" />
    ${options && html`<datalist id=${"audit-" + kind + "-options"}>${options.map((o) => html`<option value=${o.id}>${o.name}</option>`)}</datalist>`}
    <button type="submit" id=${"audit-" + kind + "-go"}>Verify</button>
  </form>`;
}

function CampaignProof({ id }) {
  const [list] = useGet("/v1/campaigns?limit=50");
  const [rep, error] = useGet(id ? "/v1/audit/campaigns/" + encodeURIComponent(id) : "");
  const v = rep ? rep.violations : [];
  return html`<div>
    <${Picker} kind="campaign" id=${id} placeholder="campaign id" options=${list ? list.items : null} />
    ${err(error)}
    ${id && !rep && !error && html`<p class="muted">Checking every message of the campaign against the ledger…</p>`}
    ${rep &&
    html`<div class="card" id="campaign-proof" data-campaign=${rep.campaign_id} data-sent=${rep.sent} data-violations=${v.length}>
      <h2 style="margin-top:0">Consent proof of ${rep.campaign_id}</h2>
      <p>${v.length === 0
        ? html`<span class="badge good">every message had valid consent at send time</span>`
        : html`<span class="badge bad">${fmt.format(v.length)} violation${v.length > 1 ? "s" : ""}</span>`}</p>
      <dl class="kv">
        <dt>purpose</dt><dd>${rep.purpose}</dd>
        <dt>messages sent (checked)</dt><dd>${fmt.format(rep.sent)}</dd>
        <dt>of which free-form (checked against the 24 h window)</dt><dd>${fmt.format(rep.free_form)}</dd>
      </dl>
      ${v.length > 0 &&
      html`<table id="violations">
        <thead><tr><th>rule</th><th>contact</th><th>sender</th><th>channel</th><th>sent</th><th>consent record</th><th>detail</th></tr></thead>
        <tbody>${v.map(
          (x) => html`<tr><td>${x.rule}</td><td><a href=${"#/audit/contact/" + x.contact_id}>${x.contact_id}</a></td><td>${x.sender_id}</td>
            <td>${x.channel}</td><td>${when(x.sent_at)}</td><td><code class="hash">${x.consent_ref || "–"}</code></td><td>${x.detail}</td></tr>`
        )}</tbody>
      </table>`}
    </div>`}
  </div>`;
}

function chainBadge(rep) {
  if (rep.chain_broken < 0) return html`<span class="badge good" id="chain-status" data-ok="true">hash chain intact</span>`;
  return html`<span class="badge bad" id="chain-status" data-ok="false">chain broken at record ${rep.chain_broken + 1}</span>`;
}

function ledgerBadge(l) {
  // ok and not_checkpointed are intact; every other status is a failure.
  const cls = l.status === "ok" ? "good" : l.status === "not_checkpointed" ? "warn" : "bad";
  return html`<span class=${"badge " + cls} id="ledger-status"
    data-status=${l.status}>${l.status}</span>`;
}

function ContactLedger({ id }) {
  const [rep, error] = useGet(id ? "/v1/audit/contacts/" + encodeURIComponent(id) : "");
  const supp = rep ? Object.entries(rep.suppressions || {}) : [];
  return html`<div>
    <${Picker} kind="contact" id=${id} placeholder="contact id" />
    ${err(error)}
    ${id && !rep && !error && html`<p class="muted">Verifying the contact's ledger…</p>`}
    ${rep &&
    html`<div class="card" id="contact-ledger" data-contact=${rep.contact_id} data-records=${rep.consent.length}>
        <h2 style="margin-top:0">Contact ${rep.contact_id}</h2>
        <p class="row">${chainBadge(rep)} <span>against the signed checkpoints: ${ledgerBadge(rep.ledger)}</span>
          <span class="muted">${rep.ledger.signatures_checked ? "signatures verified" : "no signing key configured: checkpoints taken as stored"}</span></p>
        ${rep.ledger.detail && html`<p class="muted">${rep.ledger.detail}</p>`}
        <h2>Consent ledger</h2>
        ${rep.consent.length === 0
          ? html`<p class="muted">No consent records.</p>`
          : html`<table id="consent-records">
              <thead><tr><th>#</th><th>time</th><th>channel</th><th>purpose</th><th>action</th><th>source</th><th>proof</th><th>hash</th><th>previous</th></tr></thead>
              <tbody>${rep.consent.map(
                (r, i) => html`<tr data-id=${r.id} class=${rep.chain_broken === i ? "anomaly" : ""}><td>${i + 1}</td><td>${when(r.ts)}</td><td>${r.channel}</td>
                  <td>${r.purpose}</td><td>${r.action}</td><td>${r.source}</td><td>${r.proof || r.wording || ""}</td>
                  <td><code class="hash" title=${r.hash}>${short(r.hash)}</code></td><td><code class="hash" title=${r.prev_hash}>${short(r.prev_hash)}</code></td></tr>`
              )}</tbody>
            </table>`}
        ${supp.length > 0 &&
        html`<h2>Suppressed</h2><dl class="kv">${supp.map(([ch, s]) => html`<dt>${ch}</dt><dd>${JSON.stringify(s)}</dd>`)}</dl>`}
      </div>
      <div class="card">
        <h2 style="margin-top:0">Messages and the consent each relied on</h2>
        ${rep.messages.length === 0
          ? html`<p class="muted">No messages sent.</p>`
          : html`<table id="contact-messages">
              <thead><tr><th>sent</th><th>campaign</th><th>channel</th><th>sender</th><th>consent</th><th>given</th></tr></thead>
              <tbody>${rep.messages.map(
                (m) => html`<tr><td>${when(m.sent_at)}</td><td>${m.campaign_id}</td><td>${m.channel}</td><td>${m.sender_id}</td>
                  <td>${m.consent_action ? m.consent_action + " · " + m.consent_purpose : html`<span class="badge bad">not in the ledger</span>`}</td>
                  <td>${when(m.consent_at)}</td></tr>`
              )}</tbody>
            </table>`}
        <h2>Campaigns</h2>
        ${rep.campaigns.length === 0
          ? html`<p class="muted">No campaign reached this contact.</p>`
          : html`<table id="contact-campaigns">
              <thead><tr><th>campaign</th><th>outcome</th><th>when</th><th>reason / code</th></tr></thead>
              <tbody>${rep.campaigns.map(
                (c) => html`<tr><td>${c.campaign_id}</td><td>${c.outcome}</td><td>${when(c.at)}</td><td>${c.reason || c.error_code || ""}</td></tr>`
              )}</tbody>
            </table>`}
      </div>`}
  </div>`;
}

export function AuditPage({ parts }) {
  const tab = parts[1] || "api";
  const id = parts[2] ? decodeURIComponent(parts[2]) : "";
  const tabs = [
    ["api", "#/audit", "API calls"],
    ["campaign", "#/audit/campaign", "Campaign consent proof"],
    ["contact", "#/audit/contact", "Contact ledger"],
  ];
  return html`<div>
    <h1>Audit</h1>
    <nav class="tabs">${tabs.map(([k, href, label]) => html`<a href=${href} id=${"audit-tab-" + k} class=${tab === k ? "on" : ""}>${label}</a>`)}</nav>
    ${tab === "campaign" ? html`<${CampaignProof} key=${id} id=${id} />` : tab === "contact" ? html`<${ContactLedger} key=${id} id=${id} />` : html`<${APICalls} />`}
  </div>`;
}
