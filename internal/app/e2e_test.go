package app

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/templates"
)

func TestMain(m *testing.M) {
	if os.Getenv(childRoleEnv) != "" {
		os.Exit(runChild())
	}
	testenv.Main(m)
}

// testStack runs every role against this test's own Redis prefix, ClickHouse database
// and Kafka, with the sandbox over loopback HTTP.
func testStack(t testing.TB, sc sandbox.Config) (*Stack, context.Context) {
	t.Helper()
	return testStackWith(t, sc, nil)
}

// testStackWith is testStack with a chance to adjust the config and the stack before
// the roles start.
func testStackWith(t testing.TB, sc sandbox.Config, tune func(*Config, *Stack)) (*Stack, context.Context) {
	t.Helper()
	_, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)
	brokers, topics := testenv.Kafka(t, 4)
	cfg := Config{
		KafkaBrokers: brokers, TopicPrefix: strings.TrimSuffix(topics.Outbound, "outbound"),
		RedisURL: "redis://" + testenv.RedisAddr(t) + "/0", Prefix: prefix,
		ClickHouseDSN: testenv.ClickHouseDSN(t, db), Partitions: 4,
	}
	if tune != nil {
		tune(&cfg, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	s, err := NewStack(ctx, cfg, "", sc)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if tune != nil {
		tune(&s.Deps.Cfg, s)
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
	return s, ctx
}

const e2eTemplate = `name: welcome
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

// The walking skeleton: every consented member of the segment gets exactly one message at
// the sandbox, members without consent get none, and the funnel in ClickHouse equals the
// sandbox's own record, with duplicated and reordered status webhooks.
func TestCampaignEndToEnd(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{
		Throughput: 1000, DelayScale: 0.02, ReadRate: 0.5, UndeliverableRate: 0.1, DuplicateRate: 0.2, Seed: 7,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}},
	})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}

	// 120 consented customers, 40 customers who said no, 20 who said nothing, 30 consented
	// prospects outside the segment, and two malformed rows.
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	eligible := map[string]bool{}
	line := 0
	add := func(n int, tags, opted string, want bool) {
		for i := 0; i < n; i++ {
			line++
			phone := fmt.Sprintf("+6681%07d", line)
			fmt.Fprintf(&csv, "%s,Name %d,%s,%s\n", phone, line, tags, opted)
			if want {
				eligible[phone] = true
			}
		}
	}
	add(120, "customer", "yes", true)
	add(40, "customer", "no", false)
	add(20, "customer", "", false)
	add(30, "prospect", "true", false)
	csv.WriteString("not-a-phone,Bad,customer,yes\n+6681999,Short,customer,yes\n")
	rep, err := ImportContacts(ctx, d, &csv, ImportOptions{Source: "e2e.csv"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 210 || rep.Rejected != 2 {
		t.Fatalf("import: %+v", rep)
	}

	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	sender := dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: DevSandboxToken, Rate: 300}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	st, err := comp.Campaigns.Launch(ctx, cp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Audience != 180 || st.Queued != 180 {
		t.Fatalf("launch: audience %d, queued %d; want 180", st.Audience, st.Queued)
	}
	st = waitCompleted(t, ctx, comp.Campaigns, cp.ID)
	if st.Sent != 120 || st.Skipped != 60 || st.Failed != 0 || st.Done != 180 {
		t.Fatalf("status: sent %d skipped %d failed %d done %d; want 120/60/0/180", st.Sent, st.Skipped, st.Failed, st.Done)
	}
	// Launching again is a no-op.
	again, err := comp.Campaigns.Launch(ctx, cp.ID, nil)
	if err != nil || again.Queued != 180 || again.State != dispatcher.Completed {
		t.Fatalf("relaunch: %+v, %v", again, err)
	}

	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if err := waitSink(wctx, d); err != nil {
		t.Fatal(err)
	}

	// Exactly one message per consented member, none to anyone else.
	got := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		if !strings.HasPrefix(r.CallbackData, cp.ID+":") {
			t.Errorf("record without this campaign's callback data: %+v", r)
			continue
		}
		got[r.To]++
		if r.TemplateName != "welcome_offer" {
			t.Errorf("sent template %q, want welcome_offer", r.TemplateName)
		}
	}
	for phone := range eligible {
		if got[phone] != 1 {
			t.Errorf("%s received %d messages, want exactly 1", phone, got[phone])
		}
	}
	for phone, n := range got {
		if !eligible[phone] {
			t.Errorf("%s received %d messages without consent or outside the segment", phone, n)
		}
	}

	conn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := analytics.Funnel(ctx, conn, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	truth := SandboxTruth(s.Sandbox.Records(), cp.ID)
	if truth.Accepted != 120 || truth.Failed == 0 || truth.Read == 0 {
		t.Fatalf("sandbox truth looks wrong for this scenario: %+v", truth)
	}
	if err := truth.Check(f); err != nil {
		t.Fatalf("funnel %+v vs sandbox %+v: %v", f.Steps, truth, err)
	}
	steps := map[string]uint64{}
	for _, s := range f.Steps {
		steps[s.Name] = s.Contacts
	}
	if steps["queued"] != 180 || steps["sent"] != 120 {
		t.Fatalf("funnel steps %v: want queued 180, sent 120", steps)
	}
	var skipped uint64
	for _, r := range f.Skipped {
		if r.Reason != "no_consent" {
			t.Errorf("unexpected skip reason %q", r.Reason)
		}
		skipped += r.Contacts
	}
	if skipped != 60 {
		t.Fatalf("skipped in ClickHouse = %d, want 60", skipped)
	}
	// The chosen variant travels on every event after rendering, the webhook statuses too.
	var noVariant, withVariant uint64
	if err := conn.QueryRow(ctx, "SELECT countIf(variant = ''), countIf(variant != '') FROM events WHERE campaign_id = ? AND kind IN ('sent', 'delivered', 'read', 'failed', 'skipped')", cp.ID).Scan(&noVariant, &withVariant); err != nil {
		t.Fatal(err)
	}
	if noVariant != 0 || withVariant == 0 {
		t.Fatalf("%d events without a variant, %d with", noVariant, withVariant)
	}
	// The consent audit, from ClickHouse alone: every send had a valid grant at send time.
	audit, err := analytics.AuditCampaign(ctx, conn, cp.ID, "marketing")
	if err != nil {
		t.Fatal(err)
	}
	if audit.Sent != 120 || len(audit.Violations) != 0 {
		t.Fatalf("audit: %d sends checked, violations %+v; want 120 and none", audit.Sent, audit.Violations)
	}
}

func waitCompleted(t testing.TB, ctx context.Context, c *dispatcher.Campaigns, id string) dispatcher.Status {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := c.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == dispatcher.Completed {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign %s not completed: %+v", id, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const linkTemplate = `name: sale_link
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: sale_link
  language: en_US
  category: MARKETING
  body:
    first_name: "{{ name | default: 'friend' }}"
    link: "https://shop.example.com/sale?ref=wa"
variables:
  name: {type: string, default: ""}
`

// Tracked links: the provider receives signed redirector links, a click redirects to the
// real URL and lands one clicked event per contact and link in ClickHouse.
func TestTrackedLinksEndToEnd(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{Throughput: 1000, DelayScale: 0.02, Seed: 3,
		Templates: []sandbox.ApprovedTemplate{{Name: "sale_link", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name", "link"}}}})
	d := s.Deps
	comp := seedAudience(t, ctx, d, 20, linkTemplate)
	cp := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "sale_link", TrackLinks: true}, 500, "s")
	if st := waitCompleted(t, ctx, comp.Campaigns, cp.ID); st.Sent != 20 {
		t.Fatalf("status %+v", st)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	clicked := 0
	for i, r := range s.Sandbox.Records() {
		if len(r.Params) != 2 || !strings.HasPrefix(r.Params[1], s.ServeURL+"/c/") {
			t.Fatalf("the provider got %q, not a tracked link on %s", r.Params, s.ServeURL)
		}
		if i >= 5 {
			continue
		}
		for k := 0; k < 2; k++ { // a second click by the same person counts once
			resp, err := noFollow.Get(r.Params[1])
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://shop.example.com/sale?ref=wa" {
				t.Fatalf("click: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		clicked++
	}
	forged := s.ServeURL + "/c/" + "AAAA" + strings.Repeat("x", 40)
	if resp, err := noFollow.Get(forged); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("forged link: %v, %v", resp, err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitSink(wctx, d); err != nil {
		t.Fatal(err)
	}
	conn, _ := d.ClickHouse(ctx)
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExact(contact_id) FROM events WHERE campaign_id = ? AND kind = 'clicked'", cp.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != uint64(clicked) {
		t.Fatalf("ClickHouse has %d clicking contacts, want %d", n, clicked)
	}
}
