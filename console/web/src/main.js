// Herald's web console: a single page on the /v1 API (see api.js), routed by the URL's
// hash: #/campaigns, #/campaigns/<id>, #/new, #/templates, #/senders, #/reports, #/audit[/…].
import "./style.css";
import { h, render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";
import { api, APIError, duration, fmt, follow, setCSRF, when } from "./api.js";
import { BarChart } from "./charts.js";
import { ChannelsCard } from "./channels.js";
import { TimelineCard } from "./timeline.js";
import { ABCard, LiftCard } from "./experiments.js";
import { SendersPage } from "./governor.js";
import { ReportsPage } from "./reports.js";
import { AuditPage } from "./audit.js";

const html = htm.bind(h);

function useHash() {
  const [hash, setHash] = useState(location.hash || "#/campaigns");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/campaigns");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">${error.message || String(error)}</div>`;
}

// ---- login ----

function Login({ onSession }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSession(await api("POST", "/v1/session", { api_key: key.trim() }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="card login">
    <h1>Herald console</h1>
    <p class="muted">Log in with an API key (<code>herald keys create</code>, or the one <code>herald dev</code> prints). The key is exchanged for a session cookie and not kept in the page.</p>
    <form onSubmit=${submit}>
      <label for="api-key">API key</label>
      <input id="api-key" name="api_key" type="password" autocomplete="off" value=${key} onInput=${(e) => setKey(e.target.value)} />
      <${ErrorBox} error=${error} />
      <p><button class="primary" id="login" type="submit" disabled=${busy || !key}>Log in</button></p>
    </form>
  </div>`;
}

// ---- progress ----

// useProgress keeps a campaign's status fresh from its progress stream, with the
// send rate (an average over the last updates) and the time left at that rate.
function useProgress(initial, live) {
  const [st, setSt] = useState(initial);
  const [rate, setRate] = useState(0);
  const last = useRef(null);
  useEffect(() => setSt(initial), [initial && initial.id]);
  useEffect(() => {
    if (!initial || !live) return;
    return follow(initial.id, (s) => {
      const now = performance.now();
      const p = last.current;
      if (p && now > p.t && s.done >= p.done) {
        const r = ((s.done - p.done) * 1000) / (now - p.t);
        setRate((old) => (old ? old * 0.6 + r * 0.4 : r));
      }
      last.current = { t: now, done: s.done };
      setSt(s);
    });
  }, [initial && initial.id, live]);
  return [st, rate, setSt];
}

function isLive(st) {
  return st && (st.state === "running" || st.state === "paused" || st.state === "scheduled");
}

function ProgressBar({ st, rate: liveRate }) {
  let rate = liveRate;
  const total = Math.max(st.audience || 0, 1);
  const pct = (n) => ((100 * n) / total).toFixed(2) + "%";
  const done = Math.min(100, Math.floor((100 * (st.done || 0)) / total));
  const left = Math.max((st.audience || 0) - (st.done || 0), 0);
  if (!(rate > 0) && st.launched_at && st.completed_at) {
    // A finished campaign: its average rate.
    const secs = (new Date(st.completed_at) - new Date(st.launched_at)) / 1000;
    if (secs > 0) rate = (st.done || 0) / secs;
  }
  const eta = st.state === "completed" ? "done" : rate > 0 ? duration(left / rate) : "–";
  return html`<div class="progress" data-campaign=${st.id} data-done=${st.done} data-audience=${st.audience} data-percent=${done} data-state=${st.state}>
    <div class="bar" title=${`${fmt.format(st.done)} of ${fmt.format(st.audience)}`}>
      <span class="sent" style=${{ width: pct(st.sent || 0) }}></span>
      <span class="skipped" style=${{ width: pct(st.skipped || 0) }}></span>
      <span class="failed" style=${{ width: pct(st.failed || 0) }}></span>
    </div>
    <div class="figures">
      ${[
        html`<span class="percent">${done}%</span>`,
        `${fmt.format(st.done || 0)}/${fmt.format(st.audience || 0)}`,
        html`<span class="ok">sent ${fmt.format(st.sent || 0)}</span>`,
        `skipped ${fmt.format(st.skipped || 0)}`,
        `failed ${fmt.format(st.failed || 0)}`,
        rate > 0 ? fmt.format(Math.round(rate)) + "/s" : "–/s",
        "ETA " + eta,
      ].map((part, i) => (i ? [" · ", part] : part))}
    </div>
  </div>`;
}

// ---- campaigns list ----

const maxStreams = 4; // a browser keeps 6 connections per host: leave some for requests

function CampaignRow({ c, live }) {
  const [st, rate] = useProgress(c, live);
  return html`<tr data-id=${st.id}>
    <td><a href=${"#/campaigns/" + encodeURIComponent(st.id)}>${st.name}</a><div class="muted">${st.id}</div></td>
    <td><span class=${"state " + st.state}>${st.state}</span></td>
    <td>${st.template}</td>
    <td style="min-width:320px"><${ProgressBar} st=${st} rate=${rate} /></td>
    <td class="muted">${when(st.launched_at)}</td>
  </tr>`;
}

function Campaigns({ session }) {
  const [list, setList] = useState(null);
  const [next, setNext] = useState("");
  const [error, setError] = useState(null);
  const load = async (cursor) => {
    try {
      const p = await api("GET", "/v1/campaigns?limit=50" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      setList((old) => (cursor && old ? old.concat(p.items) : p.items));
      setNext(p.next_cursor || "");
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    load("");
  }, []);
  let streams = 0;
  return html`<div>
    <div class="row"><h1>Campaigns</h1>${can(session, "campaigns:write") && html`<a class="button" href="#/new" id="new-campaign">New campaign</a>`}</div>
    <${ErrorBox} error=${error} />
    ${list === null
      ? html`<p class="muted">Loading…</p>`
      : list.length === 0
      ? html`<p class="muted">No campaigns yet.</p>`
      : html`<table id="campaigns">
          <thead><tr><th>Campaign</th><th>State</th><th>Template</th><th>Progress</th><th>Launched</th></tr></thead>
          <tbody>${list.map((c) => {
            const live = isLive(c) && streams++ < maxStreams;
            return html`<${CampaignRow} key=${c.id} c=${c} live=${live} />`;
          })}</tbody>
        </table>`}
    ${next && html`<p><button onClick=${() => load(next)}>More</button></p>`}
  </div>`;
}

// ---- one campaign ----

function can(session, perm) {
  return session && session.permissions.includes(perm);
}

// Breakdown is the funnel split by a dimension (one query at a time: at a million
// recipients each one groups every recipient's events).
function Breakdown({ id, refresh }) {
  const [by, setBy] = useState("sender");
  const [rep, setRep] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setRep(null);
    setError(null);
    api("GET", "/v1/reports/funnel?campaign=" + encodeURIComponent(id) + "&by=" + by).then(setRep, setError);
  }, [id, by, refresh]);
  return html`<div class="card">
    <div class="row">
      <h2 style="margin:0">By</h2>
      <select id="breakdown-by" value=${by} onChange=${(e) => setBy(e.target.value)}>
        ${["sender", "country", "variant", "channel"].map((b) => html`<option value=${b}>${b}</option>`)}
      </select>
    </div>
    <${ErrorBox} error=${error} />
    ${!rep && !error && html`<p class="muted">Loading…</p>`}
    ${rep && rep.groups.length === 0 && html`<p class="muted">Nothing yet.</p>`}
    ${rep &&
    rep.groups.length > 0 &&
    html`<table id="breakdown" data-by=${rep.by}>
      <thead><tr><th>${rep.by}</th>${rep.groups[0].steps.map((s) => html`<th class="num">${s.name}</th>`)}</tr></thead>
      <tbody>${rep.groups.map(
        (g) => html`<tr data-key=${g.key}><td>${g.key || "–"}</td>${g.steps.map((s) => html`<td class="num">${fmt.format(s.contacts)}</td>`)}</tr>`
      )}</tbody>
    </table>`}
  </div>`;
}

