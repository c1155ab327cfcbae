package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/templates"
)

// A CRM's whole session over the API, on every role of a real stack (serve with the
// API, worker, sink, the WhatsApp sandbox; real Redis, ClickHouse and kfake): it
// upserts contacts in bulk, records their consent, creates a campaign, launches it with
// a marketer's key that may launch, follows the progress stream to completion, reads
// the funnel (which must equal the sandbox's record), and an auditor finds every call.
func TestAPIEndToEnd(t *testing.T) {
	_, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)
	brokers, topics := testenv.Kafka(t, 4)
	cfg := app.Config{KafkaBrokers: brokers, TopicPrefix: strings.TrimSuffix(topics.Outbound, "outbound"),
		RedisURL: "redis://" + testenv.RedisAddr(t) + "/0", Prefix: prefix, ClickHouseDSN: testenv.ClickHouseDSN(t, db), Partitions: 4,
		API: Handler, APIRate: 500, APIBurst: 500}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	s, err := app.NewStack(ctx, cfg, "", sandbox.Config{Throughput: 1000, DelayScale: 0.02, ReadRate: 0.5, Seed: 11,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stack: %v", err)
		}
		s.Close()
	})
	comp, err := s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, d: s.Deps, comp: comp, base: s.ServeURL, keys: map[string]string{}, ids: map[string]string{}}
	_, e.router = loadSpec(t)
	e.addKeys()
	waitFor(t, 30*time.Second, "serve", func() bool {
		return e.do(req{method: "GET", path: "/v1/openapi.json"}).status == 200
	})

	// What the API does not write yet: the template and the sender.
	tpl, err := templates.ParseFile([]byte(testTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(testTemplate)); err != nil {
		t.Fatal(err)
	}
	sender := dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: app.DevSandboxToken, Rate: 500}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		t.Fatal(err)
	}
	var senders page[dispatcher.Sender]
	e.do(req{method: "GET", path: "/v1/senders", key: "launcher"}).decode(t, &senders)
	var tpls page[templates.Summary]
	e.do(req{method: "GET", path: "/v1/templates", key: "launcher"}).decode(t, &tpls)
	if len(senders.Items) != 1 || senders.Items[0].ID != sender.ID || len(tpls.Items) != 1 || tpls.Items[0].Name != "welcome" {
		t.Fatalf("senders %+v, templates %+v", senders, tpls)
	}
	if bytes.Contains(e.do(req{method: "GET", path: "/v1/senders", key: "admin"}).body, []byte(app.DevSandboxToken)) {
		t.Fatal("GET /v1/senders shows a sender's token")
	}

	// 30 customers in one bulk upsert, two bad rows rejected by index.
	var contacts []map[string]any
	for i := range 30 {
		contacts = append(contacts, map[string]any{"phone": fmt.Sprintf("+6682%07d", i+1), "name": fmt.Sprintf("Customer %d", i+1), "tags": []string{"customer"}})
	}
	contacts = append(contacts[:10], append([]map[string]any{{"phone": "12"}, {"name": "no identity"}}, contacts[10:]...)...)
	var bulk app.BulkUpsertResult
	res := e.do(req{method: "POST", path: "/v1/contacts:bulk", key: "launcher", body: map[string]any{"contacts": contacts},
		header: map[string]string{"Idempotency-Key": "import-1"}})
	res.decode(t, &bulk)
	if bulk.Received != 32 || bulk.Upserted != 30 || bulk.Rejected != 2 || bulk.Rejects[0].Index != 10 || bulk.Rejects[1].Index != 11 ||
		bulk.Rejects[0].Field != "phone" || bulk.ContactIDs[10] != 0 || bulk.ContactIDs[12] == 0 {
		t.Fatalf("bulk: %s", res.body)
	}
	// Consent for 20 of them; the other 10 said nothing.
	for i := range 20 {
		var cr consentResult
		e.do(req{method: "POST", path: "/v1/consent", key: "launcher", body: map[string]any{"phone": fmt.Sprintf("+6682%07d", i+1),
			"action": "grant", "source": "web_form", "wording": "Yes, send me offers on WhatsApp", "ip": "203.0.113.7"}}).decode(t, &cr)
		if len(cr.Records) != 1 || cr.Records[0].Action != events.Grant || !strings.Contains(cr.Records[0].Actor, e.ids["launcher"]) {
			t.Fatalf("consent: %+v", cr)
		}
	}
	var rows page[app.ConsentRow]
	e.do(req{method: "GET", path: fmt.Sprintf("/v1/contacts/%d/consent?channel=whatsapp", bulk.ContactIDs[0]), key: "auditor"}).decode(t, &rows)
	if len(rows.Items) != 2 || !rows.Items[0].Granted || rows.Items[0].Purpose != "marketing" || rows.Items[1].Granted {
		t.Fatalf("consent of contact %d: %+v", bulk.ContactIDs[0], rows)
	}

	// The campaign: created by a marketer, refused to one that may not launch, launched by one that may.
	var cp dispatcher.Campaign
	res = e.do(req{method: "POST", path: "/v1/campaigns", key: "marketer", body: map[string]any{"name": "spring", "segment": "customer",
		"template": "welcome", "senders": []string{sender.ID}}})
	res.decode(t, &cp)
	if res.status != 201 || res.header.Get("Location") != "/v1/campaigns/"+cp.ID {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	if res := e.do(req{method: "POST", path: "/v1/campaigns/" + cp.ID + "/launch", key: "marketer"}); res.status != 403 {
		t.Fatalf("launch without campaigns:launch: %d", res.status)
	}
	var st dispatcher.Status
	launch := e.do(req{method: "POST", path: "/v1/campaigns/" + cp.ID + "/launch", key: "launcher", header: map[string]string{"Idempotency-Key": "launch-" + cp.ID}})
	launch.decode(t, &st)
	if st.Audience != 30 || st.Queued != 30 {
		t.Fatalf("launch: %s", launch.body)
	}

	// Progress as Server-Sent Events until the campaign completes.
	stream := e.do(req{method: "GET", path: "/v1/campaigns/" + cp.ID + "/progress", key: "analyst"})
	if ct := stream.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("progress: %d %q", stream.status, ct)
	}
	evs := parseSSE(t, stream.body)
	if len(evs) < 2 || evs[len(evs)-1].name != "complete" {
		t.Fatalf("progress stream: %d events, last %+v", len(evs), evs[len(evs)-1])
	}
	last := evs[len(evs)-1].status
	if last.State != dispatcher.Completed || last.Sent != 20 || last.Skipped != 10 || last.Done != 30 {
		t.Fatalf("completed with %+v", last)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].status.Done < evs[i-1].status.Done {
			t.Fatalf("progress went back: %d then %d", evs[i-1].status.Done, evs[i].status.Done)
		}
	}

	// The funnel, once the sandbox's last webhook and the sink are through, equals the sandbox's record.
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if err := analytics.WaitCaughtUp(wctx, brokers, analytics.DefaultSinkGroup, s.Deps.Topics.Events, s.Deps.Topics.Consent, s.Deps.Topics.Audit); err != nil {
		t.Fatal(err)
	}
	var f analytics.FunnelReport
	e.do(req{method: "GET", path: "/v1/reports/funnel?campaign=" + cp.ID, key: "analyst"}).decode(t, &f)
	if f.Steps[0].Contacts != 30 || f.Steps[1].Contacts != 20 {
		t.Fatalf("funnel %+v", f)
	}
	if err := app.SandboxTruth(s.Sandbox.Records(), cp.ID).Check(f); err != nil {
		t.Fatalf("funnel %+v vs the sandbox: %v", f.Steps, err)
	}
	var by analytics.FunnelByReport
	e.do(req{method: "GET", path: "/v1/reports/funnel?campaign=" + cp.ID + "&by=sender", key: "analyst"}).decode(t, &by)
	if len(by.Groups) != 1 || by.Groups[0].Key != sender.ID {
		t.Fatalf("funnel by sender %+v", by)
	}

	// The compliance audit: the campaign's proof, a contact's ledger with its chain
	// verified, and the export of every sent message, as the CLI's audit gives them.
	var proof analytics.AuditReport
	e.do(req{method: "GET", path: "/v1/audit/campaigns/" + cp.ID, key: "auditor"}).decode(t, &proof)
	if proof.Sent != 20 || len(proof.Violations) != 0 || proof.Purpose != "marketing" {
		t.Fatalf("campaign proof %+v", proof)
	}
	var ca analytics.ContactAudit
	e.do(req{method: "GET", path: fmt.Sprintf("/v1/audit/contacts/%d", bulk.ContactIDs[0]), key: "auditor"}).decode(t, &ca)
	// (A sent event settled by the webhook is stored twice under one id until ClickHouse
	// merges them; the audit may list both: count ids.)
	sentIDs := map[string]bool{}
	for _, m := range ca.Messages {
		sentIDs[m.EventID] = true
	}
	if !ca.ChainOK() || len(ca.Consent) != 1 || len(sentIDs) != 1 || ca.Messages[0].CampaignID != cp.ID {
		t.Fatalf("contact audit %+v", ca)
	}
	day := time.Now().UTC().Format(time.DateOnly)
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	export := e.do(req{method: "GET", path: "/v1/audit/export?from=" + day + "&to=" + tomorrow, key: "auditor"})
	lines := strings.Split(strings.TrimSpace(string(export.body)), "\n")
	exported := map[string]bool{}
	for _, l := range lines {
		var r analytics.SentRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.CampaignID != cp.ID || r.ConsentRef == "" {
			t.Fatalf("export line %s: %v", l, err)
		}
		exported[r.EventID] = true
	}
	if export.header.Get("Content-Type") != "application/x-ndjson" || len(exported) != 20 {
		t.Fatalf("export: %q, %d messages\n%s", export.header.Get("Content-Type"), len(exported), export.body)
	}
	var want bytes.Buffer
	if err := app.ExportSent(ctx, mustConn(t, e), time.Now().UTC().Truncate(24*time.Hour), time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 1),
		func(r analytics.SentRecord) error { b, _ := marshal(r); want.Write(b); return nil }); err != nil {
		t.Fatal(err)
	}
	uniq := func(b string) string { // a merge in between may drop duplicates
		ls := strings.Split(strings.TrimSpace(b), "\n")
		slices.Sort(ls)
		return strings.Join(slices.Compact(ls), "\n")
	}
	if uniq(want.String()) != uniq(string(export.body)) {
		t.Fatalf("the export is not the CLI's:\n%s\nwant\n%s", export.body, want.String())
	}
	csvExport := e.do(req{method: "GET", path: "/v1/audit/export?format=csv&from=" + day + "&to=" + tomorrow, key: "auditor"})
	if n := strings.Count(string(csvExport.body), "\n"); n != len(lines)+1 || !strings.HasPrefix(string(csvExport.body), "event_id,") {
		t.Fatalf("csv export: %d lines\n%s", n, csvExport.body)
	}
	if res := e.do(req{method: "GET", path: "/v1/audit/campaigns/" + cp.ID, key: "marketer"}); res.status != 403 {
		t.Fatalf("a marketer read the audit: %d", res.status)
	}

	// The audit: every mutating call, with its key, role, route, resource, request id and status.
	var calls []events.APICall
	cur := ""
	for range 20 {
		path := "/v1/audit/api?limit=10"
		if cur != "" {
			path += "&cursor=" + url.QueryEscape(cur)
		}
		var p page[events.APICall]
		e.do(req{method: "GET", path: path, key: "auditor"}).decode(t, &p)
		calls = append(calls, p.Items...)
		if cur = p.NextCursor; cur == "" {
			break
		}
	}
	// bulk, 20 consents, create, refused launch, launch
	if len(calls) != 24 {
		t.Fatalf("%d audit records, want 24", len(calls))
	}
	var launched, refused *events.APICall
	for i := range calls {
		c := &calls[i]
		if i > 0 && c.Time.After(calls[i-1].Time) {
			t.Fatalf("audit not newest first at %d", i)
		}
		if c.Route == "POST /v1/campaigns/{id}/launch" && c.Status == 200 {
			launched = c
		}
		if c.Route == "POST /v1/campaigns/{id}/launch" && c.Status == 403 {
			refused = c
		}
	}
	if launched == nil || launched.KeyID != e.ids["launcher"] || launched.Role != "marketer" || launched.ResourceID != cp.ID ||
		launched.RequestID != launch.header.Get("X-Request-Id") || launched.IdempotencyKey != "launch-"+cp.ID {
		t.Fatalf("launch audit record %+v", launched)
	}
	if refused == nil || refused.KeyID != e.ids["marketer"] {
		t.Fatalf("refused launch audit record %+v", refused)
	}
	var mine page[events.APICall]
	e.do(req{method: "GET", path: "/v1/audit/api?resource_id=" + cp.ID, key: "admin"}).decode(t, &mine)
	if len(mine.Items) != 3 { // create, refused launch, launch
		t.Fatalf("audit of campaign %s: %+v", cp.ID, mine.Items)
	}
}

func mustConn(t testing.TB, e *env) driver.Conn {
	t.Helper()
	conn, err := e.d.ClickHouse(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

type sseEvent struct {
	name   string
	status dispatcher.Status
}

func parseSSE(t testing.TB, b []byte) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	var data string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != "" {
				if err := json.Unmarshal([]byte(data), &cur.status); err != nil {
					t.Fatalf("event data %q: %v", data, err)
				}
				out = append(out, cur)
			}
			cur, data = sseEvent{}, ""
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
	return out
}
