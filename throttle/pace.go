package throttle

import (
	"context"
	"fmt"
	"time"
)

// Reserver hands out a sender's send slots (*Governor).
type Reserver interface {
	ReserveWithin(ctx context.Context, sender string, lim Limits, n int, horizon time.Duration) (Reservation, error)
}

var _ Reserver = (*Governor)(nil)

const (
	// PaceTolerance is how late after its slot Pace still starts a job. A slot reached
	// later (a stall: GC, a loaded machine) is forfeited. Timer wake-ups here are late by
	// ~0.6 ms at the median and ~2 ms at p99.9 on an idle machine.
	PaceTolerance = 4 * time.Millisecond
	// ClockAllowance covers the error of mapping Redis time to each process's clock: at
	// most half the best round trip each (tens of µs on a LAN), and two processes may err
	// in opposite directions.
	ClockAllowance = time.Millisecond
	// PaceSlack is the least (and default) Limits.Slack Pace reserves with: PaceTolerance
	// + ClockAllowance, which is what keeps every window of start times within the caps.
	// It costs PaceSlack / 1 s of the rate (0.5%). A larger Slack is margin for the
	// request's trip to the provider: a request delayed by more than the margin (plus
	// the tolerance its start did not use) can meet later ones in one window there.
	PaceSlack = PaceTolerance + ClockAllowance
	// PaceCheckEvery is how often Pace calls its every callback.
	PaceCheckEvery = time.Second
)

// PaceResult is what one Pace call did.
type PaceResult struct {
	Started   int // jobs started: indices 0 .. Started-1
	Forfeited int // slots given up because they were reached later than PaceTolerance
	Unused    int // reserved slots left unused because every dropped the jobs meant for them
	// Next is when the sender is next free: defer the jobs not started until then (they
	// hold no slot meanwhile). When Held, the sender is on hold until Next.
	Next time.Time
	Held bool
}

// Pace starts n jobs of sender, each in a slot of its own from the governor, and returns
// when all are started or the horizon (from now) is reached.
//
// Every wake-up starts the job whose slot is due. A slot reached later than
// PaceTolerance is forfeited, never used in a burst to catch up, and the jobs left
// without a slot get fresh slots (within what remains of the horizon). Slots are
// reserved with lim.Slack ≥ PaceSlack, so with every start within PaceTolerance of its
// slot, and each process's clock mapped to Redis's within ClockAllowance, a 1 s window
// of start times holds at most ⌈Rate⌉ jobs of the sender and a 60 s window at most the
// per-minute cap (or ⌈60 × Rate⌉), across all processes: the limits themselves, not
// limit+1. The cost is Slack / 1 s of throughput plus the forfeited slots. The
// request's trip to the provider is outside this guarantee; slack beyond PaceSlack is
// margin for it.
//
// start(i) starts job i (i counts up from 0 in the caller's current order). It must
// begin the send at once and not block: Pace checks lateness just before calling it.
// An error from start stops Pace and is returned. every, if not nil, is called about
// once a second (PaceCheckEvery), also while Pace waits for a distant slot, so the
// caller can drop jobs (a paused campaign): it gets the number started so far, may
// reorder or remove the jobs from that index on, and returns the new total n (≥
// started). Slots reserved for dropped jobs are left unused (Unused).
//
// Pace returns early with the result so far when ctx is cancelled (ctx.Err()), when
// the governor fails (fail closed: nothing starts without a slot), or when the sender is
// held (Held, Started may be 0). Jobs not started are the caller's to defer until Next.
func Pace(ctx context.Context, g Reserver, sender string, lim Limits, n int, horizon time.Duration,
	start func(i int) error, every func(started int) (n int, err error)) (PaceResult, error) {
	lim.Slack = max(lim.Slack, PaceSlack)
	var res PaceResult
	deadline := time.Now().Add(horizon)
	checked := time.Now()
	// check calls every when it is due; it reports whether jobs remain.
	check := func() (bool, error) {
		if every == nil || time.Since(checked) < PaceCheckEvery {
			return res.Started < n, nil
		}
		checked = time.Now()
		m, err := every(res.Started)
		if err != nil {
			return false, err
		}
		if m < res.Started {
			return false, fmt.Errorf("pace %s: every returned %d jobs, fewer than the %d started", sender, m, res.Started)
		}
		n = m
		return res.Started < n, nil
	}
	for res.Started < n {
		asked := n - res.Started
		r, err := g.ReserveWithin(ctx, sender, lim, asked, time.Until(deadline))
		if err != nil {
			return res, err
		}
		res.Next, res.Held = r.Next, r.Held
		if r.N == 0 {
			return res, nil
		}
		forfeited := 0
		for slot := 0; slot < r.N; slot++ {
			at := r.At(slot)
			more, err := wait(ctx, at, every != nil, &checked, check)
			if err != nil {
				return res, err
			}
			if !more {
				res.Unused += r.N - slot
				break
			}
			if time.Since(at) > PaceTolerance {
				res.Forfeited++
				forfeited++
				continue
			}
			if err := start(res.Started); err != nil {
				return res, err
			}
			res.Started++
		}
		if r.N < asked && forfeited == 0 {
			return res, nil // the horizon cut the reservation: the rest waits until Next
		}
	}
	return res, nil
}

// wait sleeps until at, calling check when it is due meanwhile (if checking) and once
// at the end. It returns whether jobs remain.
func wait(ctx context.Context, at time.Time, checking bool, checked *time.Time, check func() (bool, error)) (bool, error) {
	for {
		more, err := check()
		if err != nil || !more {
			return more, err
		}
		d := time.Until(at)
		if d <= 0 {
			return true, ctx.Err()
		}
		if checking {
			if d = min(d, time.Until(checked.Add(PaceCheckEvery))); d <= 0 {
				continue
			}
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		}
	}
}
