package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
)

// The breaker on a real Redis, step by step on an injected clock: it opens on the error
// rate over the sliding window (not on a few errors, not on old ones), lets nothing
// through while open, probes when half-open, closes on the probes' successes and opens
// again on a probe's error.
func TestBreakerOpensProbesAndCloses(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	type step struct {
		name      string
		advance   time.Duration
		ok, fail  int // outcomes recorded (Record), when either is set
		ask       int // requests asking to go (Allow), when set
		wantAllow int
		wantState string
	}
	cfg := BreakerConfig{Window: 10 * time.Second, MinRequests: 10, ErrorRate: 0.5, OpenFor: 30 * time.Second, Probes: 2}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"too few requests to judge", []step{
			{name: "errors below the minimum", fail: 9, wantState: BreakerClosed},
			{name: "still sends", ask: 50, wantAllow: 50, wantState: BreakerClosed},
		}},
		{"errors below the rate", []step{
			{name: "4 of 10", ok: 6, fail: 4, wantState: BreakerClosed},
			{name: "sends", ask: 3, wantAllow: 3, wantState: BreakerClosed},
		}},
		{"old errors slide out of the window", []step{
			{name: "errors", fail: 9, wantState: BreakerClosed},
			{name: "two windows later, one more error", advance: 25 * time.Second, fail: 1, wantState: BreakerClosed},
		}},
		{"the previous window still counts", []step{
			{name: "errors late in a window", advance: 9 * time.Second, fail: 8, wantState: BreakerClosed},
			{name: "early in the next window", advance: 2 * time.Second, fail: 3, wantState: BreakerOpen},
		}},
		{"open, half-open, closed", []step{
			{name: "errors open it", ok: 4, fail: 6, wantState: BreakerOpen},
			{name: "nothing goes while open", ask: 10, wantAllow: 0, wantState: BreakerOpen},
			{name: "late successes of earlier sends change nothing", ok: 20, wantState: BreakerOpen},
			{name: "still open before OpenFor", advance: 29 * time.Second, ask: 1, wantAllow: 0, wantState: BreakerOpen},
			{name: "half-open: the probes go", advance: time.Second, ask: 5, wantAllow: 2, wantState: BreakerHalfOpen},
			{name: "no more than the probes", ask: 5, wantAllow: 0, wantState: BreakerHalfOpen},
			{name: "one probe succeeded", ok: 1, wantState: BreakerHalfOpen},
			{name: "both: closed", ok: 1, wantState: BreakerClosed},
			{name: "everything goes again", ask: 40, wantAllow: 40, wantState: BreakerClosed},
			{name: "and it judges afresh", ok: 10, fail: 1, wantState: BreakerClosed},
		}},
		{"a failed probe opens it again", []step{
			{name: "open", fail: 10, wantState: BreakerOpen},
			{name: "half-open", advance: 30 * time.Second, ask: 2, wantAllow: 2, wantState: BreakerHalfOpen},
			{name: "a probe fails", ok: 1, fail: 1, wantState: BreakerOpen},
			{name: "closed to new sends", ask: 1, wantAllow: 0, wantState: BreakerOpen},
			{name: "probes again after OpenFor", advance: 30 * time.Second, ask: 1, wantAllow: 1, wantState: BreakerHalfOpen},
		}},
		{"probes that never report are renewed", []step{
			{name: "open", fail: 10, wantState: BreakerOpen},
			{name: "probes taken", advance: 30 * time.Second, ask: 2, wantAllow: 2, wantState: BreakerHalfOpen},
			{name: "their worker died: none left", advance: 10 * time.Second, ask: 2, wantAllow: 0, wantState: BreakerHalfOpen},
			{name: "a new round after OpenFor", advance: 20 * time.Second, ask: 2, wantAllow: 2, wantState: BreakerHalfOpen},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.UnixMilli(1_800_000_000_000) // the start of a window
			b := NewBreaker(rdb, prefix+testenv.Unique()+":", cfg).WithClock(func() time.Time { return now })
			for _, s := range tc.steps {
				now = now.Add(s.advance)
				if s.ok > 0 || s.fail > 0 {
					st, err := b.Record(ctx, "whatsapp", "s1", s.ok, s.fail)
					if err != nil {
						t.Fatal(err)
					}
					if st != s.wantState {
						t.Fatalf("%s: state %s after recording, want %s", s.name, st, s.wantState)
					}
				}
				if s.ask > 0 {
					n, err := b.Allow(ctx, "whatsapp", "s1", s.ask)
					if err != nil {
						t.Fatal(err)
					}
					if n != s.wantAllow {
						t.Fatalf("%s: %d of %d allowed, want %d", s.name, n, s.ask, s.wantAllow)
					}
				}
				if st, err := b.State(ctx, "whatsapp", "s1"); err != nil || st != s.wantState {
					t.Fatalf("%s: state %s (%v), want %s", s.name, st, err, s.wantState)
				}
			}
			// Another sender of the same channel is untouched.
			if n, err := b.Allow(ctx, "whatsapp", "s2", 7); err != nil || n != 7 {
				t.Fatalf("another sender: %d allowed (%v), want 7", n, err)
			}
		})
	}
}

// Only errors that say the provider is unwell count against it.
func TestBreakerErrorClassification(t *testing.T) {
	for _, c := range []struct {
		se   SendError
		want bool
	}{
		{SendError{Action: ActionTransport, Retryable: true}, true},
		{SendError{Action: ActionRetry, Retryable: true, Code: 20500}, true},
		{SendError{Action: ActionRetry, Retryable: true, Code: 130429, Signal: 1}, false}, // slow down: the governor's
		{SendError{Action: ActionUndeliverable, Code: 131026}, false},
		{SendError{Action: ActionOptOut, Code: 131050}, false},
	} {
		if got := breakerError(&c.se); got != c.want {
			t.Errorf("%+v: breaker error %v, want %v", c.se, got, c.want)
		}
	}
}
