package analytics

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

// ledger builds one contact's sealed consent chain from (action, purpose, channel, at) steps.
type ledgerStep struct {
	id      string
	action  events.ConsentAction
	purpose string
	channel string
	at      time.Duration
}

func ledger(contact uint32, steps ...ledgerStep) []events.ConsentRecord {
	var out []events.ConsentRecord
	prev := ""
	for _, s := range steps {
		ch := s.channel
		if ch == "" {
			ch = "whatsapp"
		}
		r := events.ConsentRecord{ID: s.id, ContactID: contact, Channel: ch, Purpose: s.purpose, Action: s.action,
			Source: "web_form", Proof: "form-" + s.id, Time: baseTime.Add(s.at)}
		r.Seal(prev)
		prev = r.Hash
		out = append(out, r)
	}
	return out
}

func grant(id string, at time.Duration) ledgerStep {
	return ledgerStep{id: id, action: events.Grant, purpose: "marketing", at: at}
}

func revoke(id string, at time.Duration) ledgerStep {
	return ledgerStep{id: id, action: events.Revoke, purpose: "marketing", at: at}
}

// deferrals: contact 6 was deferred once by quiet hours in campaign "k" before its
// send, and in campaign "later" deferred by pair rate, then by the daily tier until the
// next day, and never sent.
func deferrals() []events.Event {
	deferred := func(campaign, disc, reason string, at, until time.Duration) events.Event {
		e := events.New(events.Deferred, campaign, 6, baseTime.Add(at))
		e.ID = events.ID(campaign, 6, events.Deferred, disc)
		e.SenderID, e.Channel, e.Reason, e.Until = "s1", "whatsapp", reason, baseTime.Add(until)
		return e
	}
	return []events.Event{
		deferred("k", "1", "quiet_hours", 50*time.Minute, time.Hour),
		events.New(events.Queued, "later", 6, baseTime.Add(3*time.Hour)),
		deferred("later", "1", "pair_rate", 3*time.Hour+time.Second, 3*time.Hour+7*time.Second),
		deferred("later", "2", "daily_tier", 3*time.Hour+8*time.Second, 24*time.Hour),
	}
}

