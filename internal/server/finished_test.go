package server

import (
	"testing"

	"github.com/herald-dev/herald/dispatcher"
)

// finishedKeys keeps what it was told, in order-preserving filters, within its bound.
func TestFinishedKeys(t *testing.T) {
	f := finishedKeys{max: 8}
	key := func(c uint32) dispatcher.Key { return dispatcher.Key{Campaign: "7", Contact: c} }
	st := func(cs ...uint32) []dispatcher.Settlement {
		var out []dispatcher.Settlement
		for _, c := range cs {
			out = append(out, dispatcher.Settlement{Key: key(c), MessageID: "m"})
		}
		return out
	}
	sts := st(1, 2, 3)
	if got := f.unsettled(sts); len(got) != 3 || &got[0] != &sts[0] {
		t.Fatalf("nothing known: %v", got)
	}
	f.add(key(2))
	f.add(key(9))
	if got := f.unsettled(st(1, 2, 3, 2, 4)); len(got) != 3 || got[0].Contact != 1 || got[1].Contact != 3 || got[2].Contact != 4 {
		t.Fatalf("2 known: %v", got)
	}
	if got := f.unsettled(st(2, 9)); len(got) != 0 {
		t.Fatalf("all known: %v", got)
	}
	if (&finishedKeys{}).has(key(1)) || !f.has(key(9)) || f.has(key(1)) || f.has(dispatcher.Key{Campaign: "8", Contact: 9}) {
		t.Fatal("has")
	}
	// Bounded: two generations of max/2; the oldest keys go first.
	for c := uint32(100); c < 200; c++ {
		f.add(key(c))
		if n := len(f.cur) + len(f.old); n > f.max {
			t.Fatalf("%d keys held, bound %d", n, f.max)
		}
	}
	if f.has(key(2)) || f.has(key(100)) || !f.has(key(199)) || !f.has(key(196)) {
		t.Errorf("after 100 more: 2 %v, 100 %v, 196 %v, 199 %v", f.has(key(2)), f.has(key(100)), f.has(key(196)), f.has(key(199)))
	}
}