function FunnelCard({ id, refresh }) {
  const [f, setF] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api("GET", "/v1/reports/funnel?campaign=" + encodeURIComponent(id)).then(setF, setError);
  }, [id, refresh]);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!f) return html`<p class="muted">Loading the funnel…</p>`;
  return html`<div>
    <div class="grid2">
      <div class="card">
        <h2>Funnel</h2>
        <${BarChart} label="contacts" labels=${f.steps.map((s) => s.name)} values=${f.steps.map((s) => s.contacts)} />
      </div>
      <div class="card">
        <h2>Figures</h2>
        <table id="funnel-figures">
          <thead><tr><th>Step</th><th class="num">Contacts</th><th class="num">Of previous</th><th class="num">Of first</th></tr></thead>
          <tbody>${f.steps.map(
            (s) => html`<tr data-step=${s.name}><td>${s.name}</td><td class="num contacts" data-contacts=${s.contacts}>${fmt.format(s.contacts)}</td>
              <td class="num">${(100 * s.of_previous).toFixed(1)}%</td><td class="num">${(100 * s.of_first).toFixed(1)}%</td></tr>`
          )}</tbody>
        </table>
      </div>
    </div>
    <div class="grid2">
      <div class="card">
        <h2>Skip reasons</h2>
        ${f.skipped.length === 0
          ? html`<p class="muted">None skipped.</p>`
          : html`<table id="skip-reasons"><tbody>${f.skipped.map(
              (r) => html`<tr data-reason=${r.reason}><td>${r.reason}</td><td class="num">${fmt.format(r.contacts)}</td></tr>`
            )}</tbody></table>`}
      </div>
      <div class="card">
        <h2>Failure codes</h2>
        ${f.failed.length === 0
          ? html`<p class="muted">No failures.</p>`
          : html`<table id="failure-codes"><tbody>${f.failed.map(
              (r) => html`<tr data-code=${r.code}><td>${r.code}</td><td class="num">${fmt.format(r.contacts)}</td></tr>`
            )}</tbody></table>`}
      </div>
    </div>
    <${Breakdown} id=${id} refresh=${refresh} />
  </div>`;
}