// auditFixture is a campaign "k" whose violations are known. Contacts:
//
//	1 granted, sent later (ok; an sms revoke does not matter)
//	2 granted then revoked, sent after the revoke → no_consent
//	3 no record, no consent ref → no_consent, consent_ref_missing
//	4 granted only after the send → no_consent, consent_ref_invalid
//	5 granted for utility only → no_consent, consent_ref_invalid
//	6 grant, revoke, grant, sent after (ok)
//	7 free-form, inbound to the sender 1h before (ok)
//	8 free-form, inbound 25h before → outside_window
//	9 free-form, inbound 1h before but to another sender → outside_window
//	10 free-form, inbound only after the send → outside_window
//	11 revoke and grant in the same millisecond as the send, grant sorting last (ok)
//
// Contact 12 has no consent but was sent in campaign "other", which is not audited.
// Every event and record is stored twice and events arrive shuffled.
func auditFixture(t *testing.T) driver.Conn {
	t.Helper()
	conn := migrated(t)
	sendAt := time.Hour
	sent := func(contact uint32) events.Event {
		e := events.New(events.Sent, "k", contact, baseTime.Add(sendAt))
		e.SenderID, e.Channel, e.Template, e.Variant = "s1", "whatsapp", "promo", "A"
		e.ProviderMessageID = fmt.Sprintf("wamid.%d", contact)
		e.ConsentRef = fmt.Sprintf("g%d", contact)
		return e
	}
	var recs []events.ConsentRecord
	recs = append(recs, ledger(1, grant("g1", 0), ledgerStep{id: "sms1", action: events.Revoke, purpose: "marketing", channel: "sms", at: time.Minute})...)
	recs = append(recs, ledger(2, grant("g2", 0), revoke("r2", 30*time.Minute))...)
	recs = append(recs, ledger(4, grant("g4", 2*time.Hour))...)
	recs = append(recs, ledger(5, ledgerStep{id: "g5", action: events.Grant, purpose: "utility", at: 0})...)
	recs = append(recs, ledger(6, grant("g6a", 0), revoke("r6", time.Minute), grant("g6", 2*time.Minute))...)
	for c := uint32(7); c <= 10; c++ {
		recs = append(recs, ledger(c, grant(fmt.Sprintf("g%d", c), 0))...)
	}
	recs = append(recs, ledger(11, ledgerStep{id: "a11", action: events.Revoke, purpose: "marketing", at: sendAt},
		ledgerStep{id: "g11", action: events.Grant, purpose: "marketing", at: sendAt})...)

	var evs []events.Event
	for c := uint32(1); c <= 11; c++ {
		e := sent(c)
		if c == 3 {
			e.ConsentRef = ""
		}
		if c >= 7 && c <= 10 {
			e.Reason = FreeFormReason
		}
		q := events.New(events.Queued, "k", c, baseTime.Add(sendAt-time.Second))
		d := events.New(events.Delivered, "k", c, baseTime.Add(sendAt+time.Second))
		evs = append(evs, e, q, d)
	}
	other := events.New(events.Sent, "other", 12, baseTime.Add(sendAt))
	other.SenderID, other.Channel = "s1", "whatsapp"
	evs = append(evs, other)
	evs = append(evs, deferrals()...)
	evs = append(evs, evs...)
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	insertEvents(t, conn, evs)
	insertConsent(t, conn, append(recs, recs...))
	at := func(h time.Duration) time.Time { return baseTime.Add(sendAt - h) }
	insertInbound(t, conn, []events.Inbound{
		{ID: "in7", ContactID: 7, SenderID: "s1", Channel: "whatsapp", Type: "text", Text: "hi", Time: at(time.Hour)},
		{ID: "in8", ContactID: 8, SenderID: "s1", Channel: "whatsapp", Type: "text", Text: "hi", Time: at(25 * time.Hour)},
		{ID: "in9", ContactID: 9, SenderID: "s2", Channel: "whatsapp", Type: "text", Text: "hi", Time: at(time.Hour)},
		{ID: "in10", ContactID: 10, SenderID: "s1", Channel: "whatsapp", Type: "text", Text: "hi", Time: at(-time.Minute)},
	})
	return conn
}

func TestAuditCampaignKnownViolations(t *testing.T) {
	conn := auditFixture(t)
	rep, err := AuditCampaign(context.Background(), conn, "k", "marketing")
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		contact uint32
		rule    string
	}
	var got []key
	sortViolations(rep.Violations)
	for _, v := range rep.Violations {
		got = append(got, key{v.ContactID, v.Rule})
	}
	want := []key{
		{2, RuleNoConsent},
		{3, RuleConsentRefMissing}, {3, RuleNoConsent},
		{4, RuleConsentRefInvalid}, {4, RuleNoConsent},
		{5, RuleConsentRefInvalid}, {5, RuleNoConsent},
		{8, RuleOutsideWindow}, {9, RuleOutsideWindow}, {10, RuleOutsideWindow},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("violations\n got %v\nwant %v", got, want)
	}
	if rep.Sent != 11 || rep.FreeForm != 4 {
		t.Fatalf("sent %d free-form %d, want 11 and 4", rep.Sent, rep.FreeForm)
	}
	goldenJSON(t, "audit_campaign.json", rep)
}

