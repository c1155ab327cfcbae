package dispatcher

import (
	"context"
	"slices"
	"strconv"
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
		ok, err := tr.MarkSending(ctx, key, make([]SendProof, len(key)))
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

// A batch mixes campaigns, repeats contacts and spans several script calls: each key
// gets the answer it would get alone, in order, and the outcome counters count each
// contact once.
func TestTrackerBatches(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	a, b := NewTracker(rdb, prefix), NewTracker(rdb, prefix)
	n := maxScriptBatch + 250
	var keys []Key
	for i := range n {
		keys = append(keys, Key{"c1", uint32(i + 1)}, Key{"c2", uint32(i + 1)})
	}
	// c1's contact 1 twice in one batch: the second copy finds the first's claim.
	batch := append([]Key{{"c1", 1}}, keys...)
	res, err := a.Claim(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(batch) {
		t.Fatalf("%d answers for %d keys", len(res), len(batch))
	}
	if res[0] != Claimed || res[1] != Held {
		t.Fatalf("duplicate in one batch: %d then %d, want Claimed then Held", res[0], res[1])
	}
	for i, r := range res[2:] {
		if r != Claimed {
			t.Fatalf("key %v: %d, want Claimed", batch[i+2], r)
		}
	}
	if res, _ := b.Claim(ctx, keys[:4]); !slices.Equal(res, []int{Held, Held, Held, Held}) {
		t.Fatalf("another tracker's claims: %v, want all Held", res)
	}
	// Only c2's even contacts start; the rest of c2 is released.
	var start, release []Key
	for _, k := range keys {
		if k.Campaign == "c2" {
			if k.Contact%2 == 0 {
				start = append(start, k)
			} else {
				release = append(release, k)
			}
		}
	}
	if ok, err := b.MarkSending(ctx, start[:3], make([]SendProof, 3)); err != nil || slices.Contains(ok, true) {
		t.Fatalf("b marked a's claims: %v %v", ok, err)
	}
	ok, err := a.MarkSending(ctx, start, make([]SendProof, len(start)))
	if err != nil || slices.Contains(ok, false) {
		t.Fatalf("holder's marks: %v", err)
	}
	if err := a.Release(ctx, release); err != nil {
		t.Fatal(err)
	}
	doubt, err := a.InDoubt(ctx, append(append([]Key{}, start[:2]...), release[:2]...))
	var inDoubt []bool
	for _, d := range doubt {
		inDoubt = append(inDoubt, d.InDoubt)
	}
	if err != nil || !slices.Equal(inDoubt, []bool{true, true, false, false}) {
		t.Fatalf("in doubt: %v %v, want started sends only", doubt, err)
	}
	// Finish everything of c1 (each twice, half sent, half failed) and the started c2s.
	var fin []Key
	var outs []string
	for _, k := range keys {
		if k.Campaign == "c1" {
			o := OutcomeSent
			if k.Contact%2 == 1 {
				o = OutcomeFailed
			}
			fin, outs = append(fin, k, k), append(outs, o, o)
		}
	}
	fin, outs = append(fin, start...), append(outs, slices.Repeat([]string{OutcomeSent}, len(start))...)
	if err := rdb.HSet(ctx, a.keys("c1")[0], "audience", n, "fanout_done", "1", "state", "running").Err(); err != nil {
		t.Fatal(err)
	}
	recorded, err := a.Finish(ctx, fin, outs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range fin {
		if want := i >= 2*n || i%2 == 0; recorded[i] != want {
			t.Fatalf("finish %d (%v): recorded %v, want %v", i, fin[i], recorded[i], want)
		}
	}
	// Finished sends are no longer in doubt, and say so; released ones are neither.
	doubt, err = a.InDoubt(ctx, append(append([]Key{}, start[:2]...), release[:2]...))
	if err != nil || len(doubt) != 4 || doubt[0] != (Doubt{Finished: true}) || doubt[1] != (Doubt{Finished: true}) ||
		doubt[2] != (Doubt{}) || doubt[3] != (Doubt{}) {
		t.Fatalf("after finishing: %+v %v, want the started ones finished", doubt, err)
	}
	h, _ := rdb.HGetAll(ctx, a.keys("c1")[0]).Result()
	if h["done"] != strconv.Itoa(n) || h["sent"] != strconv.Itoa(n/2) || h["failed"] != strconv.Itoa(n-n/2) || h["state"] != "completed" {
		t.Fatalf("c1 counters %v", h)
	}
	h, _ = rdb.HGetAll(ctx, a.keys("c2")[0]).Result()
	if h["done"] != strconv.Itoa(len(start)) || h["sent"] != strconv.Itoa(len(start)) || h["state"] != "" {
		t.Fatalf("c2 counters %v", h)
	}
	if res, _ := b.Claim(ctx, release[:2]); !slices.Equal(res, []int{Claimed, Claimed}) {
		t.Fatalf("released keys: %v, want Claimed", res)
	}
}