const statuses = ["", "queued", "deferred", "skipped", "sent", "failed", "delivered", "read", "clicked", "replied", "converted"];

function Deliveries({ id, refresh }) {
  const [status, setStatus] = useState("");
  const [desc, setDesc] = useState(false);
  const [pages, setPages] = useState([""]); // cursors of the pages seen, for Back
  const [pg, setPg] = useState(null);
  const [error, setError] = useState(null);
  const cursor = pages[pages.length - 1];
  const query = (extra) =>
    "/v1/campaigns/" + encodeURIComponent(id) + "/deliveries?" +
    new URLSearchParams({ ...(status ? { status } : {}), ...(desc ? { sort: "-contact_id" } : {}), ...extra }).toString();
  useEffect(() => {
    setError(null);
    api("GET", query({ limit: "25", ...(cursor ? { cursor } : {}) })).then(setPg, setError);
  }, [id, status, desc, cursor, refresh]);
  const reset = (f) => (e) => {
    f(e);
    setPages([""]);
  };
  return html`<div class="card">
    <div class="row">
      <h2 style="margin:0">Deliveries</h2>
      <select id="delivery-status" onChange=${reset((e) => setStatus(e.target.value))} value=${status}>
        ${statuses.map((s) => html`<option value=${s}>${s || "every recipient"}</option>`)}
      </select>
      <button onClick=${reset(() => setDesc(!desc))}>Contact id ${desc ? "↓" : "↑"}</button>
      <a class="button" id="export-csv" href=${query({ format: "csv" })} download=${"deliveries-" + id + ".csv"}>Export CSV</a>
    </div>
    <${ErrorBox} error=${error} />
    ${pg &&
    html`<table id="deliveries">
      <thead><tr><th>Contact</th><th>Status</th><th>Time</th><th>Channel</th><th>Sender</th><th>Reason</th><th>Code</th></tr></thead>
      <tbody>${pg.items.map(
        (d) => html`<tr data-contact=${d.contact_id}><td>${d.contact_id}</td><td>${d.status}</td><td class="muted">${when(d.time)}</td>
          <td>${d.channel || ""}</td><td>${d.sender_id || ""}</td><td>${d.reason || ""}</td><td>${d.error_code || ""}</td></tr>`
      )}</tbody>
    </table>
    <p class="row">
      <button disabled=${pages.length < 2} onClick=${() => setPages(pages.slice(0, -1))}>Previous</button>
      <button id="deliveries-next" disabled=${!pg.next_cursor} onClick=${() => setPages(pages.concat(pg.next_cursor))}>Next</button>
      <span class="muted">${pg.items.length} on this page</span>
    </p>`}
  </div>`;
}

