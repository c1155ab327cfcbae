package dispatcher

import (
	"testing"
	"time"
)

// The pool follows Little's law: twice the sum of rate × latency of the senders active
// in the last minute, within its bounds.
func TestSendSlots(t *testing.T) {
	s := newSendSlots(64, 4096)
	now := time.Unix(1_700_000_000, 0)
	if n := s.want(now); n != 64 {
		t.Fatalf("no sender yet: %d slots, want the minimum 64", n)
	}
	// 80 msg/s at 250 ms: 20 in flight, 40 with headroom — still under the minimum.
	s.observe("a", 80, 250*time.Millisecond, now)
	if n := s.want(now); n != 64 {
		t.Fatalf("one slow-ish sender: %d, want 64", n)
	}
	// 1,000 msg/s at 300 ms: 300 in flight → 600 (+40 for a).
	s.observe("b", 1000, 300*time.Millisecond, now)
	if n := s.want(now); n != 640 {
		t.Fatalf("two senders: %d, want 640", n)
	}
	// Latency moves as an EWMA: one 1.3 s request of b adds a tenth of the difference.
	s.observe("b", 1000, 1300*time.Millisecond, now)
	if n := s.want(now); n != 840 {
		t.Fatalf("after a slow request: %d, want 840", n)
	}
	// A sender silent for more than a minute no longer counts.
	later := now.Add(61 * time.Second)
	s.observe("a", 80, 250*time.Millisecond, later)
	if n := s.want(later); n != 64 {
		t.Fatalf("b idle for a minute: %d, want 64", n)
	}
	// Never above the maximum.
	for i := range 50 {
		s.observe(string(rune('A'+i)), 10000, 2*time.Second, later)
	}
	if n := s.want(later); n != 4096 {
		t.Fatalf("many slow senders: %d, want the maximum 4096", n)
	}
}
