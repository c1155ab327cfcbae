package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// Erasure covers every channel: the contact's consent is revoked on WhatsApp, SMS and
// email in the ledger, and its suppressions are lifted with it.
func TestEraseRevokesEveryChannel(t *testing.T) {
	_, prefix := testenv.Redis(t)
	brokers, topics := testenv.Kafka(t, 1)
	d := NewDeps(Config{KafkaBrokers: brokers, TopicPrefix: strings.TrimSuffix(topics.Outbound, "outbound"),
		RedisURL: "redis://" + testenv.RedisAddr(t) + "/0", Prefix: prefix})
	t.Cleanup(func() { d.Close() })
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ids, err := comp.Contacts.Upsert(ctx, []segments.Contact{{Phone: "+66812345678", Email: "ann@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	id := ids[0]
	var grants []throttle.Change
	for _, ch := range Channels {
		grants = append(grants, throttle.Change{ContactID: id, Channel: ch, Purpose: "marketing", Action: events.Grant, Source: "web_form"})
	}
	if _, err := comp.Ledger.Apply(ctx, grants, false); err != nil {
		t.Fatal(err)
	}
	if err := comp.Policy.Suppress(ctx, "sms", []uint32{id}, []throttle.Suppression{{Reason: throttle.ReasonUndeliverable, Until: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := EraseContact(ctx, comp, "ann@example.com", []string{"marketing", "utility"}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range Channels {
		st, err := comp.Policy.Consent(ctx, ch, "marketing", []uint32{id})
		if err != nil || st[0].Granted || st[0].RecordID == "" {
			t.Errorf("%s marketing after erasure: %+v, %v; want a revoke on record", ch, st, err)
		}
	}
	if sups, _ := comp.Policy.Suppressions(ctx, "sms", []uint32{id}); sups[0].Reason != "" {
		t.Errorf("suppression kept after erasure: %+v", sups[0])
	}
	if _, err := comp.Contacts.LookupPhone(ctx, "+66812345678"); err == nil {
		t.Error("the phone still resolves after erasure")
	}
}