func TestAuditContact(t *testing.T) {
	conn := auditFixture(t)
	ctx := context.Background()
	a, err := AuditContact(ctx, conn, 6)
	if err != nil {
		t.Fatal(err)
	}
	if !a.ChainOK() || len(a.Consent) != 3 || len(a.Messages) != 1 {
		t.Fatalf("contact 6: chain broken at %d, %d records, %d messages; want intact, 3, 1", a.ChainBroken, len(a.Consent), len(a.Messages))
	}
	if m := a.Messages[0]; m.ConsentRef != "g6" || m.ConsentAction != "grant" || m.ConsentProof != "form-g6" || m.ConsentHash != a.Consent[2].Hash {
		t.Fatalf("contact 6 message proof %+v", m)
	}
	// Why contact 6 got campaign k's message and not campaign later's.
	type outcome struct {
		campaign, outcome, reason string
		at, until                 time.Time
		deferrals                 int
		lastDeferral              string
	}
	var got []outcome
	for _, o := range a.Campaigns {
		g := outcome{o.CampaignID, o.Outcome, o.Reason, o.At, o.Until, o.Deferrals, ""}
		if o.LastDeferral != nil {
			g.lastDeferral = o.LastDeferral.Reason + " until " + o.LastDeferral.Until.Format(time.RFC3339)
		}
		got = append(got, g)
	}
	wantOutcomes := []outcome{
		{"k", OutcomeDelivered, "", baseTime.Add(time.Hour), time.Time{}, 1, "quiet_hours until 2025-03-10T10:00:00Z"},
		{"later", OutcomeDeferred, "daily_tier", baseTime.Add(3*time.Hour + 8*time.Second), baseTime.Add(24 * time.Hour), 2,
			"daily_tier until 2025-03-11T09:00:00Z"},
	}
	if !reflect.DeepEqual(got, wantOutcomes) {
		t.Fatalf("campaign outcomes of contact 6\n got %+v\nwant %+v", got, wantOutcomes)
	}
	var kinds []string
	for _, e := range a.History {
		kinds = append(kinds, e.CampaignID+":"+e.Kind)
	}
	if w := []string{"k:deferred", "k:queued", "k:sent", "k:delivered", "later:queued", "later:deferred", "later:deferred"}; !reflect.DeepEqual(kinds, w) {
		t.Fatalf("history of contact 6: %v, want %v", kinds, w)
	}
	goldenJSON(t, "audit_contact.json", a)

	// An edited copy of a record breaks the chain where it sits.
	recs := ledger(6, grant("g6a", 0), revoke("r6", time.Minute), grant("g6", 2*time.Minute))
	forged := recs[1]
	forged.Action = events.Grant
	insertConsent(t, conn, []events.ConsentRecord{forged})
	a, err = AuditContact(ctx, conn, 6)
	if err != nil {
		t.Fatal(err)
	}
	if a.ChainOK() || len(a.Consent) != 4 {
		t.Fatalf("forged record: chain broken at %d over %d records; want a break over 4", a.ChainBroken, len(a.Consent))
	}

	// Export: the sent messages of the range, each once, with their proof.
	var ids []uint32
	err = ExportSent(ctx, conn, baseTime, baseTime.Add(2*time.Hour), func(r SentRecord) error {
		ids = append(ids, r.ContactID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 12 {
		t.Fatalf("export: %d messages %v, want 12 (11 of k, 1 of other)", len(ids), ids)
	}
	var none int
	err = ExportSent(ctx, conn, baseTime.Add(2*time.Hour), baseTime.Add(3*time.Hour), func(SentRecord) error { none++; return nil })
	if err != nil || none != 0 {
		t.Fatalf("export of an empty range: %d rows, %v", none, err)
	}
}

// TestAuditCleanCampaign: the synthetic campaign, with a grant before every send, has no
// violation at all, duplicates and out-of-order events notwithstanding.
func TestAuditCleanCampaign(t *testing.T) {
	conn := migrated(t)
	evs, _ := campaignStream("spring", 3)
	insertEvents(t, conn, evs)
	var recs []events.ConsentRecord
	seen := map[uint32]bool{}
	for _, e := range evs {
		if e.Kind == events.Sent && !seen[e.ContactID] {
			seen[e.ContactID] = true
			recs = append(recs, ledger(e.ContactID, grant(e.ConsentRef, -time.Hour))...)
		}
	}
	insertConsent(t, conn, recs)
	rep, err := AuditCampaign(context.Background(), conn, "spring", "marketing")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 480 || len(rep.Violations) != 0 {
		t.Fatalf("sent %d (want 480), violations %+v (want none)", rep.Sent, rep.Violations)
	}
}

func sortViolations(vs []Violation) {
	sort.Slice(vs, func(i, j int) bool {
		if vs[i].ContactID != vs[j].ContactID {
			return vs[i].ContactID < vs[j].ContactID
		}
		return vs[i].Rule < vs[j].Rule
	})
}
