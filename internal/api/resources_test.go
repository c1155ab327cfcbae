package api

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
)

// Tags over the API: by ids, phones/emails, a JSON file, a text/plain upload and a
// segment; what the CLI's use case reports, the counts the tag library then has, and
// running it again changes nothing.
func TestTagsAndSegments(t *testing.T) {
	e := newEnv(t)
	if _, err := e.comp.Contacts.Upsert(e.ctx, []segments.Contact{
		{Phone: "+66810000001", Name: "Ann", Tags: []string{"vip"}},
		{Phone: "+66810000002", Name: "Bob", Email: "bob@example.com", Tags: []string{"vip"}},
		{Phone: "+66810000003", Name: "Cat"},
	}); err != nil {
		t.Fatal(err)
	}
	var res app.TagResult
	r := e.do(req{method: "POST", path: "/v1/tags/gold:add", key: "marketer", body: map[string]any{"contact_ids": []int{1, 3, 99}}})
	r.decode(t, &res)
	if r.status != 200 || res.Change.Matched != 2 || res.Change.Changed != 2 || len(res.Rejected) != 1 || res.Rejected[0].Line != 3 {
		t.Fatalf("by ids: %d %s", r.status, r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/tags/gold:add", key: "marketer", body: map[string]any{"contact_ids": []int{1, 3}}})
	r.decode(t, &res)
	if res.Change.Changed != 0 || len(res.Rejected) != 0 {
		t.Fatalf("again: %s", r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/tags/gold:remove", key: "marketer", body: map[string]any{"phones": []string{"0810000001", "nope"}, "default_region": "TH"}})
	r.decode(t, &res)
	if res.Change.Changed != 1 || res.Change.Added || len(res.Rejected) != 1 || res.Rejected[0].Reason != "invalid phone" {
		t.Fatalf("remove by phone: %s", r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/tags/silver:add", key: "marketer", body: map[string]any{"file": "phone\n+66810000003\n# note\nbob@example.com\n+66819999999\n"}})
	r.decode(t, &res)
	if res.Change.Changed != 2 || len(res.Rejected) != 1 || res.Rejected[0].Line != 5 || res.Rejected[0].Reason != "no such contact" {
		t.Fatalf("by file: %s", r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/tags/bronze:add?default_region=TH", key: "marketer", body: "0810000002\n", header: map[string]string{"Content-Type": "text/plain"}})
	r.decode(t, &res)
	if r.status != 200 || res.Change.Changed != 1 {
		t.Fatalf("text/plain upload: %d %s", r.status, r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/tags/winback:add", key: "marketer", body: map[string]any{"segment": "not vip"}})
	r.decode(t, &res)
	if res.Change.Changed != 1 {
		t.Fatalf("by segment: %s", r.body)
	}
	var tags page[segments.TagCount]
	e.do(req{method: "GET", path: "/v1/tags", key: "marketer"}).decode(t, &tags)
	want := map[string]uint64{"bronze": 1, "gold": 1, "silver": 2, "vip": 2, "winback": 1}
	got := map[string]uint64{}
	for _, tc := range tags.Items {
		got[tc.Name] = tc.Count
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("tag %s: %d contacts, want %d (%v)", k, got[k], v, got)
		}
	}

	// Refusals point at the field and change nothing.
	before := e.storeDigest()
	for _, bad := range []struct {
		body    any
		pointer string
		status  int
	}{
		{map[string]any{"contact_ids": []int{1}, "segment": "vip"}, "/contact_ids", 422},
		{map[string]any{"segment": "vip and ("}, "/segment", 422},
		{map[string]any{"contact_ids": []int{0}}, "/contact_ids/0", 422},
		{map[string]any{}, "/contact_ids", 422},
		{map[string]any{"phones": []string{"0810000001"}, "default_region": "XX"}, "/default_region", 422},
	} {
		r := e.do(req{method: "POST", path: "/v1/tags/gold:add", key: "marketer", body: bad.body, invalid: true})
		if p := r.problem(t); r.status != bad.status || len(p.Errors) == 0 || p.Errors[0].Pointer != bad.pointer {
			t.Errorf("%v: %d %s, want %d at %s", bad.body, r.status, r.body, bad.status, bad.pointer)
		}
	}
	r = e.do(req{method: "POST", path: "/v1/tags/%C3%A9t%C3%A9:add", key: "marketer", body: map[string]any{"contact_ids": []int{1}}})
	if p := r.problem(t); r.status != 422 || p.Errors[0].Pointer != "/tag" {
		t.Errorf("bad tag name: %d %s", r.status, r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/tags/gold:rename", key: "marketer", body: map[string]any{}, invalid: true})
	if r.status != 404 {
		t.Errorf("unknown verb: %d %s", r.status, r.body)
	}
	if e.storeDigest() != before {
		t.Fatal("a refused tag change changed the store")
	}
	if r := e.do(req{method: "POST", path: "/v1/tags/gold:add", key: "analyst", body: map[string]any{"contact_ids": []int{1}}}); r.status != 403 {
		t.Fatalf("an analyst tagged: %d", r.status)
	}

	// Segments: the count with its terms, and the preview's sample.
	var sc segmentCount
	r = e.do(req{method: "GET", path: "/v1/segments/count?expr=" + url.QueryEscape("vip or silver"), key: "marketer"})
	r.decode(t, &sc)
	n, err := e.comp.Contacts.Count(e.ctx, "vip or silver")
	if err != nil {
		t.Fatal(err)
	}
	if sc.Count != n || n != 3 || len(sc.Terms) != 2 || sc.Terms[0].Term != "vip" || sc.Terms[0].Count != 2 || sc.Terms[1].Count != 2 {
		t.Fatalf("count: %s (the store says %d)", r.body, n)
	}
	var sp segmentPreview
	r = e.do(req{method: "GET", path: "/v1/segments/preview?limit=2&expr=" + url.QueryEscape("vip or nosuchtag"), key: "marketer"})
	r.decode(t, &sp)
	if sp.Count != 2 || len(sp.Sample) != 2 || sp.Sample[0].Name != "Ann" || len(sp.Warnings) != 1 {
		t.Fatalf("preview: %s", r.body)
	}
	r = e.do(req{method: "GET", path: "/v1/segments/count?expr=" + url.QueryEscape("vip and"), key: "marketer"})
	if p := r.problem(t); r.status != 400 || p.Errors[0].Parameter != "expr" {
		t.Fatalf("bad expr: %d %s", r.status, r.body)
	}
}

const apiTemplate = `name: promo
channel: whatsapp
locale: en_US
kind: text
body: "Hi {{ name }}, a gift is yours"
variables:
  name: {type: string}
`

// Templates over the API: create (and a new version), the refusal with its line,
// validate with the coverage check, show with versions, and a preview for a contact and
// for a sample, as the CLI renders them.
func TestTemplates(t *testing.T) {
	e := newEnv(t)
	if _, err := e.comp.Contacts.Upsert(e.ctx, []segments.Contact{
		{Phone: "+66810000001", Name: "Ann", Tags: []string{"vip"}},
		{Phone: "+66810000002", Tags: []string{"vip"}},
		{Phone: "+66810000003", Name: "Cat"},
	}); err != nil {
		t.Fatal(err)
	}
	var saved app.TemplateSaved
	r := e.do(req{method: "POST", path: "/v1/templates", key: "marketer", body: map[string]any{"source": apiTemplate}})
	r.decode(t, &saved)
	if r.status != 201 || saved.Name != "promo" || saved.Version != 1 || r.header.Get("Location") != "/v1/templates/promo" {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/templates", key: "marketer", body: map[string]any{"source": strings.Replace(apiTemplate, "Hi", "Hello", 1)}})
	r.decode(t, &saved)
	if saved.Version != 2 {
		t.Fatalf("new version: %s", r.body)
	}
	before := e.storeDigest()
	r = e.do(req{method: "POST", path: "/v1/templates", key: "marketer", body: map[string]any{"source": "name: x\nchannel: whatsapp\nkind: text\ntext: \"{{ oops \"\n", "file": "x.yaml"}})
	if p := r.problem(t); r.status != 422 || p.Errors[0].Pointer != "/source" || !strings.Contains(p.Errors[0].Detail, "line") {
		t.Fatalf("bad template: %d %s", r.status, r.body)
	}
	if e.storeDigest() != before {
		t.Fatal("a refused template changed the store")
	}
	var rep app.TemplateValidation
	r = e.do(req{method: "POST", path: "/v1/templates:validate", key: "analyst", body: map[string]any{"source": apiTemplate, "segment": "vip"}})
	r.decode(t, &rep)
	if r.status != 200 || rep.Valid || rep.Sampled != 2 || len(rep.Coverage) != 1 || rep.Coverage[0].Variable != "name" || rep.Coverage[0].Missing != 1 {
		t.Fatalf("coverage: %s", r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/templates:validate", key: "analyst", body: map[string]any{"source": apiTemplate}})
	r.decode(t, &rep)
	if !rep.Valid || rep.Name != "promo" {
		t.Fatalf("validate: %s", r.body)
	}
	var show app.TemplateShow
	r = e.do(req{method: "GET", path: "/v1/templates/promo?version=1", key: "analyst"})
	r.decode(t, &show)
	if show.Summary.Version != 1 || len(show.Versions) != 2 || show.Source != apiTemplate {
		t.Fatalf("show: %s", r.body)
	}
	if r := e.do(req{method: "GET", path: "/v1/templates/nope", key: "analyst"}); r.status != 404 {
		t.Fatalf("unknown template: %d", r.status)
	}
	var pv page[app.TemplatePreview]
	r = e.do(req{method: "POST", path: "/v1/templates/promo/preview", key: "marketer", body: map[string]any{"contact_id": 1}})
	r.decode(t, &pv)
	if r.status != 200 || len(pv.Items) != 1 || pv.Items[0].Rendered.Text != "Hello Ann, a gift is yours" || pv.Items[0].Request == nil {
		t.Fatalf("preview: %d %s", r.status, r.body)
	}
	want, err := app.PreviewTemplate(e.ctx, e.comp, "promo", []uint32{1}, app.PreviewOptions{})
	if err != nil || want[0].Rendered.Text != pv.Items[0].Rendered.Text {
		t.Fatalf("the CLI's use case renders %+v, %v", want, err)
	}
	r = e.do(req{method: "POST", path: "/v1/templates/promo/preview", key: "marketer", body: map[string]any{"sample": 5}})
	r.decode(t, &pv)
	if len(pv.Items) != 3 {
		t.Fatalf("sample: %s", r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/templates/promo/preview", key: "marketer", body: map[string]any{"sample": 1, "segment": "vip", "version": 1}})
	r.decode(t, &pv)
	if len(pv.Items) != 1 || pv.Items[0].Rendered.Version != 1 || !strings.HasPrefix(pv.Items[0].Rendered.Text, "Hi ") {
		t.Fatalf("sample of a segment at version 1: %s", r.body)
	}
	for _, bad := range []map[string]any{{}, {"contact_id": 1, "sample": 2}, {"contact_id": 42}} {
		r := e.do(req{method: "POST", path: "/v1/templates/promo/preview", key: "marketer", body: bad, invalid: true})
		if p := r.problem(t); r.status != 422 || p.Errors[0].Pointer != "/contact_id" {
			t.Errorf("preview %v: %d %s", bad, r.status, r.body)
		}
	}
}

// Senders over the API: an admin creates one (its token never comes back), reads the
// governor, holds and resumes it; a marketer may not.
func TestSendersAndDryRun(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	var s dispatcher.Sender
	r := e.do(req{method: "POST", path: "/v1/senders", key: "admin", body: map[string]any{"phone_number_id": "555", "token": "s3cret-token", "rate": 50, "countries": []string{"th"}, "per_hour": 1000}})
	r.decode(t, &s)
	if r.status != 201 || s.ID != "555" || s.Rate != 50 || s.Countries[0] != "TH" || s.PerHour != 1000 || strings.Contains(string(r.body), "s3cret") {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	got, err := e.comp.Senders.Get(e.ctx, "555")
	if err != nil || got.Token != "s3cret-token" {
		t.Fatalf("stored %+v, %v", got, err)
	}
	r = e.do(req{method: "POST", path: "/v1/senders", key: "admin", body: map[string]any{"id": "x", "channel": "pigeon", "token": "t"}, invalid: true})
	if p := r.problem(t); r.status != 422 || p.Errors[0].Pointer != "/channel" {
		t.Fatalf("bad channel: %d %s", r.status, r.body)
	}
	if r := e.do(req{method: "POST", path: "/v1/senders", key: "marketer", body: map[string]any{"id": "y", "token": "t", "phone_number_id": "1"}}); r.status != 403 {
		t.Fatalf("a marketer created a sender: %d", r.status)
	}
	var st app.SenderState
	e.do(req{method: "GET", path: "/v1/senders/555/governor", key: "analyst"}).decode(t, &st)
	if st.Sender.ID != "555" || st.Governor.Factor != 1 || !st.Governor.HeldUntil.IsZero() {
		t.Fatalf("governor: %+v", st)
	}
	until := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	r = e.do(req{method: "POST", path: "/v1/senders/555/hold", key: "admin", body: map[string]any{"until": until}})
	r.decode(t, &st)
	if d := st.Governor.HeldUntil.Sub(until); r.status != 200 || d < -time.Second || d > time.Second {
		t.Fatalf("hold: %d %s", r.status, r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/senders/555/resume", key: "admin"})
	st = app.SenderState{}
	r.decode(t, &st)
	if r.status != 200 || !st.Governor.HeldUntil.IsZero() {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	if r := e.do(req{method: "GET", path: "/v1/senders/nope/governor", key: "analyst"}); r.status != 404 {
		t.Fatalf("unknown sender: %d", r.status)
	}

	// The dry run is the CLI's, and changes nothing.
	before := e.storeDigest()
	var dr struct {
		Campaign  string  `json:"campaign_id"`
		Audience  uint64  `json:"audience"`
		WouldSend uint64  `json:"would_send"`
		ETAMS     float64 `json:"eta_ms"`
	}
	r = e.do(req{method: "POST", path: "/v1/campaigns/1/dry-run", key: "analyst"})
	r.decode(t, &dr)
	want, err := app.DryRun(e.ctx, e.comp, "1")
	if err != nil {
		t.Fatal(err)
	}
	if r.status != 200 || dr.Campaign != "1" || dr.Audience != 1 || dr.Audience != want.Audience || dr.WouldSend != want.WouldSend {
		t.Fatalf("dry run: %d %s, the use case says %+v", r.status, r.body, want)
	}
	if e.storeDigest() != before {
		t.Fatal("the dry run changed the store")
	}
	if r := e.do(req{method: "POST", path: "/v1/campaigns/9/dry-run", key: "analyst"}); r.status != 404 {
		t.Fatalf("unknown campaign: %d", r.status)
	}
}

// Conversions over the API: recorded one by one with the CLI's use case, rejects by
// index and field, the same order twice the same event.
func TestConversions(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	body := map[string]any{"conversions": []map[string]any{
		{"phone": "+66810000001", "order_id": "o-1", "value": 120.5, "currency": "THB"},
		{"phone": "+66819999999", "order_id": "o-2", "value": 1, "currency": "THB"},
		{"phone": "+66810000001", "order_id": "o-3", "value": 5, "currency": "baht"},
		{"phone": "+66810000001", "order_id": "o-1", "value": 120.5, "currency": "THB"},
	}, "window": "48h"}
	var res app.ConversionsResult
	r := e.do(req{method: "POST", path: "/v1/conversions", key: "marketer", body: body})
	r.decode(t, &res)
	if r.status != 200 || res.Received != 4 || res.Recorded != 2 || res.Rejected != 2 || res.Rejects[0].Index != 1 || res.Rejects[0].Field != "phone" ||
		res.Rejects[1].Index != 2 || res.Rejects[1].Field != "currency" {
		t.Fatalf("conversions: %d %s", r.status, r.body)
	}
	if res.Results[0].EventID != res.Results[1].EventID || res.Results[0].ContactID != 1 || res.Results[0].Attributed {
		t.Fatalf("the same order twice: %s", r.body)
	}
	for _, bad := range []map[string]any{{"conversions": []any{}}, {"conversions": []map[string]any{{"phone": "+66810000001", "order_id": "x", "value": 1, "currency": "THB"}}, "window": "soon"}} {
		r := e.do(req{method: "POST", path: "/v1/conversions", key: "marketer", body: bad, invalid: true})
		if r.status != 422 {
			t.Errorf("%v: %d %s", bad, r.status, r.body)
		}
	}
	if r := e.do(req{method: "POST", path: "/v1/conversions", key: "analyst", body: body}); r.status != 403 {
		t.Fatalf("an analyst recorded conversions: %d", r.status)
	}
}
