package throttle

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeReserver is a single-process governor on the (fake) local clock: the same slot
// spacing as the real one, a horizon, and an optional hold.
type fakeReserver struct {
	mu    sync.Mutex
	tat   time.Time
	hold  time.Time
	calls int
}

func (f *fakeReserver) ReserveWithin(_ context.Context, _ string, lim Limits, n int, horizon time.Duration) (Reservation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	now := time.Now()
	if now.Before(f.hold) {
		return Reservation{Next: f.hold, Held: true}, nil
	}
	iv := time.Duration(lim.interval()) * time.Microsecond
	if f.tat.Before(now) {
		f.tat = now
	}
	r := Reservation{Start: f.tat, Interval: iv}
	for r.N < n && f.tat.Before(now.Add(horizon)) {
		r.N++
		f.tat = f.tat.Add(iv)
	}
	r.Next = f.tat
	return r, nil
}

func maxStartsInWindow(starts []time.Time, w time.Duration) int {
	ts := make([]int64, len(starts))
	for i, s := range starts {
		ts[i] = s.UnixMicro()
	}
	slices.Sort(ts)
	n, _ := maxInWindow(ts, w.Microseconds())
	return n
}

// A pacer that stalls (GC, a loaded machine) does not catch up in a burst: the slots it
// missed are forfeited, and no one-second window of start times holds more than the rate.
func TestPaceNeverBurstsAfterAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 80
		var starts []time.Time
		res, err := Pace(context.Background(), &fakeReserver{}, "s", Limits{Rate: rate}, 400, time.Hour, func(i int) error {
			if i != len(starts) {
				t.Fatalf("started job %d, want %d", i, len(starts))
			}
			starts = append(starts, time.Now())
			switch i {
			case 50:
				time.Sleep(700 * time.Millisecond) // misses ~56 slots
			case 200:
				time.Sleep(3 * time.Second)
			}
			return nil
		}, nil)
		if err != nil || res.Started != 400 {
			t.Fatalf("pace = %+v, %v", res, err)
		}
		if n := maxStartsInWindow(starts, time.Second); n > rate {
			t.Fatalf("%d starts in one second at %d msg/s", n, rate)
		}
		if res.Forfeited < 150 {
			t.Fatalf("forfeited %d slots; the stalls should have cost ~200", res.Forfeited)
		}
	})
}

// Pace stops at the horizon and says when the sender is free again.
func TestPaceStopsAtTheHorizon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeReserver{}
		t0 := time.Now()
		var last time.Time
		res, err := Pace(context.Background(), g, "s", Limits{Rate: 100}, 1000, 2*time.Second, func(int) error {
			last = time.Now()
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Started < 190 || res.Started > 200 || !last.Before(t0.Add(2*time.Second)) {
			t.Fatalf("started %d, the last at %v: want ~200 within the 2 s horizon", res.Started, last.Sub(t0))
		}
		if res.Next.Before(t0.Add(2*time.Second)) || res.Next.After(t0.Add(2*time.Second+20*time.Millisecond)) {
			t.Fatalf("next %v after the start, want the horizon", res.Next.Sub(t0))
		}
		if g.calls != 1 {
			t.Fatalf("%d reservations; one covers the horizon", g.calls)
		}
		// All at once when they fit.
		res, err = Pace(context.Background(), &fakeReserver{}, "s", Limits{Rate: 100}, 10, time.Second, func(int) error { return nil }, nil)
		if err != nil || res.Started != 10 || res.Forfeited != 0 || res.Unused != 0 {
			t.Fatalf("pace 10 = %+v, %v", res, err)
		}
	})
}

