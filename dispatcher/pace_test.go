package dispatcher

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/herald-dev/herald/throttle"
)

// fakeGovernor is a single-process GCRA on the (fake) local clock.
type fakeGovernor struct {
	mu  sync.Mutex
	tat time.Time
}

func (g *fakeGovernor) Reserve(_ context.Context, _ string, rate float64, n int) (throttle.Reservation, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	iv := time.Duration(float64(time.Second) / rate)
	now := time.Now()
	if g.tat.Before(now) {
		g.tat = now
	}
	r := throttle.Reservation{Start: g.tat, Interval: iv, N: n}
	g.tat = g.tat.Add(time.Duration(n) * iv)
	return r, nil
}

// A worker that stalls (GC, a loaded machine) must not catch up in a burst: the slots it
// missed are given up, and no one-second window ever holds more than rate+1 sends.
func TestPaceNeverBurstsAfterAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 80.0
		w := NewWorker(WorkerConfig{Governor: &fakeGovernor{}})
		s := Sender{ID: "s", Rate: rate}
		list := make([]*item, 400)
		for i := range list {
			list[i] = &item{}
		}
		var starts []time.Time
		err := w.pace(context.Background(), s, list, func(it *item) error {
			starts = append(starts, time.Now())
			switch len(starts) {
			case 50:
				time.Sleep(700 * time.Millisecond) // a stall long enough to miss ~56 slots
			case 200:
				time.Sleep(3 * time.Second)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(starts) != len(list) {
			t.Fatalf("started %d of %d jobs", len(starts), len(list))
		}
		for i, j := 0, 0; i < len(starts); i++ {
			for starts[i].Sub(starts[j]) >= time.Second {
				j++
			}
			if n := i - j + 1; n > int(rate)+1 {
				t.Fatalf("%d sends in the second ending at %v (rate %v)", n, starts[i], rate)
			}
		}
		if got := testutilCounter(w); got == 0 {
			t.Fatal("the stalls forfeited no slots: the test did not exercise the catch-up path")
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

func testutilCounter(w *Worker) float64 {
	var m dto.Metric
	_ = w.m.forfeits.Write(&m)
	return m.GetCounter().GetValue()
}
