package throttle

import (
	"context"
	"testing"
	"time"
)

// TierUsed counts the distinct recipients in the sender's tier window: a recipient sent
// to twice counts once, one deferred by a full tier not at all, and a recipient leaves
// the count when its place leaves the window.
func TestTierUsed(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 4)
	tiered := func(campaign string, contact uint32) Job {
		j := rulesJob(campaign, contact, "s1")
		j.SenderTier = 2
		return j
	}
	used := func(want int64) {
		t.Helper()
		n, err := e.p.TierUsed(ctx, "s1")
		if err != nil || n != want {
			t.Fatalf("at %v: tier used %d, %v; want %d", e.now.Format(time.TimeOnly), n, err, want)
		}
	}
	used(0)
	e.expect(tiered("A", 1), Allow, "", time.Time{})
	used(1)
	e.now = e.now.Add(time.Minute)
	e.expect(tiered("A", 2), Allow, "", time.Time{})
	e.expect(tiered("A", 3), Defer, ReasonDailyTier, rulesT0.Add(TierWindow))
	used(2)
	if n, err := e.p.TierUsed(ctx, "s2"); err != nil || n != 0 {
		t.Fatalf("another sender's tier: %d, %v", n, err)
	}
	e.now = rulesT0.Add(TierWindow + time.Second)
	used(1)
}