function Campaign({ id, session }) {
  const [initial, setInitial] = useState(null);
  const [error, setError] = useState(null);
  const [live, setLive] = useState(false);
  const [refresh, setRefresh] = useState(0);
  useEffect(() => {
    api("GET", "/v1/campaigns/" + encodeURIComponent(id)).then((s) => {
      setInitial(s);
      setLive(isLive(s));
    }, setError);
  }, [id]);
  const [st, rate, setSt] = useProgress(initial, live);
  // When a followed campaign finishes, read the reports again.
  const prevState = useRef("");
  useEffect(() => {
    if (st && prevState.current && prevState.current !== st.state) setRefresh((n) => n + 1);
    if (st) prevState.current = st.state;
  }, [st && st.state]);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!st) return html`<p class="muted">Loading…</p>`;
  const act = async (op) => {
    setError(null);
    try {
      const s = await api("POST", "/v1/campaigns/" + encodeURIComponent(id) + "/" + op);
      setSt(s);
      if (isLive(s)) setLive(true);
    } catch (err) {
      setError(err);
    }
  };
  const write = can(session, "campaigns:write");
  return html`<div>
    <h1>${st.name} <span class=${"state " + st.state} id="campaign-state">${st.state}</span></h1>
    <div class="card">
      <dl class="kv">
        <dt>id</dt><dd>${st.id}</dd>
        <dt>segment</dt><dd><code>${st.segment}</code></dd>
        <dt>template</dt><dd>${st.template}</dd>
        <dt>senders</dt><dd>${(st.senders || []).join(", ")}</dd>
        <dt>channel</dt><dd>${st.channel} (${st.purpose})</dd>
        ${st.launched_at && html`<dt>launched</dt><dd>${when(st.launched_at)}</dd>`}
        ${st.completed_at && html`<dt>completed</dt><dd>${when(st.completed_at)}</dd>`}
        ${st.pause_reason && html`<dt>paused because</dt><dd>${st.pause_reason}</dd>`}
      </dl>
      <h2>Progress</h2>
      <${ProgressBar} st=${st} rate=${rate} />
      <p class="actions">
        ${st.state === "draft" && can(session, "campaigns:launch") && html`<button class="primary" id="launch" onClick=${() => act("launch")}>Launch</button>`}
        ${write && st.state === "running" && html`<button id="pause" onClick=${() => act("pause")}>Pause</button>`}
        ${write && st.state === "paused" && html`<button id="resume" onClick=${() => act("resume")}>Resume</button>`}
        ${write && ["draft", "scheduled", "running", "paused"].includes(st.state) && html`<button class="danger" id="cancel" onClick=${() => act("cancel")}>Cancel</button>`}
      </p>
    </div>
    ${can(session, "reports:read") && html`<${FunnelCard} id=${id} refresh=${refresh} />`}
    ${can(session, "reports:read") && html`<${ChannelsCard} id=${id} refresh=${refresh} />`}
    ${can(session, "reports:read") && html`<${TimelineCard} id=${id} refresh=${refresh} />`}
    ${can(session, "reports:read") && html`<${ABCard} id=${id} refresh=${refresh} /><${LiftCard} id=${id} refresh=${refresh} />`}
    ${can(session, "reports:read") && html`<${Deliveries} id=${id} refresh=${refresh} />`}
  </div>`;
}

// ---- create and launch ----

function useDebounced(value, ms) {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value]);
  return v;
}

function KV({ obj }) {
  if (!obj || typeof obj !== "object") return html`<pre class="preview">${String(obj)}</pre>`;
  return html`<dl class="kv">${Object.entries(obj).map(
    ([k, v]) => html`<dt>${k}</dt><dd>${typeof v === "object" ? html`<pre class="preview">${JSON.stringify(v, null, 2)}</pre>` : String(v)}</dd>`
  )}</dl>`;
}

function AudienceBuilder({ expr, setExpr }) {
  const q = useDebounced(expr, 300);
  const [count, setCount] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!q.trim()) {
      setCount(null);
      setError(null);
      return;
    }
    let stale = false;
    api("GET", "/v1/segments/count?expr=" + encodeURIComponent(q)).then(
      (c) => !stale && (setCount(c), setError(null)),
      (err) => !stale && (setCount(null), setError(err.missingRoute ? new Error("this server has no live count (GET /v1/segments/count)") : err))
    );
    return () => (stale = true);
  }, [q]);
  return html`<div>
    <label for="segment">Audience (segment expression)</label>
    <textarea id="segment" rows="2" placeholder="customer AND country:TH AND NOT opted_out" value=${expr} onInput=${(e) => setExpr(e.target.value)}></textarea>
    <${ErrorBox} error=${error} />
    ${count &&
    html`<p>Matches <strong id="audience-count" data-count=${count.count}>${fmt.format(count.count)}</strong> contacts.</p>
      ${count.terms && count.terms.length > 0 &&
      html`<table class="terms"><thead><tr><th>Term</th><th class="num">Contacts</th></tr></thead>
        <tbody>${count.terms.map((t) => html`<tr><td>${t.term}</td><td class="num">${fmt.format(t.count)}</td></tr>`)}</tbody></table>`}`}
  </div>`;
}

