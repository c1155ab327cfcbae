package app

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// skipsOf returns campaign's skipped contacts in ClickHouse by reason, as phone numbers.
func skipsOf(t *testing.T, ctx context.Context, s *Stack, comp *Components, campaign string) map[string]map[string]bool {
	t.Helper()
	conn, err := s.Deps.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT DISTINCT contact_id, reason FROM events WHERE campaign_id = ? AND kind = 'skipped'", campaign)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var id uint32
		var reason string
		if err := rows.Scan(&id, &reason); err != nil {
			t.Fatal(err)
		}
		cs, err := comp.Contacts.ProfileFields(ctx, []uint32{id})
		if err != nil {
			t.Fatal(err)
		}
		if out[reason] == nil {
			out[reason] = map[string]bool{}
		}
		out[reason][cs[0].Phone] = true
	}
	return out
}

func auditClean(t *testing.T, ctx context.Context, s *Stack, campaign, purpose string, wantSent uint64) {
	t.Helper()
	conn, err := s.Deps.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := analytics.AuditCampaign(ctx, conn, campaign, purpose)
	if err != nil {
		t.Fatal(err)
	}
	if a.Sent != wantSent || len(a.Violations) != 0 {
		t.Fatalf("audit of campaign %s (%s): %d sends checked (want %d), violations %+v", campaign, purpose, a.Sent, wantSent, a.Violations)
	}
}

// The acceptance: against the sandbox answering 131050 (stopped marketing, in a
// failed status webhook as Meta does) for some recipients and 131026 for others, the
// second campaign to the same audience skips exactly those contacts, as opted_out and
// undeliverable, without sending to them; the audit passes for both campaigns and the
// contact's ledger shows the provider's revoke.
func TestProviderRefusalsShapeTheNextCampaign(t *testing.T) {
	const stopRate, goneRate = 0.15, 0.05
	s, ctx := testStack(t, sandbox.Config{Throughput: 1000, DelayScale: 0.02, ReadRate: 0.5, DuplicateRate: 0.1, Seed: 3,
		MarketingStopRate: stopRate, UndeliverableRate: goneRate, Templates: welcomeSandbox})
	const n = 200
	comp := seedAudience(t, ctx, s.Deps, n, e2eTemplate)
	stopped, gone := map[string]bool{}, map[string]bool{}
	for i := range n {
		phone := fmt.Sprintf("+6681%07d", i+1)
		switch {
		case sandbox.Undeliverable(phone, goneRate):
			gone[phone] = true
		case sandbox.MarketingStopped(phone, stopRate):
			stopped[phone] = true
		}
	}
	if len(stopped) == 0 || len(gone) == 0 {
		t.Fatalf("scenario: %d stopped, %d undeliverable; want some of each", len(stopped), len(gone))
	}

	first := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome"}, 300, "106540352242922")
	if st := waitCompleted(t, ctx, comp.Campaigns, first.ID); st.Sent != n {
		t.Fatalf("first campaign: %+v (the sandbox accepts, then fails them by webhook)", st)
	}
	waitSettled(t, ctx, s, first.ID, 60e9)
	auditClean(t, ctx, s, first.ID, "marketing", n)

	second := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome"}, 300, "106540352242922")
	st := waitCompleted(t, ctx, comp.Campaigns, second.ID)
	if want := int64(n - len(stopped) - len(gone)); st.Sent != want || st.Skipped != int64(len(stopped)+len(gone)) {
		t.Fatalf("second campaign: sent %d, skipped %d; want %d and %d", st.Sent, st.Skipped, want, len(stopped)+len(gone))
	}
	waitSettled(t, ctx, s, second.ID, 60e9)
	auditClean(t, ctx, s, second.ID, "marketing", uint64(st.Sent))
	for _, r := range s.Sandbox.Records() {
		if strings.HasPrefix(r.CallbackData, second.ID+":") && (stopped[r.To] || gone[r.To]) {
			t.Errorf("second campaign sent to %s, who stopped marketing or is undeliverable", r.To)
		}
	}
	skips := skipsOf(t, ctx, s, comp, second.ID)
	if !equalSets(skips[throttle.ReasonOptedOut], stopped) || !equalSets(skips[throttle.ReasonUndeliverable], gone) || len(skips) != 2 {
		t.Fatalf("second campaign's skips %v; want opted_out = %v, undeliverable = %v", skips, stopped, gone)
	}

	// The auditor sees why: the contact's ledger ends with the provider's revoke.
	var phone string
	for p := range stopped {
		phone = p
		break
	}
	id, err := comp.Contacts.LookupPhone(ctx, phone)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := s.Deps.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := analytics.AuditContact(ctx, conn, id)
	if err != nil {
		t.Fatal(err)
	}
	last := a.Consent[len(a.Consent)-1]
	if !a.ChainOK() || last.Action != events.Revoke || last.Source != "provider" || !strings.Contains(last.Proof, "131050") {
		t.Fatalf("ledger of %s: %+v", phone, a.Consent)
	}
}

// A utility campaign whose sends are settled by status webhooks (at this delay scale the
// "sent" status usually beats the worker's own record) passes the audit for its purpose:
// every settled event names the utility grant its send relied on.
func TestWebhookSettledUtilityCampaignPassesTheAudit(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.005, PairInterval: -1, ReadRate: 0.3, Seed: 5,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "UTILITY", BodyParams: []string{"first_name"}}}})
	const n = 300
	comp, err := s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := range n {
		fmt.Fprintf(&csv, "+6681%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, s.Deps, strings.NewReader(csv.String()), ImportOptions{Source: "utility.csv", Purpose: "utility"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	cp := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome", Purpose: "utility"}, 2000, "106540352242922")
	if st := waitCompleted(t, ctx, comp.Campaigns, cp.ID); st.Sent != n {
		t.Fatalf("campaign: %+v", st)
	}
	waitSettled(t, ctx, s, cp.ID, 60e9)
	conn, err := s.Deps.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var settled uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE campaign_id = ? AND kind = 'sent' AND reason = 'settled_by_webhook'", cp.ID).Scan(&settled); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of %d sends settled by webhook rows", settled, n)
	auditClean(t, ctx, s, cp.ID, "utility", n)
}

func equalSets(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