// every runs about once a second, also during long waits, and can drop the rest.
func TestPaceEveryDropsJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls []time.Time
		t0 := time.Now()
		jobs := 500
		res, err := Pace(context.Background(), &fakeReserver{}, "s", Limits{Rate: 50}, jobs, time.Hour, func(int) error { return nil },
			func(started int) (int, error) {
				calls = append(calls, time.Now())
				if time.Since(t0) >= 3*time.Second {
					return started, nil // the campaign was paused: drop the rest
				}
				return jobs, nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != 3 || res.Started < 145 || res.Started > 151 {
			t.Fatalf("every called %d times, %d started; want 3 calls and ~150 started", len(calls), res.Started)
		}
		if res.Unused != 500-res.Started {
			t.Fatalf("unused %d, want the %d reserved for dropped jobs", res.Unused, 500-res.Started)
		}

		// A distant slot: every still runs each second while Pace waits.
		g := &fakeReserver{tat: time.Now().Add(10 * time.Second)}
		calls = nil
		res, err = Pace(context.Background(), g, "s", Limits{Rate: 10}, 5, time.Minute, func(int) error { return nil },
			func(started int) (int, error) {
				calls = append(calls, time.Now())
				return 5, nil
			})
		if err != nil || res.Started != 5 || len(calls) < 9 {
			t.Fatalf("pace = %+v, %v, every called %d times in 10 s", res, err, len(calls))
		}
		// every may not un-start jobs.
		_, err = Pace(context.Background(), &fakeReserver{}, "s", Limits{Rate: 10}, 50, time.Minute, func(int) error { return nil },
			func(started int) (int, error) { return started - 1, nil })
		if err == nil {
			t.Fatal("every returning fewer jobs than started was accepted")
		}
	})
}

func TestPaceHeldCancelledAndFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		until := time.Now().Add(time.Hour)
		res, err := Pace(context.Background(), &fakeReserver{hold: until}, "s", Limits{Rate: 10}, 5, time.Minute,
			func(int) error { t.Fatal("started a job of a held sender"); return nil }, nil)
		if err != nil || res.Started != 0 || !res.Held || !res.Next.Equal(until) {
			t.Fatalf("held = %+v, %v", res, err)
		}

		ctx, cancel := context.WithCancel(context.Background())
		res, err = Pace(ctx, &fakeReserver{}, "s", Limits{Rate: 10}, 100, time.Minute, func(i int) error {
			if i == 4 {
				cancel()
			}
			return nil
		}, nil)
		if !errors.Is(err, context.Canceled) || res.Started != 5 {
			t.Fatalf("cancelled = %+v, %v", res, err)
		}

		boom := errors.New("boom")
		res, err = Pace(context.Background(), &fakeReserver{}, "s", Limits{Rate: 10}, 100, time.Minute, func(i int) error {
			if i == 2 {
				return boom
			}
			return nil
		}, nil)
		if !errors.Is(err, boom) || res.Started != 2 {
			t.Fatalf("failing start = %+v, %v", res, err)
		}
	})
}

// Several pacers on real Redis, each its own process in all but name, share a sender: the
// start times, on the real clock, never put more than the rate in a second. A slow
// machine forfeits slots (fewer starts), it cannot overshoot.
func TestPaceAcrossPacersOnRedis(t *testing.T) {
	gs, _ := governors(t, 3)
	const rate = 200
	var mu sync.Mutex
	var starts []time.Time
	var forfeited int
	var wg sync.WaitGroup
	deadline := time.Now().Add(1500 * time.Millisecond)
	for _, g := range gs {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				res, err := Pace(context.Background(), g, "s", Limits{Rate: rate}, 40, 300*time.Millisecond, func(int) error {
					mu.Lock()
					starts = append(starts, time.Now())
					mu.Unlock()
					return nil
				}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				forfeited += res.Forfeited
				mu.Unlock()
				if res.Started < 40 {
					time.Sleep(time.Until(res.Next) - 100*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	if len(starts) < rate/2 {
		t.Fatalf("only %d starts in 1.5 s at %d msg/s", len(starts), rate)
	}
	if n := maxStartsInWindow(starts, time.Second); n > rate {
		t.Fatalf("%d starts in one second at %d msg/s", n, rate)
	}
	t.Logf("%d starts, %d forfeited", len(starts), forfeited)
}

// No slot, no send: with Redis unreachable Pace starts nothing and says why.
func TestPaceFailsClosedWithoutRedis(t *testing.T) {
	gs, _ := governors(t, 1)
	g := gs[0]
	g.rdb.Close()
	res, err := Pace(context.Background(), g, "s", Limits{Rate: 80}, 10, time.Second, func(int) error {
		t.Fatal("a job started without a slot")
		return nil
	}, nil)
	if err == nil || res.Started != 0 {
		t.Fatalf("pace with Redis down = %+v, %v", res, err)
	}
}
