package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

const smsTemplate = "name: sms_sale\nchannel: sms\nlocale: en_US\nkind: text\nbody: \"Hi {{ name | default: 'there' }}, 20% off today. Reply STOP to opt out.\"\nvariables:\n  name: {type: string, default: \"\"}\n"

// An SMS campaign end to end: the worker sends through the Twilio-style sandbox, its
// signed status callbacks come back to serve and land in ClickHouse, and the funnel
// equals the sandbox's record; contacts without SMS consent are skipped, numbers the
// carrier cannot reach are suppressed, and a texted STOP revokes SMS marketing.
func TestSMSCampaignEndToEnd(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{DelayScale: 0.01, UndeliverableRate: 0.1, Seed: 9})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	var csv strings.Builder
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := range n {
		fmt.Fprintf(&csv, "+1415555%04d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, strings.NewReader(csv.String()), ImportOptions{Source: "sms.csv"}); err != nil {
		t.Fatal(err)
	}
	// The import's consent is WhatsApp's; SMS consent is its own: grant it to all but 10.
	var changes []throttle.Change
	for i := range n - 10 {
		id, err := comp.Contacts.LookupPhone(ctx, fmt.Sprintf("+1415555%04d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, throttle.Change{ContactID: id, Channel: "sms", Purpose: "marketing", Action: events.Grant, Source: "web_form"})
	}
	if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(smsTemplate), "sms_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(smsTemplate)); err != nil {
		t.Fatal(err)
	}
	sender := dispatcher.Sender{ID: "us-tollfree", Channel: "sms", Token: DevSMSToken, Rate: 50,
		Settings: map[string]string{"account_sid": DevSMSAccount, "from": "+18005550100", "sender_type": "short_code"}}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "sms_sale", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Channel != "sms" {
		t.Fatalf("campaign channel %q, want sms (its sender's)", cp.Channel)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := waitCompleted(t, ctx, comp.Campaigns, cp.ID)
	if st.Sent != n-10 || st.Skipped != 10 {
		t.Fatalf("status %+v: want %d sent, 10 skipped without SMS consent", st, n-10)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.SMSSandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if err := waitSink(wctx, d); err != nil {
		t.Fatal(err)
	}
	recs := s.SMSSandbox.Records()
	var delivered, undelivered uint64
	seen := map[string]int{}
	for _, r := range recs {
		if !strings.HasPrefix(r.CallbackData, cp.ID+":") {
			continue
		}
		seen[r.To]++
		switch r.Final {
		case "delivered":
			delivered++
		case "undelivered", "failed":
			undelivered++
		}
	}
	if len(seen) != n-10 {
		t.Fatalf("the sandbox got messages for %d numbers, want %d", len(seen), n-10)
	}
	for to, c := range seen {
		if c != 1 {
			t.Errorf("%s got %d messages", to, c)
		}
	}
	if undelivered == 0 {
		t.Fatal("scenario: no undeliverable numbers")
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := analytics.Funnel(ctx, conn, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]uint64{}
	for _, s := range f.Steps {
		steps[s.Name] = s.Contacts
	}
	if steps["sent"] != uint64(n-10) || steps["delivered"] != delivered {
		t.Fatalf("funnel %v; the sandbox: %d accepted, %d delivered", steps, n-10, delivered)
	}
	var failed uint64
	for _, c := range f.Failed {
		failed += c.Contacts
	}
	if failed != undelivered {
		t.Fatalf("failed in ClickHouse %d, undelivered at the sandbox %d", failed, undelivered)
	}
	audit, err := analytics.AuditCampaign(ctx, conn, cp.ID, "marketing")
	if err != nil || len(audit.Violations) != 0 || audit.Sent != uint64(n-10) {
		t.Fatalf("audit: %+v, %v", audit, err)
	}
	// The carrier's undeliverable numbers are suppressed on SMS now.
	var gone uint32
	for _, r := range recs {
		if strings.HasPrefix(r.CallbackData, cp.ID+":") && r.Final != "delivered" {
			gone, err = comp.Contacts.LookupPhone(ctx, r.To)
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	sups, err := comp.Policy.Suppressions(ctx, "sms", []uint32{gone})
	if err != nil || !sups[0].Active(time.Now()) || sups[0].Reason != throttle.ReasonUndeliverable {
		t.Fatalf("suppression of an undeliverable number: %+v, %v", sups, err)
	}
	// A texted STOP revokes SMS marketing (and only SMS).
	stopper := "+14155550001"
	id, err := comp.Contacts.LookupPhone(ctx, stopper)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SMSSandbox.Inbound(ctx, stopper, "+18005550100", "STOP"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		smsState, err := comp.Policy.Consent(ctx, "sms", "marketing", []uint32{id})
		if err != nil {
			t.Fatal(err)
		}
		if !smsState[0].Granted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a texted STOP did not revoke SMS marketing")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if wa, _ := comp.Policy.Consent(ctx, "whatsapp", "marketing", []uint32{id}); !wa[0].Granted {
		t.Fatal("an SMS STOP revoked WhatsApp marketing too")
	}
}
