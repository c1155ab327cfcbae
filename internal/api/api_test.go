package api

import (
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
)

// Every route has an operation in the spec with the same permission, and every
// operation of the spec has a route.
func TestRoutesMatchSpec(t *testing.T) {
	doc, _ := loadSpec(t)
	a := &API{}
	routes := map[string]apikeys.Permission{}
	for _, rt := range a.routeTable() {
		if _, dup := routes[rt.pattern()]; dup {
			t.Errorf("route %s registered twice", rt.pattern())
		}
		routes[rt.pattern()] = rt.perm
	}
	spec := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			pattern := method + " " + path
			spec[pattern] = true
			perm, ok := routes[pattern]
			if !ok {
				t.Errorf("the spec has %s (%s) but no route serves it", pattern, op.OperationID)
				continue
			}
			want, _ := op.Extensions["x-permission"].(string)
			if string(perm) != want {
				t.Errorf("%s: the route needs %q, the spec's x-permission says %q", pattern, perm, want)
			}
			if want != "" && !slices.Contains(apikeys.Permissions, apikeys.Permission(want)) {
				t.Errorf("%s: x-permission %q is not a permission", pattern, want)
			}
			if want == "" && (op.Security == nil || len(*op.Security) != 0) {
				t.Errorf("%s: needs no key, so its security must be []", pattern)
			}
		}
	}
	for pattern := range routes {
		if !spec[pattern] {
			t.Errorf("route %s has no operation in openapi.yaml", pattern)
		}
	}
}

// fixtures adds what routes name: contact 1, a draft campaign 1 and a cancelled
// campaign 2 (whose progress stream ends at once).
func (e *env) fixtures() {
	e.t.Helper()
	if _, err := e.comp.Contacts.Upsert(e.ctx, []segments.Contact{{Phone: "+66810000001", Name: "One", Tags: []string{"customer"}}}); err != nil {
		e.t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(testTemplate), "welcome.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.comp.Templates.Save(e.ctx, tpl, []byte(testTemplate)); err != nil {
		e.t.Fatal(err)
	}
	if err := e.comp.Senders.Put(e.ctx, dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922",
		Token: app.DevSandboxToken, Rate: 300}); err != nil {
		e.t.Fatal(err)
	}
	for range 2 {
		if _, err := app.CreateCampaign(e.ctx, e.d, e.comp, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"106540352242922"}}); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := e.comp.Campaigns.Cancel(e.ctx, "2"); err != nil {
		e.t.Fatal(err)
	}
}

const testTemplate = `name: welcome
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: welcome_offer
  language: en_US
  category: MARKETING
  body:
    first_name: "{{ name | default: 'friend' }}"
variables:
  name: {type: string, default: ""}
`

