package journeys

import (
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
)

// The exits the worker asks about: the nudge queued for contact 1's first entry is
// "exited" once contact 1 replies (an exit condition), not while the entry runs; a
// journey that runs to its end leaves its sends alone; jobs of other campaigns are
// never exited; a later entry's exit does not forget the earlier one.
func TestExitsOfQueuedSends(t *testing.T) {
	r := newRig(t, followUp)
	x := NewExits(r.eng.cfg.Redis, r.eng.cfg.Prefix)
	for _, c := range []uint32{1, 2} {
		if err := r.eng.Handle(r.ctx, Event{ID: "r" + string(rune('0'+c)), Kind: OnRead, Contact: c}); err != nil {
			t.Fatal(err)
		}
	}
	r.clk.add(30 * time.Minute)
	if n, err := r.eng.Tick(r.ctx); n != 2 || err != nil {
		t.Fatalf("fired %d, %v", n, err)
	}
	nudge := CampaignID("follow", 1, "nudge", 1)
	keys := []dispatcher.Key{{Campaign: nudge, Contact: 1}, {Campaign: nudge, Contact: 2}, {Campaign: "42", Contact: 1}}
	exited := func() []bool {
		got, err := x.Exited(r.ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := exited(); got[0] || got[1] || got[2] {
		t.Fatalf("exited before any exit: %v", got)
	}
	if err := r.eng.Handle(r.ctx, Event{ID: "in:1", Kind: OnInbound, Contact: 1, Text: "no thanks"}); err != nil {
		t.Fatal(err)
	}
	if got := exited(); !got[0] || got[1] || got[2] {
		t.Fatalf("after contact 1's reply: %v, want [true false false]", got)
	}
	// Contact 1 enters again (every_time) and replies again: entry 1 stays exited.
	if err := r.eng.Handle(r.ctx, Event{ID: "r9", Kind: OnRead, Contact: 1}); err != nil {
		t.Fatal(err)
	}
	if err := r.eng.Handle(r.ctx, Event{ID: "in:2", Kind: OnInbound, Contact: 1, Text: "stop"}); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, dispatcher.Key{Campaign: CampaignID("follow", 1, "nudge", 2), Contact: 1})
	if got := exited(); !got[0] || !got[3] {
		t.Fatalf("after the second entry's exit: %v", got)
	}
	// Contact 2 runs to the end: its sends were meant.
	r.clk.add(31 * 24 * time.Hour)
	if _, err := r.eng.Tick(r.ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := r.eng.Get(r.ctx, "follow", 2); ok {
		t.Fatal("contact 2 still in the journey")
	}
	if got := exited(); got[1] {
		t.Fatalf("a completed entry's send counted as exited: %v", got)
	}
}
