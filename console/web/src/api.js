// The console talks to the /v1 API only, authenticated by the session cookie that
// POST /v1/session sets; mutating requests carry the session's CSRF token.

let csrf = "";

export function setCSRF(token) {
  csrf = token || "";
}

export class APIError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || "HTTP " + status);
    this.status = status;
    this.problem = problem || {};
  }
  // missingRoute: the server has no such route (an older Herald).
  get missingRoute() {
    return this.status === 404 && /no such route/.test(this.problem.detail || "");
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const ct = res.headers.get("Content-Type") || "";
  const data = ct.includes("json") ? await res.json() : await res.text();
  if (res.status === 401 && path !== "/v1/session") {
    // The session expired, was closed or its key revoked: back to the login.
    dispatchEvent(new Event("herald:unauthorized"));
  }
  if (!res.ok) throw new APIError(res.status, typeof data === "object" ? data : { detail: String(data) });
  return data;
}

// follow opens the progress stream of a campaign: onStatus gets each status; the
// returned function closes the stream.
export function follow(id, onStatus) {
  const es = new EventSource("/v1/campaigns/" + encodeURIComponent(id) + "/progress");
  const on = (ev) => {
    try {
      onStatus(JSON.parse(ev.data));
    } catch (e) {
      // a malformed event is skipped; the next one carries the whole status again
    }
  };
  es.addEventListener("progress", on);
  es.addEventListener("complete", (ev) => {
    on(ev);
    es.close();
  });
  return () => es.close();
}

export const fmt = new Intl.NumberFormat("en-US");

export function duration(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return Math.round(seconds) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
  return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " min";
}

export function when(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