// The authorization matrix, generated from the spec: every operation × every role
// (and a marketer that may launch) gets 403 exactly when the role lacks the
// operation's x-permission, and never 401; no key, a revoked key, a wrong secret and a
// malformed key get 401 everywhere but the open routes.
func TestAuthorizationMatrix(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	doc, _ := loadSpec(t)
	roles := []struct {
		key    string
		role   apikeys.Role
		launch bool
	}{{"admin", apikeys.Admin, false}, {"marketer", apikeys.Marketer, false}, {"launcher", apikeys.Marketer, true},
		{"analyst", apikeys.Analyst, false}, {"auditor", apikeys.Auditor, false}}
	wrong := "raw:Bearer hk_" + e.ids["admin"] + "_" + strings.Repeat("A", 43)
	unauth := []string{"", "revoked", wrong, "raw:Bearer not-a-key", "raw:Basic YWRtaW46YWRtaW4=", "raw:Bearer"}
	var paths []string
	for p := range doc.Paths.Map() {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	n := 0
	for _, path := range paths {
		for method, op := range doc.Paths.Find(path).Operations() {
			perm, _ := op.Extensions["x-permission"].(string)
			if path == "/v1/session" {
				continue // its own authentication (an API key in the body, or the cookie): session_test.go
			}
			url := strings.ReplaceAll(path, "{id}", "1")
			if strings.HasSuffix(path, "/progress") {
				url = strings.ReplaceAll(path, "{id}", "2")
			}
			if strings.HasPrefix(path, "/v1/reports/") {
				url += "?campaign=1"
			}
			var body any
			if method != http.MethodGet {
				body = map[string]any{}
			}
			name := method + " " + path
			for _, r := range roles {
				res := e.do(req{method: method, path: url, key: r.key, body: body, invalid: true})
				n++
				allowed := perm == "" || apikeys.Can(r.role, r.launch, apikeys.Permission(perm))
				switch {
				case res.status == http.StatusUnauthorized:
					t.Errorf("%s as %s: 401 with a valid key", name, r.key)
				case !allowed && res.status != http.StatusForbidden:
					t.Errorf("%s as %s (without %s): %d, want 403\n%s", name, r.key, perm, res.status, res.body)
				case allowed && res.status == http.StatusForbidden:
					t.Errorf("%s as %s (with %s): 403\n%s", name, r.key, perm, res.body)
				case res.status >= 500:
					t.Errorf("%s as %s: %d\n%s", name, r.key, res.status, res.body)
				}
				if res.status == http.StatusForbidden && !strings.Contains(res.problem(t).Detail, perm) {
					t.Errorf("%s as %s: the 403 does not name the permission %s", name, r.key, perm)
				}
			}
			for _, k := range unauth {
				res := e.do(req{method: method, path: url, key: k, body: body, invalid: true})
				n++
				want := http.StatusUnauthorized
				if perm == "" {
					want = http.StatusOK
				}
				if res.status != want {
					t.Errorf("%s with key %q: %d, want %d\n%s", name, k, res.status, want, res.body)
				}
				if res.status == http.StatusUnauthorized {
					p := res.problem(t)
					if res.header.Get("WWW-Authenticate") == "" || p.Type != problemPrefix+"unauthorized" {
						t.Errorf("%s: 401 without WWW-Authenticate or with type %q", name, p.Type)
					}
					for _, secret := range e.keys {
						if strings.Contains(string(res.body), secret[15:]) {
							t.Errorf("%s: the answer holds a key's secret", name)
						}
					}
				}
			}
		}
	}
	if n < 150 {
		t.Fatalf("only %d requests: the matrix did not walk the spec", n)
	}
}

// Unknown paths and methods are problems too, and a plain X-Request-Id comes back.
func TestUnknownRoutesAndRequestIDs(t *testing.T) {
	e := newEnv(t)
	res := e.do(req{method: "GET", path: "/v1/nothing", key: "admin", invalid: true})
	if p := res.problem(t); res.status != 404 || p.Type != problemPrefix+"not-found" {
		t.Fatalf("unknown path: %d %+v", res.status, p)
	}
	res = e.do(req{method: "DELETE", path: "/v1/campaigns", key: "admin", invalid: true})
	if p := res.problem(t); res.status != 405 || !strings.Contains(res.header.Get("Allow"), "POST") {
		t.Fatalf("wrong method: %d %+v, Allow %q", res.status, p, res.header.Get("Allow"))
	}
	res = e.do(req{method: "GET", path: "/v1/senders", key: "admin", header: map[string]string{"X-Request-Id": "crm-123.4"}})
	if res.header.Get("X-Request-Id") != "crm-123.4" {
		t.Fatalf("request id %q, want the caller's", res.header.Get("X-Request-Id"))
	}
	res = e.do(req{method: "GET", path: "/v1/senders", key: "admin", header: map[string]string{"X-Request-Id": "bad id\twith spaces"}})
	if id := res.header.Get("X-Request-Id"); !strings.HasPrefix(id, "req_") {
		t.Fatalf("request id %q, want a new one for a caller's id that is not plain", id)
	}
	res = e.do(req{method: "GET", path: "/v1/openapi.json"})
	if res.status != 200 || !strings.Contains(string(res.body), `"openapi":"3.1.0"`) {
		t.Fatalf("openapi.json: %d %.200s", res.status, res.body)
	}
}

// Lists page with opaque cursors: every campaign once, newest first, whatever is
// created meanwhile; a cursor of another list or garbage is refused.
func TestCampaignPages(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	for range 5 {
		if _, err := app.CreateCampaign(e.ctx, e.d, e.comp, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"106540352242922"}}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	cur := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("too many pages")
		}
		path := "/v1/campaigns?limit=2"
		if cur != "" {
			path += "&cursor=" + cur
		}
		var p page[dispatcher.Status]
		res := e.do(req{method: "GET", path: path, key: "analyst"})
		res.decode(t, &p)
		for _, s := range p.Items {
			seen = append(seen, s.ID)
		}
		if pages == 0 { // created meanwhile: listed before the first page, never in a later one
			if _, err := app.CreateCampaign(e.ctx, e.d, e.comp, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"106540352242922"}}); err != nil {
				t.Fatal(err)
			}
		}
		if p.NextCursor == "" {
			break
		}
		cur = p.NextCursor
	}
	if want := "7,6,5,4,3,2,1"; strings.Join(seen, ",") != want {
		t.Fatalf("pages listed %v, want %s", seen, want)
	}
	res := e.do(req{method: "GET", path: "/v1/senders?cursor=" + cur, key: "admin", invalid: true})
	if p := res.problem(t); res.status != 400 || p.Errors[0].Parameter != "cursor" {
		t.Fatalf("a campaigns cursor on senders: %d %+v", res.status, p)
	}
	for _, bad := range []string{"limit=0", "limit=201", "limit=x", "cursor=%25%25"} {
		res := e.do(req{method: "GET", path: "/v1/campaigns?" + bad, key: "admin", invalid: true})
		if res.status != 400 {
			t.Errorf("%s: %d", bad, res.status)
		}
	}
}

// A key over its rate gets 429 with Retry-After; other keys are not held back.
func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	e.addKey("slow", apikeys.Analyst, false, 0.5) // burst 1: one request, then one every 2 s
	if res := e.do(req{method: "GET", path: "/v1/senders", key: "slow"}); res.status != 200 {
		t.Fatalf("first request: %d %s", res.status, res.body)
	}
	res := e.do(req{method: "GET", path: "/v1/senders", key: "slow"})
	p := res.problem(t)
	if res.status != 429 || p.Type != problemPrefix+"rate-limited" || res.header.Get("Retry-After") == "" {
		t.Fatalf("second request: %d %+v Retry-After %q", res.status, p, res.header.Get("Retry-After"))
	}
	if res := e.do(req{method: "GET", path: "/v1/senders", key: "analyst"}); res.status != 200 {
		t.Fatalf("another key: %d", res.status)
	}
}
