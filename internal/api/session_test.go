package api

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/dispatcher"
)

// login opens a console session with a role's key and returns its cookie and token.
func (e *env) login(name string, header map[string]string) (cookie string, s session) {
	e.t.Helper()
	res := e.do(req{method: "POST", path: "/v1/session", body: map[string]any{"api_key": e.keys[name]}, header: header})
	if res.status != http.StatusCreated {
		e.t.Fatalf("login as %s: %d %s", name, res.status, res.body)
	}
	res.decode(e.t, &s)
	for _, c := range (&http.Response{Header: res.header}).Cookies() {
		if c.Name == SessionCookie {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		e.t.Fatalf("login: no %s cookie in %v", SessionCookie, res.header.Values("Set-Cookie"))
	}
	return cookie, s
}

// A console session: an API key exchanged for an HttpOnly, SameSite=Strict cookie
// (Secure behind TLS), stored only as a digest in Redis with an expiry; it acts as its
// key, with its role; a change without the CSRF token, or from another origin, is
// refused; a revoked key ends its sessions; logout ends it.
func TestConsoleSession(t *testing.T) {
	e := newEnv(t)
	e.fixtures()

	if res := e.do(req{method: "POST", path: "/v1/session", body: map[string]any{"api_key": "hk_000000000000_nope"}}); res.status != 401 {
		t.Fatalf("login with a bad key: %d", res.status)
	}
	if res := e.do(req{method: "POST", path: "/v1/session", body: map[string]any{"api_key": e.keys["revoked"]}}); res.status != 401 {
		t.Fatalf("login with a revoked key: %d", res.status)
	}
	if res := e.do(req{method: "GET", path: "/v1/session"}); res.status != 401 {
		t.Fatalf("GET /v1/session without a cookie: %d", res.status)
	}

	cookie, s := e.login("marketer", nil)
	if s.Role != "marketer" || s.KeyID != e.ids["marketer"] || s.CSRFToken == "" || time.Until(s.ExpiresAt) < SessionTTL-time.Minute {
		t.Fatalf("session %+v", s)
	}
	res := e.do(req{method: "POST", path: "/v1/session", body: map[string]any{"api_key": e.keys["marketer"]}})
	sc := res.header.Get("Set-Cookie")
	if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") || strings.Contains(sc, "Secure") || !strings.Contains(sc, "Path=/") {
		t.Errorf("Set-Cookie over plain HTTP: %s", sc)
	}
	res = e.do(req{method: "POST", path: "/v1/session", body: map[string]any{"api_key": e.keys["marketer"]}, header: map[string]string{"X-Forwarded-Proto": "https"}})
	if sc := res.header.Get("Set-Cookie"); !strings.Contains(sc, "Secure") {
		t.Errorf("Set-Cookie behind TLS: %s", sc)
	}
	// Redis holds the session under the id's digest only, expiring.
	rdb, _ := e.d.Redis()
	id := strings.TrimPrefix(cookie, SessionCookie+"=")
	keys, err := rdb.Keys(e.ctx, e.d.Cfg.Prefix+"{sessions}:*").Result()
	if err != nil || len(keys) != 3 {
		t.Fatalf("session keys %v %v", keys, err)
	}
	for _, k := range keys {
		if strings.Contains(k, id) {
			t.Errorf("Redis key %s holds the session id", k)
		}
		if ttl := rdb.TTL(e.ctx, k).Val(); ttl <= 0 || ttl > SessionTTL {
			t.Errorf("session %s: TTL %v", k, ttl)
		}
	}

	ck := map[string]string{"Cookie": cookie}
	withToken := map[string]string{"Cookie": cookie, CSRFHeader: s.CSRFToken}
	var again session
	e.do(req{method: "GET", path: "/v1/session", header: ck}).decode(t, &again)
	if again.CSRFToken != s.CSRFToken || again.Role != "marketer" {
		t.Fatalf("GET /v1/session: %+v", again)
	}
	// The cookie acts as the key: reads with it alone, changes with the token.
	if res := e.do(req{method: "GET", path: "/v1/campaigns", header: ck}); res.status != 200 {
		t.Fatalf("GET /v1/campaigns with the cookie: %d %s", res.status, res.body)
	}
	body := map[string]any{"name": "by cookie", "segment": "customer", "template": "welcome", "senders": []string{"106540352242922"}}
	before := e.storeDigest()
	for _, h := range []map[string]string{ck, {"Cookie": cookie, CSRFHeader: "wrong"},
		{"Cookie": cookie, CSRFHeader: s.CSRFToken, "Origin": "https://evil.example"}} {
		res := e.do(req{method: "POST", path: "/v1/campaigns", body: body, header: h})
		if p := res.problem(t); res.status != 403 || p.Type != problemPrefix+"csrf" {
			t.Errorf("POST with %v: %d %s", h, res.status, res.body)
		}
	}
	if e.storeDigest() != before {
		t.Fatal("a refused request changed the store")
	}
	origin := map[string]string{"Cookie": cookie, CSRFHeader: s.CSRFToken, "Origin": e.base}
	var cp dispatcher.Campaign
	if res := e.do(req{method: "POST", path: "/v1/campaigns", body: body, header: origin}); res.status != 201 {
		t.Fatalf("POST with the token and our origin: %d %s", res.status, res.body)
	} else {
		res.decode(t, &cp)
	}
	// The key's role still holds: a marketer without launch may not launch.
	if res := e.do(req{method: "POST", path: "/v1/campaigns/" + cp.ID + "/launch", header: withToken}); res.status != 403 || res.problem(t).Type != problemPrefix+"forbidden" {
		t.Errorf("launch by a marketer's session: %d %s", res.status, res.body)
	}
	// A Bearer key wins over the cookie, and needs no token.
	res = e.do(req{method: "POST", path: "/v1/campaigns/" + cp.ID + "/cancel", key: "admin", header: ck})
	if res.status != 200 {
		t.Errorf("cancel with a key and a cookie: %d %s", res.status, res.body)
	}

	// An analyst's session: reads reports, may not create.
	acookie, as := e.login("analyst", nil)
	if res := e.do(req{method: "POST", path: "/v1/campaigns", body: body, header: map[string]string{"Cookie": acookie, CSRFHeader: as.CSRFToken}}); res.status != 403 {
		t.Errorf("create by an analyst's session: %d", res.status)
	}
	// Revoking the key ends its sessions.
	if _, err := e.comp.Keys.Revoke(e.ctx, "analyst"); err != nil {
		t.Fatal(err)
	}
	if res := e.do(req{method: "GET", path: "/v1/campaigns", header: map[string]string{"Cookie": acookie}}); res.status != 401 {
		t.Errorf("a revoked key's session: %d", res.status)
	}

	// Logout needs the token, ends the session and clears the cookie.
	if res := e.do(req{method: "DELETE", path: "/v1/session", header: map[string]string{"Cookie": cookie, CSRFHeader: "x"}, invalid: true}); res.status != 403 {
		t.Errorf("logout with a wrong token: %d", res.status)
	}
	res = e.do(req{method: "DELETE", path: "/v1/session", header: withToken})
	if res.status != 204 || !strings.Contains(res.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %v", res.status, res.header.Values("Set-Cookie"))
	}
	if res := e.do(req{method: "GET", path: "/v1/campaigns", header: ck}); res.status != 401 {
		t.Errorf("after logout: %d", res.status)
	}
}

