package app

import (
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

// A LINE campaign end to end through the dev stack: the worker multicasts the identical
// messages in batches to the LINE sandbox, each contact once, and the campaign counts
// each sent.
func TestLINECampaignEndToEnd(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{DelayScale: 0.01, Seed: 3})
	comp, err := s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	const n = 700
	lineAudience(t, ctx, s.Deps, comp, n)
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: "oa-1", Channel: "line", Token: DevLINEToken, Rate: 1000,
		Settings: map[string]string{"channel_secret": DevLINESecret}}); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "line_sale", Senders: []string{"oa-1"}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 2*time.Minute)
	per := map[string]int{}
	reqs := map[string]bool{}
	for _, r := range s.LINESandbox.Records() {
		per[r.To]++
		reqs[r.RequestID] = true
	}
	for u, c := range per {
		if c != 1 {
			t.Errorf("%s got %d messages", u, c)
		}
	}
	if st.Sent != n || len(per) != n {
		t.Fatalf("status %+v; %d users got a message, want %d; sandbox %+v", st, len(per), n, s.LINESandbox.Stats())
	}
	if len(reqs) >= n/2 {
		t.Fatalf("%d requests for %d contacts: the identical messages were not batched", len(reqs), n)
	}
	t.Logf("%d contacts in %d requests", n, len(reqs))
}
