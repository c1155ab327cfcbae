package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	emailsandbox "github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

const emailTemplate = `name: spring_mail
channel: email
locale: en_US
kind: email
email:
  subject: "{{ name | default: 'Hello' }}, our spring sale starts today"
  text: |
    Hi {{ name | default: "there" }}, 20% off everything this week.
  html: "<p>Hi {{ name | default: 'there' | escape }}, <b>20% off</b> everything this week.</p>"
variables:
  name: {type: string, default: ""}
`

// An email campaign end to end: SMTP into the sandbox with a one-click unsubscribe on
// every message, the sandbox's bounces (DSN) and complaints (ARF) back over SMTP to
// serve's receiver, hard bounces suppressed and complaints revoked in the ledger, the
// unsubscribe link's POST revoking email marketing, and the audit clean.
func TestEmailCampaignEndToEnd(t *testing.T) {
	const bounceRate, complaintRate = 0.1, 0.1
	s, ctx := testStackWith(t, sandbox.Config{DelayScale: 0.01, Seed: 5}, func(c *Config, st *Stack) {
		if st != nil {
			st.EmailSandbox = emailsandbox.New(emailsandbox.Config{Addr: st.EmailSandboxAddr, Listener: st.EmailSandboxListener, SinkAddr: c.BounceListen,
				BounceRate: bounceRate, ComplaintRate: complaintRate})
		}
	})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	n := 80
	if v := os.Getenv("HERALD_EMAIL_N"); v != "" {
		fmt.Sscan(v, &n)
	}
	var csv strings.Builder
	csv.WriteString("email,name,tags\n")
	for i := range n {
		fmt.Fprintf(&csv, "user%d@example.com,User %d,customer\n", i+1, i+1)
	}
	if _, err := ImportContacts(ctx, d, strings.NewReader(csv.String()), ImportOptions{Source: "mail.csv"}); err != nil {
		t.Fatal(err)
	}
	fates := emailsandbox.Config{BounceRate: bounceRate, ComplaintRate: complaintRate}
	var changes []throttle.Change
	bounced, complained := map[uint32]bool{}, map[uint32]bool{}
	for i := range n {
		addr := fmt.Sprintf("user%d@example.com", i+1)
		id, err := comp.Contacts.LookupEmail(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, throttle.Change{ContactID: id, Channel: "email", Purpose: "marketing", Action: events.Grant, Source: "web_form"})
		switch fates.FateOf(addr) {
		case emailsandbox.FateBounce:
			bounced[id] = true
		case emailsandbox.FateComplain:
			complained[id] = true
		}
	}
	if len(bounced) == 0 || len(complained) == 0 {
		t.Fatalf("scenario: %d bounce, %d complain", len(bounced), len(complained))
	}
	if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(emailTemplate), "spring_mail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(emailTemplate)); err != nil {
		t.Fatal(err)
	}
	sender := dispatcher.Sender{ID: "news", Channel: "email", Rate: 200,
		Settings: map[string]string{"smtp_addr": s.EmailSandboxAddr, "from": "news@shop.example", "from_name": "Shop News", "tls": "none"}}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "spring_mail", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	if st := waitCompleted(t, ctx, comp.Campaigns, cp.ID); st.Sent != int64(n) {
		t.Fatalf("status %+v: want all %d sent", st, n)
	}
	recs := s.EmailSandbox.Records()
	per := map[string]int{}
	var unsubscribe string
	for _, r := range recs {
		per[r.To]++
		if r.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || !strings.HasPrefix(r.Header.Get("List-Unsubscribe"), "<"+s.ServeURL+"/u/") {
			t.Fatalf("message to %s without a one-click unsubscribe: %v", r.To, r.Header)
		}
		if unsubscribe == "" && r.Fate == emailsandbox.FateDeliver {
			unsubscribe = strings.Trim(r.Header.Get("List-Unsubscribe"), "<>")
		}
	}
	if len(per) != n {
		t.Fatalf("%d addresses got mail, want %d", len(per), n)
	}
	for to, c := range per {
		if c != 1 {
			t.Errorf("%s got %d messages", to, c)
		}
	}
	// Bounces and complaints come back over SMTP and are acted on.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ids []uint32
		for id := range bounced {
			ids = append(ids, id)
		}
		sups, err := comp.Policy.Suppressions(ctx, "email", ids)
		if err != nil {
			t.Fatal(err)
		}
		var cids []uint32
		for id := range complained {
			cids = append(cids, id)
		}
		cons, err := comp.Policy.Consent(ctx, "email", "marketing", cids)
		if err != nil {
			t.Fatal(err)
		}
		done := true
		for _, s := range sups {
			done = done && s.Active(time.Now()) && s.Reason == throttle.ReasonUndeliverable
		}
		for _, c := range cons {
			done = done && !c.Granted
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bounces suppressed %+v, complaints revoked %+v", sups, cons)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The one-click unsubscribe a mail client POSTs.
	resp, err := http.Post(unsubscribe, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("one-click POST: %v %v", resp, err)
	}
	resp.Body.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitSink(wctx, d); err != nil {
		t.Fatal(err)
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := analytics.Funnel(ctx, conn, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	var failed uint64
	for _, c := range f.Failed {
		failed += c.Contacts
	}
	if f.Steps[1].Contacts != uint64(n) || failed != uint64(len(bounced)) {
		t.Fatalf("funnel %+v failed %v: want %d sent and %d bounced", f.Steps, f.Failed, n, len(bounced))
	}
	audit, err := analytics.AuditCampaign(ctx, conn, cp.ID, "marketing")
	if err != nil || len(audit.Violations) != 0 || audit.Sent != uint64(n) {
		t.Fatalf("audit: %+v, %v", audit, err)
	}
	// A second campaign skips the bounced (undeliverable), the complainers and the
	// unsubscribed (opted_out).
	cp2, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "spring_mail", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp2.ID, nil); err != nil {
		t.Fatal(err)
	}
	if st := waitCompleted(t, ctx, comp.Campaigns, cp2.ID); st.Skipped != int64(len(bounced)+len(complained)+1) {
		t.Fatalf("second campaign %+v: want %d skipped", st, len(bounced)+len(complained)+1)
	}
}
