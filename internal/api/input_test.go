package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/segments"
)

// Bad input gets a 4xx problem pointing at what was wrong, and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	big := `{"name":"` + strings.Repeat("x", 70<<10) + `","phone":"+66810000002"}`
	cases := []struct {
		name, method, path, body string
		ctype                    string
		status                   int
		slug, pointer            string
	}{
		{"malformed", "POST", "/v1/contacts", `{"phone": "+66810000002",`, "", 400, "invalid-body", ""},
		{"not an object", "POST", "/v1/contacts", `[1,2]`, "", 400, "invalid-body", ""},
		{"unknown field", "POST", "/v1/contacts", `{"phone":"+66810000002","vip":true}`, "", 400, "invalid-body", "/vip"},
		{"field in another case", "POST", "/v1/contacts", `{"Phone":"+66810000002"}`, "", 400, "invalid-body", "/Phone"},
		{"wrong type", "POST", "/v1/contacts", `{"phone":66810000002}`, "", 400, "invalid-body", "/phone"},
		{"wrong type deep", "POST", "/v1/contacts", `{"phone":"+66810000002","tags":["a",7]}`, "", 400, "invalid-body", "/tags/1"},
		{"null string", "POST", "/v1/contacts", `{"phone":null,"email":"a@example.com"}`, "", 400, "invalid-body", "/phone"},
		{"duplicate key", "POST", "/v1/contacts", `{"phone":"+66810000002","phone":"+66810000003"}`, "", 400, "invalid-body", "/phone"},
		{"trailing data", "POST", "/v1/contacts", `{"phone":"+66810000002"} {"phone":"+66810000003"}`, "", 400, "invalid-body", ""},
		{"empty body", "POST", "/v1/contacts", ``, "", 400, "invalid-body", ""},
		{"too large", "POST", "/v1/contacts", big, "", 413, "body-too-large", ""},
		{"not json", "POST", "/v1/contacts", `phone=+66810000002`, "application/x-www-form-urlencoded", 415, "unsupported-media-type", ""},
		{"invalid phone", "POST", "/v1/contacts", `{"phone":"12"}`, "", 422, "validation", "/phone"},
		{"invalid tag", "POST", "/v1/contacts", `{"phone":"+66810000002","tags":["ok","!!!"]}`, "", 422, "validation", "/tags/1"},
		{"no identity", "POST", "/v1/contacts", `{"name":"Nobody"}`, "", 422, "validation", "/phone"},
		{"bulk wrong type", "POST", "/v1/contacts:bulk", `{"contacts":[{"phone":"+66810000002"},{"phone":{"x":1}}]}`, "", 400, "invalid-body", "/contacts/1/phone"},
		{"bulk empty", "POST", "/v1/contacts:bulk", `{"contacts":[]}`, "", 422, "validation", "/contacts"},
		{"put unknown field", "PUT", "/v1/contacts/1", `{"name":"X","id":5}`, "", 400, "invalid-body", "/id"},
		{"put another's phone", "PUT", "/v1/contacts/1", `{"phone":"+66810000009"}`, "", 409, "conflict", "/phone"},
		{"campaign int overflow", "POST", "/v1/campaigns", `{"segment":"customer","template":"welcome","senders":["106540352242922"],"max_error_rate":1e999}`, "", 400, "invalid-body", "/max_error_rate"},
		{"campaign bad segment", "POST", "/v1/campaigns", `{"segment":"customer and (","template":"welcome","senders":["106540352242922"]}`, "", 422, "validation", "/segment"},
		{"campaign no template", "POST", "/v1/campaigns", `{"segment":"customer","template":"nope","senders":["106540352242922"]}`, "", 422, "validation", "/template"},
		{"campaign unknown sender", "POST", "/v1/campaigns", `{"segment":"customer","template":"welcome","senders":["nope"]}`, "", 422, "validation", "/senders"},
		{"campaign senders not a list", "POST", "/v1/campaigns", `{"segment":"customer","template":"welcome","senders":"106540352242922"}`, "", 400, "invalid-body", "/senders"},
		{"consent bad action", "POST", "/v1/consent", `{"contact_id":1,"action":"maybe"}`, "", 422, "validation", "/action"},
		{"consent unknown contact", "POST", "/v1/consent", `{"phone":"+66819999999","action":"grant"}`, "", 422, "validation", "/phone"},
		{"consent id too large", "POST", "/v1/consent", `{"contact_id":4294967296,"action":"grant"}`, "", 400, "invalid-body", "/contact_id"},
		{"consent bad time", "POST", "/v1/consent", `{"contact_id":1,"action":"grant","at":"yesterday"}`, "", 400, "invalid-body", "/at"},
		{"pause with a body", "POST", "/v1/campaigns/1/pause", `{"reason":"x"}`, "", 400, "invalid-body", "/reason"},
		{"launch bad at", "POST", "/v1/campaigns/1/launch", `{"at":5}`, "", 400, "invalid-body", "/at"},
		{"deep nesting", "POST", "/v1/contacts", `{"attributes":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat("}", 41), "", 400, "invalid-body", ""},
	}
	if _, err := e.comp.Contacts.Upsert(e.ctx, []segments.Contact{{Phone: "+66810000009"}}); err != nil {
		t.Fatal(err)
	}
	before := e.storeDigest()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.ctype != "" {
				h["Content-Type"] = tc.ctype
			}
			res := e.do(req{method: tc.method, path: tc.path, key: "launcher", body: []byte(tc.body), header: h, invalid: true})
			p := res.problem(t)
			if res.status != tc.status || p.Status != tc.status || p.Type != problemPrefix+tc.slug {
				t.Fatalf("%d %s, want %d %s\n%s", res.status, p.Type, tc.status, tc.slug, res.body)
			}
			if tc.pointer != "" {
				found := false
				for _, fp := range p.Errors {
					found = found || fp.Pointer == tc.pointer
				}
				if !found {
					t.Errorf("no error points at %s: %+v", tc.pointer, p.Errors)
				}
			}
			if p.RequestID == "" || p.Instance != strings.SplitN(tc.path, "?", 2)[0] {
				t.Errorf("problem without request_id or instance: %+v", p)
			}
		})
	}
	if after := e.storeDigest(); after != before {
		t.Fatal("refused requests changed the store")
	}
	if st, err := e.comp.Campaigns.Status(e.ctx, "1"); err != nil || st.State != dispatcher.Draft {
		t.Fatalf("campaign 1: %+v %v", st, err)
	}
}

// A body that arrives too slowly is cut off with 408, the connection freed.
func TestSlowBody(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BodyTimeout = 300 * time.Millisecond })
	before := e.storeDigest()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"phone\":", e.keys["admin"])
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	buf := make([]byte, 4096)
	n, _ := conn.Read(buf)
	if !bytes.Contains(buf[:n], []byte(" 408 ")) || !bytes.Contains(buf[:n], []byte("body-timeout")) {
		t.Fatalf("got %q", buf[:n])
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answered after %s", d)
	}
	if e.storeDigest() != before {
		t.Fatal("a cut-off request changed the store")
	}
}

// An Idempotency-Key makes a POST take effect once: the retry replays the first
// answer, the same key with another body is refused, one in progress is 409.
func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	body := map[string]any{"phone": "+66810000077", "name": "Idem", "tags": []string{"crm"}}
	h := map[string]string{"Idempotency-Key": "7a1e2c9f-crm-1"}
	first := e.do(req{method: "POST", path: "/v1/contacts", key: "marketer", body: body, header: h})
	if first.status != 201 || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	var c1 segments.Contact
	first.decode(t, &c1)
	before := e.storeDigest()
	again := e.do(req{method: "POST", path: "/v1/contacts", key: "marketer", body: body, header: h})
	if again.status != 201 || again.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.body, first.body) ||
		again.header.Get("Location") != first.header.Get("Location") {
		t.Fatalf("retry: %d %v %s, want the first answer replayed", again.status, again.header, again.body)
	}
	if again.header.Get("X-Request-Id") == first.header.Get("X-Request-Id") {
		t.Fatal("the replay carries the first request's id")
	}
	// Without the key, the same body is a new (idempotent anyway) upsert: 200.
	if res := e.do(req{method: "POST", path: "/v1/contacts", key: "marketer", body: body}); res.status != 200 {
		t.Fatalf("without the key: %d", res.status)
	}
	other := map[string]any{"phone": "+66810000078", "name": "Other"}
	res := e.do(req{method: "POST", path: "/v1/contacts", key: "marketer", body: other, header: h})
	if p := res.problem(t); res.status != 422 || p.Type != problemPrefix+"idempotency-key-reused" {
		t.Fatalf("same key, other body: %d %+v", res.status, p)
	}
	res = e.do(req{method: "POST", path: "/v1/campaigns", key: "marketer", body: body, header: h, invalid: true})
	if res.status != 422 {
		t.Fatalf("same key, other route: %d", res.status)
	}
	if e.storeDigest() != before {
		t.Fatal("a replay or a refused reuse changed the store")
	}
	// Keys are per API key: another client's same Idempotency-Key is its own.
	if res := e.do(req{method: "POST", path: "/v1/contacts", key: "admin", body: other, header: h}); res.status != 201 {
		t.Fatalf("another API key, same Idempotency-Key: %d %s", res.status, res.body)
	}
	// A request still running holds its key: the retry is told to wait.
	held := map[string]any{"segment": "customer", "template": "welcome", "senders": []string{"106540352242922"}}
	hb, _ := json.Marshal(held)
	st, _, err := e.api.idem.begin(context.Background(), e.ids["marketer"], "in-flight", fingerprint("POST", "POST /v1/campaigns", "/v1/campaigns", hb))
	if err != nil || st != idemNew {
		t.Fatal(st, err)
	}
	res = e.do(req{method: "POST", path: "/v1/campaigns", key: "marketer", body: hb, header: map[string]string{"Idempotency-Key": "in-flight"}})
	if p := res.problem(t); res.status != 409 || p.Type != problemPrefix+"idempotency-key-in-use" || res.header.Get("Retry-After") == "" {
		t.Fatalf("in flight: %d %+v", res.status, p)
	}
	// A campaign created twice with one key is one campaign.
	ck := map[string]string{"Idempotency-Key": "campaign-once"}
	a := e.do(req{method: "POST", path: "/v1/campaigns", key: "marketer", body: held, header: ck})
	b := e.do(req{method: "POST", path: "/v1/campaigns", key: "marketer", body: held, header: ck})
	if a.status != 201 || b.status != 201 || !bytes.Equal(a.body, b.body) {
		t.Fatalf("campaign twice: %d %d", a.status, b.status)
	}
	list, err := e.comp.Campaigns.List(e.ctx, 100)
	if err != nil || len(list) != 3 {
		t.Fatalf("%d campaigns, want 3 (two fixtures and one created): %v", len(list), err)
	}
	// A launch retried with its key launches once and answers the same.
	lk := map[string]string{"Idempotency-Key": "launch-1"}
	l1 := e.do(req{method: "POST", path: "/v1/campaigns/1/launch", key: "launcher", header: lk})
	l2 := e.do(req{method: "POST", path: "/v1/campaigns/1/launch", key: "launcher", header: lk})
	if l1.status != 200 || !bytes.Equal(l1.body, l2.body) || l2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("launch twice: %d %s / %s", l1.status, l1.body, l2.body)
	}
	for _, bad := range []string{strings.Repeat("k", 256), "has space"} {
		res := e.do(req{method: "POST", path: "/v1/contacts", key: "marketer", body: body, header: map[string]string{"Idempotency-Key": bad}, invalid: true})
		if res.status != 400 {
			t.Errorf("Idempotency-Key %.20q: %d", bad, res.status)
		}
	}
}

// decodeStrict never panics, and what it accepts encoding/json decodes to the same
// value with unknown fields disallowed.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{`{"phone":"+66810000002","tags":["a"],"attributes":{"k":"v"}}`, `{"contacts":[{"phone":"1"}]}`,
		`{"phone":`, `{"phone":1}`, `{"a":1}`, `null`, `[]`, `{"tags":null}`, `{"phone":"x","phone":"y"}`, `{} {}`,
		`{"attributes":{"a":{"b":1}}}`, `"\ud800"`, `{"contact_id":4294967295,"at":"2026-03-10T09:00:00Z"}`, `{"max_error_rate":1e309}`} {
		f.Add([]byte(s))
	}
	targets := []func() any{
		func() any { return new(contactRequest) },
		func() any { return new(bulkRequest) },
		func() any { return new(consentRequest) },
		func() any { return new(campaignRequest) },
		func() any { return new(launchRequest) },
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, mk := range targets {
			dst := mk()
			probs := decodeStrict(b, dst)
			if len(probs) > 0 {
				for _, p := range probs {
					if p.Detail == "" || (p.Pointer != "" && p.Pointer[0] != '/') {
						t.Fatalf("problem %+v", p)
					}
				}
				continue
			}
			ref := mk()
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(ref); err != nil {
				t.Fatalf("decodeStrict accepted %q into %T, encoding/json refuses it: %v", b, dst, err)
			}
			if !reflect.DeepEqual(dst, ref) {
				t.Fatalf("%q: decodeStrict gave %+v, encoding/json %+v", b, dst, ref)
			}
		}
	})
}
