package journeys

import (
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

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