// insertEvents writes events of a campaign straight into ClickHouse: for contacts
// c·step, c = 1..n, queued; every 10th skipped (no_consent); the rest sent, then every 7th failed
// (131026), every 3rd delivered and every 6th read.
func insertEvents(t testing.TB, ctx context.Context, e *env, campaign string, n, step int) {
	t.Helper()
	conn, err := e.d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := uint64(time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC).UnixMilli())
	// Generated by ClickHouse itself, so a million recipients take seconds.
	q := fmt.Sprintf(`INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, reason, error_code)
SELECT concat(toString(c), '-', k), k, toDateTime(intDiv(ts, 1000)), ts, '%s', toUInt32(c * %d), 'S1', 'whatsapp',
    if(k = 'skipped', 'no_consent', ''), toInt32(if(k = 'failed', 131026, 0))
FROM (
    SELECT number + 1 AS c,
        arrayJoin(arrayFilter(x -> x != '', [
            'queued',
            if(c %% 10 = 0, 'skipped', 'sent'),
            if(c %% 10 != 0 AND c %% 7 = 0, 'failed', ''),
            if(c %% 10 != 0 AND c %% 7 != 0 AND c %% 3 = 0, 'delivered', ''),
            if(c %% 10 != 0 AND c %% 7 != 0 AND c %% 6 = 0, 'read', '')])) AS k,
        toUInt64(%d + c * 10 + indexOf(['queued', 'sent', 'skipped', 'failed', 'delivered', 'read'], k)) AS ts
    FROM numbers(%d)
)`, campaign, step, base, n)
	if err := conn.Exec(ctx, q); err != nil {
		t.Fatal(err)
	}
}

// wantStatus is insertEvents' status of contact c.
func wantStatus(c int) string {
	switch {
	case c%10 == 0:
		return "skipped"
	case c%7 == 0:
		return "failed"
	case c%6 == 0:
		return "read"
	case c%3 == 0:
		return "delivered"
	}
	return "sent"
}

