package dispatcher

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herald-dev/herald/throttle"
)

// fakeGovernor is a single-process GCRA on the (fake) local clock.
// fakeGovernor is a fake of throttle.Reserver: slots 1/rate apart from a tat kept in
// (synctest) time, granted up to the horizon; held makes every call report a hold.
type fakeGovernor struct {
	tat  time.Time
	held time.Time
}

func (g *fakeGovernor) ReserveWithin(_ context.Context, _ string, lim throttle.Limits, n int, horizon time.Duration) (throttle.Reservation, error) {
	now := time.Now()
	if g.held.After(now) {
		return throttle.Reservation{Start: now, N: 0, Next: g.held, Held: true}, nil
	}
	interval := time.Duration(float64(time.Second) / lim.Rate)
	if g.tat.Before(now) {
		g.tat = now
	}
	start := g.tat
	k := 0
	for k < n && g.tat.Before(now.Add(horizon)) {
		g.tat = g.tat.Add(interval)
		k++
	}
	return throttle.Reservation{Start: start, Interval: interval, N: k, Next: g.tat}, nil
}

// A lane starts what the sender's rate allows within the horizon and defers the rest,
// spread one interval apart from when the sender is next free; a held sender's jobs all
// wait for the end of the hold.
func TestPaceLaneDefersWhatDoesNotFit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGovernor{}
		w := NewWorker(WorkerConfig{Governor: g, Horizon: time.Second})
		s := Sender{ID: "s", Rate: 10}
		list := make([]*item, 25)
		for i := range list {
			list[i] = &item{sender: s}
		}
		var started []time.Time
		if err := w.paceLane(context.Background(), list, func(*item) error { started = append(started, time.Now()); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(started) != 10 {
			t.Fatalf("started %d jobs within a 1 s horizon at 10 msg/s, want 10", len(started))
		}
		var prev time.Time
		for i, it := range list[10:] {
			if it.deferReason != ReasonSenderRate || it.deferUntil.Before(g.tat) {
				t.Fatalf("job %d: deferred %q until %v, want sender_rate from %v", i+10, it.deferReason, it.deferUntil, g.tat)
			}
			if i > 0 && it.deferUntil.Sub(prev) != 100*time.Millisecond {
				t.Fatalf("deferred jobs %v apart, want the sender's interval", it.deferUntil.Sub(prev))
			}
			prev = it.deferUntil
		}
		g.held = time.Now().Add(time.Hour)
		list = []*item{{sender: s}, {sender: s}}
		if err := w.paceLane(context.Background(), list, func(*item) error { t.Fatal("a held sender sent"); return nil }); err != nil {
			t.Fatal(err)
		}
		if list[0].deferReason != ReasonSenderHeld || list[0].deferUntil.Before(g.held) {
			t.Fatalf("held sender's job deferred %q until %v, want sender_held after %v", list[0].deferReason, list[0].deferUntil, g.held)
		}
	})
}

// A job that is not due yet (a retry redelivered early) goes back to the delayed set
// untouched: it is neither claimed nor paced, so it holds up nothing.
func TestEarlyJobsAreDelayedNotWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWorker(WorkerConfig{Governor: &fakeGovernor{}})
		at := time.Now().Add(5 * time.Second)
		items := []*item{{job: Job{NotBefore: at}}, {job: Job{NotBefore: time.Now().Add(-time.Second)}}, {}}
		if err := w.early(context.Background(), items); err != nil {
			t.Fatal(err)
		}
		if !items[0].deferUntil.Equal(at) || items[0].deferReason != "" {
			t.Fatalf("early job: deferUntil %v reason %q, want %v and no reason", items[0].deferUntil, items[0].deferReason, at)
		}
		for _, it := range items[1:] {
			if !it.deferUntil.IsZero() {
				t.Fatalf("due job deferred to %v", it.deferUntil)
			}
		}
		if active(&item{claimed: true, deferUntil: at}) {
			t.Fatal("a deferred job is still active")
		}
	})
}
