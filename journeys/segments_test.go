package journeys

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
)

// A tag given after the journey started enters the contact; the tag taken away again
// lets it go (exit_on left_segment); those who had the tag before are not entered.
func TestSegmentEntryAndLeftSegment(t *testing.T) {
	r := newRig(t, `id: vip
senders: [s1]
entry: {segment: vip}
exit_on: [left_segment]
steps:
  - id: wait
    wait: 30d
  - id: hello
    send: hello_tpl
`)
	store := r.eng.cfg.Segments.(*segments.Store)
	if _, err := store.ImportCSV(r.ctx, strings.NewReader("phone,tags\n+66810000001,vip\n+66810000002,\n"), segments.ImportOptions{Source: "t"}); err != nil {
		t.Fatal(err)
	}
	one, _ := store.Lookup(r.ctx, "+66810000001")
	two, _ := store.Lookup(r.ctx, "+66810000002")
	if err := r.eng.PollSegments(r.ctx); err != nil { // the baseline: contact one was vip before
		t.Fatal(err)
	}
	tag := func(c uint32, add bool) {
		bm := roaring.New()
		bm.Add(c)
		if _, err := store.TagContacts(r.ctx, "vip", bm, add); err != nil {
			t.Fatal(err)
		}
		if err := r.eng.PollSegments(r.ctx); err != nil {
			t.Fatal(err)
		}
	}
	tag(two, true)
	if _, ok, _ := r.eng.Get(r.ctx, "vip", one); ok {
		t.Fatal("a member from before the journey entered")
	}
	if in, ok, _ := r.eng.Get(r.ctx, "vip", two); !ok || !in.Waiting {
		t.Fatalf("the new member did not enter: %+v %v", in, ok)
	}
	tag(two, false)
	if _, ok, _ := r.eng.Get(r.ctx, "vip", two); ok {
		t.Fatal("still in the journey after leaving the segment")
	}
	if n := r.eng.timers(r.ctx, "vip"); n != 0 {
		t.Fatalf("%d timers left", n)
	}
}

// Tag changes move contacts at once, by their tag events, with no reconcile in between:
// tagging (TagContacts, as the tags API and CLI do) or importing a tag enters the
// contact as it joins "vip and not churned"; a tag that makes it leave exits it
// (left_segment) in the same call. The slow reconcile afterwards finds nothing to do:
// every transition is taken once.
func TestSegmentMovesOnTagEvents(t *testing.T) {
	r := newRig(t, `id: vipnc
senders: [s1]
entry: {segment: "vip and not churned"}
exit_on: [left_segment]
steps:
  - id: wait
    wait: 30d
  - id: hello
    send: hello_tpl
`)
	store := r.eng.cfg.Segments.(*segments.Store)
	var seen atomic.Int64
	store.OnTagChange(func(ctx context.Context, tag string, added bool, ids []uint32) {
		kind := events.TagRemoved
		if added {
			kind = events.TagAdded
		}
		for _, c := range ids {
			ev := events.New(kind, "", c, r.clk.now())
			ev.ID, ev.Reason = fmt.Sprint(kind, tag, c, seen.Add(1)), tag
			tr, ok := FromEvent(ev)
			if !ok {
				t.Errorf("tag event %+v not a trigger", ev)
				continue
			}
			if err := r.eng.Handle(ctx, tr); err != nil {
				t.Error(err)
			}
		}
	})
	if _, err := store.ImportCSV(r.ctx, strings.NewReader("phone,tags\n+66810000001,vip\n+66810000002,\n"), segments.ImportOptions{Source: "t"}); err != nil {
		t.Fatal(err)
	}
	one, _ := store.Lookup(r.ctx, "+66810000001")
	two, _ := store.Lookup(r.ctx, "+66810000002")
	if err := r.eng.PollSegments(r.ctx); err != nil { // the first look: contact one was vip before
		t.Fatal(err)
	}
	tag := func(c uint32, name string, add bool) {
		bm := roaring.New()
		bm.Add(c)
		if _, err := store.TagContacts(r.ctx, name, bm, add); err != nil {
			t.Fatal(err)
		}
	}
	in := func(c uint32) bool { _, ok, _ := r.eng.Get(r.ctx, "vipnc", c); return ok }
	tag(two, "vip", true)
	if !in(two) || in(one) {
		t.Fatalf("after tagging two vip: one in %v, two in %v", in(one), in(two))
	}
	tag(two, "churned", true)
	if in(two) {
		t.Fatal("still in the journey after churned was added")
	}
	// An import that tags a new contact vip enters it.
	if _, err := store.ImportCSV(r.ctx, strings.NewReader("phone,tags\n+66810000003,vip\n"), segments.ImportOptions{Source: "t2"}); err != nil {
		t.Fatal(err)
	}
	three, _ := store.Lookup(r.ctx, "+66810000003")
	if !in(three) {
		t.Fatal("an imported vip did not enter")
	}
	if err := r.eng.PollSegments(r.ctx); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, ev := range r.evs.events(t) {
		if ev.Kind == events.JourneyEntered || ev.Kind == events.JourneyExited {
			kinds[string(ev.Kind)+"/"+ev.Reason]++
		}
	}
	if kinds["journey_entered/segment"] != 2 || kinds["journey_exited/left_segment"] != 1 || len(kinds) != 2 {
		t.Fatalf("journey events %v: want two entries (two, three) and one left_segment exit", kinds)
	}
}

// Redis bitmaps and roaring bitmaps convert both ways.
func TestRedisBitmapRoundTrip(t *testing.T) {
	for _, ids := range [][]uint32{nil, {0}, {7, 8, 9}, {1, 1000, 65535, 65536, 1 << 20}} {
		bm := roaring.BitmapOf(ids...)
		got := bitmapOfRedis(redisBitmap(bm))
		if !got.Equals(bm) {
			t.Fatalf("%v → %v", ids, got.ToArray())
		}
	}
}