function TemplatePicker({ templates, name, setName }) {
  const [preview, setPreview] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!name) return;
    setPreview(null);
    api("POST", "/v1/templates/" + encodeURIComponent(name) + "/preview", { sample: 1 }).then(
      (p) => (setPreview(p), setError(null)),
      (err) => setError(err.missingRoute ? new Error("this server has no template preview (POST /v1/templates/{name}/preview)") : err)
    );
  }, [name]);
  return html`<div>
    <label for="template">Template</label>
    <select id="template" value=${name} onChange=${(e) => setName(e.target.value)}>
      <option value="">choose…</option>
      ${templates.map((t) => html`<option value=${t.name}>${t.name} (${t.channel}, ${t.locale})</option>`)}
    </select>
    <${ErrorBox} error=${error} />
    ${preview && html`<div id="template-preview"><${KV} obj=${preview} /></div>`}
  </div>`;
}

function NewCampaign({ session }) {
  const [templates, setTemplates] = useState([]);
  const [senders, setSenders] = useState([]);
  const [form, setForm] = useState({ name: "", segment: "", template: "", senders: [], quiet_hours: "", holdout: "" });
  const [draft, setDraft] = useState(null);
  const [dry, setDry] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    api("GET", "/v1/templates?limit=500").then((p) => setTemplates(p.items), setError);
    api("GET", "/v1/senders?limit=500").then((p) => setSenders(p.items), setError);
  }, []);
  const set = (k) => (v) => setForm((f) => ({ ...f, [k]: v }));
  const toggleSender = (id) =>
    setForm((f) => ({ ...f, senders: f.senders.includes(id) ? f.senders.filter((s) => s !== id) : f.senders.concat(id) }));
  const run = (f) => async () => {
    setBusy(true);
    setError(null);
    try {
      await f();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const create = run(async () => {
    const body = { name: form.name, segment: form.segment, template: form.template, senders: form.senders };
    if (form.quiet_hours) body.quiet_hours = form.quiet_hours;
    if (form.holdout) body.holdout = Number(form.holdout);
    const cp = await api("POST", "/v1/campaigns", body);
    setDraft(cp);
    try {
      setDry(await api("POST", "/v1/campaigns/" + encodeURIComponent(cp.id) + "/dry-run", {}));
    } catch (err) {
      if (!err.missingRoute) throw err;
      setDry({ note: "this server has no dry run (POST /v1/campaigns/{id}/dry-run)" });
    }
  });
  const launch = run(async () => {
    await api("POST", "/v1/campaigns/" + encodeURIComponent(draft.id) + "/launch");
    location.hash = "#/campaigns/" + encodeURIComponent(draft.id);
  });
  return html`<div>
    <h1>New campaign</h1>
    <div class="card">
      <label for="name">Name</label>
      <input id="name" value=${form.name} onInput=${(e) => set("name")(e.target.value)} disabled=${!!draft} />
      <${AudienceBuilder} expr=${form.segment} setExpr=${set("segment")} />
      <${TemplatePicker} templates=${templates} name=${form.template} setName=${set("template")} />
      <label>Senders</label>
      ${senders.length === 0 && html`<p class="muted">No senders (herald senders add).</p>`}
      ${senders.map(
        (s) => html`<div class="row"><input type="checkbox" id=${"sender-" + s.id} checked=${form.senders.includes(s.id)} onChange=${() => toggleSender(s.id)} />
          <label for=${"sender-" + s.id} style="margin:0;font-weight:400">${s.name || s.id} · ${s.channel} · ${fmt.format(s.rate)}/s</label></div>`
      )}
      <div class="grid2">
        <div><label for="quiet">Quiet hours (recipient's local time)</label><input id="quiet" placeholder="21:00-08:00" value=${form.quiet_hours} onInput=${(e) => set("quiet_hours")(e.target.value)} /></div>
        <div><label for="holdout">Holdout (0 to 0.5)</label><input id="holdout" placeholder="0.05" value=${form.holdout} onInput=${(e) => set("holdout")(e.target.value)} /></div>
      </div>
      <${ErrorBox} error=${error} />
      <p class="actions">
        ${!draft && html`<button class="primary" id="create" disabled=${busy || !form.name || !form.segment || !form.template || form.senders.length === 0} onClick=${create}>Create and dry-run</button>`}
        ${draft && can(session, "campaigns:launch") && html`<button class="primary" id="launch" disabled=${busy} onClick=${launch}>Launch</button>`}
        ${draft && html`<a class="button" href=${"#/campaigns/" + encodeURIComponent(draft.id)}>Open the draft</a>`}
      </p>
      ${draft && !can(session, "campaigns:launch") && html`<p class="muted">Your key may not launch campaigns: ask someone whose key may.</p>`}
    </div>
    ${dry && html`<div class="card" id="dry-run"><h2>Dry run</h2><${KV} obj=${dry} /></div>`}
  </div>`;
}

// ---- lists ----

function Listing({ title, path, columns, id }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api("GET", path).then((p) => setItems(p.items), setError);
  }, [path]);
  return html`<div>
    <h1>${title}</h1>
    <${ErrorBox} error=${error} />
    ${items &&
    html`<table id=${id}>
      <thead><tr>${columns.map(([name]) => html`<th>${name}</th>`)}</tr></thead>
      <tbody>${items.map((it) => html`<tr>${columns.map(([, f]) => html`<td>${f(it)}</td>`)}</tr>`)}</tbody>
    </table>`}
  </div>`;
}

