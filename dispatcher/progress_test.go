package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
)

// Claims are leases: a worker that dies before its send starts loses the job to the
// next claimer once the lease runs out; a started send is in doubt; only the holder can
// mark a send started or give the claim back.
func TestClaimLeases(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	clock := time.UnixMilli(1_700_000_000_000)
	now := func() time.Time { return clock }
	a, b, c := NewTracker(rdb, prefix), NewTracker(rdb, prefix), NewTracker(rdb, prefix)
	for _, tr := range []*Tracker{a, b, c} {
		tr.now = now
		tr.WithLease(10 * time.Second)
	}
	key := []Key{{"7", 42}}
	claim := func(tr *Tracker) int {
		t.Helper()
		res, err := tr.Claim(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	sending := func(tr *Tracker) bool {
		t.Helper()
		ok, err := tr.MarkSending(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return ok[0]
	}
	if r := claim(a); r != Claimed {
		t.Fatalf("first claim: %d", r)
	}
	if r := claim(b); r != Held {
		t.Fatalf("claim while a holds a live lease: %d, want Held", r)
	}
	clock = clock.Add(11 * time.Second) // a died before sending
	if r := claim(b); r != Claimed {
		t.Fatalf("claim after the lease ran out: %d, want Claimed", r)
	}
	if sending(a) {
		t.Fatal("the old holder could still start the send")
	}
	if err := a.Release(ctx, key); err != nil {
		t.Fatal(err)
	}
	if r := claim(c); r != Held {
		t.Fatalf("the old holder's release freed b's claim: c got %d", r)
	}
	if !sending(b) {
		t.Fatal("the holder could not start its send")
	}
	clock = clock.Add(time.Hour)
	if r := claim(c); r != InDoubt {
		t.Fatalf("claim of a started send: %d, want InDoubt however old", r)
	}
	if _, err := b.Finish(ctx, key, []string{OutcomeSent}); err != nil {
		t.Fatal(err)
	}
	if r := claim(c); r != AlreadyDone {
		t.Fatalf("claim after the outcome: %d, want AlreadyDone", r)
	}
	if n, _ := rdb.HLen(ctx, a.keys("7")[3]).Result(); n != 0 {
		t.Fatalf("%d leases left after the outcome", n)
	}
	// A Redis that forgot the scripts (restart, SCRIPT FLUSH) gets their text again.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if r := claim(c); r != AlreadyDone {
		t.Fatalf("claim after SCRIPT FLUSH: %d, want AlreadyDone", r)
	}
	// A released claim (retry, deferral) is free at once.
	k2 := []Key{{"7", 43}}
	if res, _ := a.Claim(ctx, k2); res[0] != Claimed {
		t.Fatal("claim 43")
	}
	if err := a.Release(ctx, k2); err != nil {
		t.Fatal(err)
	}
	if res, _ := b.Claim(ctx, k2); res[0] != Claimed {
		t.Fatalf("claim after release: %d", res[0])
	}
}