// Deliveries page by cursor through every recipient once, in order (both ways),
// filter by status, and export the same rows as CSV.
func TestDeliveries(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	const n = 250
	insertEvents(t, e.ctx, e, "1", n, 1)

	for _, sort := range []string{"contact_id", "-contact_id"} {
		var seen []uint32
		cur := ""
		for range 20 {
			path := "/v1/campaigns/1/deliveries?limit=40&sort=" + sort
			if cur != "" {
				path += "&cursor=" + url.QueryEscape(cur)
			}
			var p page[analytics.Delivery]
			e.do(req{method: "GET", path: path, key: "analyst"}).decode(t, &p)
			for _, d := range p.Items {
				seen = append(seen, d.ContactID)
				if d.Status != wantStatus(int(d.ContactID)) || d.SenderID != "S1" || d.Channel != "whatsapp" {
					t.Fatalf("contact %d: %+v, want status %s", d.ContactID, d, wantStatus(int(d.ContactID)))
				}
				if (d.Status == "skipped") != (d.Reason == "no_consent") || (d.Status == "failed") != (d.ErrorCode == 131026) {
					t.Fatalf("contact %d: %+v", d.ContactID, d)
				}
			}
			if cur = p.NextCursor; cur == "" {
				break
			}
		}
		if len(seen) != n {
			t.Fatalf("sort %s: %d recipients, want %d", sort, len(seen), n)
		}
		for i := range seen {
			want := uint32(i + 1)
			if sort != "contact_id" {
				want = uint32(n - i)
			}
			if seen[i] != want {
				t.Fatalf("sort %s: position %d holds %d, want %d", sort, i, seen[i], want)
			}
		}
	}

	// Sparse ids page the same way (the windows grow until the page is full).
	const step = 9973
	insertEvents(t, e.ctx, e, "2", 120, step)
	for _, sort := range []string{"contact_id", "-contact_id"} {
		var seen []uint32
		cur := ""
		for range 10 {
			path := "/v1/campaigns/2/deliveries?limit=50&sort=" + sort
			if cur != "" {
				path += "&cursor=" + url.QueryEscape(cur)
			}
			var p page[analytics.Delivery]
			e.do(req{method: "GET", path: path, key: "analyst"}).decode(t, &p)
			for _, d := range p.Items {
				seen = append(seen, d.ContactID)
				if d.ContactID%step != 0 || d.Status != wantStatus(int(d.ContactID/step)) {
					t.Fatalf("campaign 2, contact %d: %+v", d.ContactID, d)
				}
			}
			if cur = p.NextCursor; cur == "" {
				break
			}
		}
		if len(seen) != 120 || (sort == "contact_id" && seen[119] != 120*step) || (sort != "contact_id" && seen[0] != 120*step) {
			t.Fatalf("campaign 2, sort %s: %d recipients %v", sort, len(seen), seen)
		}
	}

	// status keeps those with such an event: delivered includes the read ones.
	var p page[analytics.Delivery]
	e.do(req{method: "GET", path: "/v1/campaigns/1/deliveries?status=delivered&limit=1000", key: "marketer"}).decode(t, &p)
	want := 0
	for c := 1; c <= n; c++ {
		if s := wantStatus(c); s == "delivered" || s == "read" {
			want++
		}
	}
	if len(p.Items) != want || p.NextCursor != "" {
		t.Fatalf("status=delivered: %d items, want %d", len(p.Items), want)
	}

	// CSV, by ?format= and by Accept, every row.
	for _, r := range []req{{method: "GET", path: "/v1/campaigns/1/deliveries?format=csv", key: "analyst"},
		{method: "GET", path: "/v1/campaigns/1/deliveries", key: "analyst", header: map[string]string{"Accept": "text/csv"}}} {
		res := e.do(r)
		if !strings.HasPrefix(res.header.Get("Content-Type"), "text/csv") || !strings.Contains(res.header.Get("Content-Disposition"), "deliveries-1.csv") {
			t.Fatalf("CSV: %d %v", res.status, res.header)
		}
		rows, err := csv.NewReader(strings.NewReader(string(res.body))).ReadAll()
		if err != nil || len(rows) != n+1 {
			t.Fatalf("CSV: %d rows, %v", len(rows), err)
		}
		for i, row := range rows[1:] {
			if row[0] != fmt.Sprint(i+1) || row[1] != wantStatus(i+1) {
				t.Fatalf("CSV row %d: %v", i+1, row)
			}
		}
	}

	for _, bad := range []string{"status=nope", "sort=time", "format=xml", "cursor=abc", "limit=0"} {
		if res := e.do(req{method: "GET", path: "/v1/campaigns/1/deliveries?" + bad, key: "analyst", invalid: true}); res.status != 400 {
			t.Errorf("%s: %d", bad, res.status)
		}
	}
	if res := e.do(req{method: "GET", path: "/v1/campaigns/nope/deliveries", key: "analyst"}); res.status != 404 {
		t.Errorf("unknown campaign: %d", res.status)
	}
	if res := e.do(req{method: "GET", path: "/v1/campaigns/1/deliveries", key: "auditor"}); res.status != 403 {
		t.Errorf("an auditor: %d", res.status)
	}
}