const pages = {
  templates: () =>
    html`<${Listing} title="Templates" id="templates" path="/v1/templates?limit=500" columns=${[
      ["name", (t) => t.name],
      ["version", (t) => t.version || ""],
      ["channel", (t) => t.channel],
      ["locale", (t) => t.locale],
      ["variants", (t) => t.variants.join(", ")],
      ["saved", (t) => when(t.saved_at)],
    ]} />`,
  senders: (parts, session) => html`<${SendersPage} canWrite=${can(session, "senders:write")} />`,
  reports: () => html`<${ReportsPage} />`,
  audit: (parts) => html`<${AuditPage} parts=${parts} />`,
};

// ---- the shell ----

function App() {
  const [session, setSession] = useState(undefined);
  const hash = useHash();
  useEffect(() => {
    api("GET", "/v1/session").then(
      (s) => (setCSRF(s.csrf_token), setSession(s)),
      () => setSession(null)
    );
    const out = () => (setCSRF(""), setSession(null));
    addEventListener("herald:unauthorized", out);
    return () => removeEventListener("herald:unauthorized", out);
  }, []);
  if (session === undefined) return html`<p class="muted" style="padding:20px">Loading…</p>`;
  if (!session)
    return html`<${Login} onSession=${(s) => {
      setCSRF(s.csrf_token);
      setSession(s);
    }} />`;
  const logout = async () => {
    try {
      await api("DELETE", "/v1/session");
    } catch (err) {
      if (!(err instanceof APIError)) throw err;
    }
    setCSRF("");
    setSession(null);
  };
  const parts = hash.replace(/^#\/?/, "").split("/");
  let page;
  if (parts[0] === "campaigns" && parts[1]) page = html`<${Campaign} key=${parts[1]} id=${decodeURIComponent(parts[1])} session=${session} />`;
  else if (parts[0] === "new") page = html`<${NewCampaign} session=${session} />`;
  else if (pages[parts[0]]) page = pages[parts[0]](parts, session);
  else page = html`<${Campaigns} session=${session} />`;
  const nav = [
    ["campaigns", "Campaigns", "campaigns:read"],
    ["new", "New campaign", "campaigns:write"],
    ["templates", "Templates", "templates:read"],
    ["senders", "Senders", "senders:read"],
    ["reports", "Reports", "reports:read"],
    ["audit", "Audit", "audit:read"],
  ].filter(([, , p]) => can(session, p));
  return html`<div>
    <header class="top">
      <span class="brand">Herald</span>
      <nav>${nav.map(([k, label]) => html`<a href=${"#/" + k} class=${parts[0] === k || (k === "campaigns" && !pages[parts[0]] && parts[0] !== "new") ? "on" : ""}>${label}</a>`)}</nav>
      <span class="who" id="who" data-role=${session.role}>${session.key_name} · ${session.role}<button id="logout" onClick=${logout}>Log out</button></span>
    </header>
    <main>${page}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
