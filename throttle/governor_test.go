package throttle

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/testenv"
)

// governors returns k governors on k separate Redis clients (as k processes would have),
// sharing one key prefix.
func governors(t *testing.T, k int) ([]*Governor, string) {
	t.Helper()
	_, prefix := testenv.Redis(t)
	addr := testenv.RedisAddr(t)
	gs := make([]*Governor, k)
	for i := range gs {
		rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 4})
		t.Cleanup(func() { rdb.Close() })
		gs[i] = NewGovernor(rdb, prefix)
	}
	return gs, prefix
}

// reserveAll has every governor take slots of sender concurrently, in chunks of random
// size up to maxChunk, until total slots are taken, and returns them (µs of Redis time),
// sorted.
func reserveAll(t *testing.T, gs []*Governor, sender string, lim Limits, total, maxChunk int, horizon time.Duration) []int64 {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var slots []int64
	left := total
	var wg sync.WaitGroup
	for k, g := range gs {
		rnd := rand.New(rand.NewPCG(uint64(k), 7))
		wg.Go(func() {
			for {
				mu.Lock()
				n := min(left, 1+rnd.IntN(maxChunk))
				left -= n
				mu.Unlock()
				if n <= 0 {
					return
				}
				res, err := g.ReserveWithin(ctx, sender, lim, n, horizon)
				if err != nil {
					t.Error(err)
					return
				}
				if res.N != n {
					t.Errorf("asked for %d slots within %v, got %d", n, horizon, res.N)
					return
				}
				mu.Lock()
				for i := 0; i < res.N; i++ {
					slots = append(slots, res.serverAt(i))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(slots)
	if len(slots) != total {
		t.Fatalf("got %d slots, want %d", len(slots), total)
	}
	for i := 1; i < len(slots); i++ {
		if slots[i] == slots[i-1] {
			t.Fatalf("slot %d handed out twice", slots[i])
		}
	}
	return slots
}

// checkWindows fails when any half-open window of length w holds more than max slots.
func checkWindows(t *testing.T, slots []int64, w time.Duration, max int) {
	t.Helper()
	if n, at := maxInWindow(slots, w.Microseconds()); n > max {
		t.Fatalf("%d slots in the %v window starting at %d µs; cap %d", n, w, at, max)
	}
}

func maxInWindow(slots []int64, w int64) (n int, at int64) {
	for i, j := 0, 0; i < len(slots); i++ {
		for slots[i]-slots[j] >= w {
			j++
		}
		if i-j+1 > n {
			n, at = i-j+1, slots[j]
		}
	}
	return n, at
}

// Four processes with a backlog share a sender capped at 1000 msg/s and 3000 a minute.
// Reserving minutes ahead simulates the backlog: the slot times are compared, not the
// wall clock, so a slow machine cannot fail the test.
func TestGovernorRateAndPerMinuteAcrossProcesses(t *testing.T) {
	gs, _ := governors(t, 4)
	lim := Limits{Rate: 1000, PerMinute: 3000, Slack: 2 * time.Millisecond}
	slots := reserveAll(t, gs, "s", lim, 4*lim.PerMinute, 300, 10*time.Minute)
	checkWindows(t, slots, time.Second+lim.Slack, int(lim.Rate))
	checkWindows(t, slots, time.Minute+lim.Slack, lim.PerMinute)
	// Plain 1 s and 60 s windows: the same, with the slack to spare.
	checkWindows(t, slots, time.Second, int(lim.Rate))
	checkWindows(t, slots, time.Minute, lim.PerMinute)
	// And it is not more cautious than it needs to be: each minute's cap is used in full,
	// at the rate, as soon as the window allows.
	w := (time.Minute + lim.Slack).Microseconds()
	for i := lim.PerMinute; i < len(slots); i++ {
		if d := slots[i] - slots[i-lim.PerMinute]; d != w {
			t.Fatalf("slots %d and %d are %d µs apart, want exactly the window (%d µs)", i-lim.PerMinute, i, d, w)
		}
	}
	for i := 1; i < lim.PerMinute; i++ {
		if d := slots[i] - slots[i-1]; d != lim.interval() {
			t.Fatalf("slots %d and %d of the first minute are %d µs apart, want the interval %d", i-1, i, d, lim.interval())
		}
	}
}

// Without a per-minute cap, concurrent reservations over real time are disjoint and
// spaced by the interval; the horizon is honoured.
func TestGovernorRateOverRealTime(t *testing.T) {
	gs, _ := governors(t, 4)
	lim := Limits{Rate: 2000, Slack: time.Millisecond}
	ctx := context.Background()
	var mu sync.Mutex
	var slots []int64
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for _, g := range gs {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				res, err := g.ReserveWithin(ctx, "s", lim, 50, 30*time.Millisecond)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for i := 0; i < res.N; i++ {
					at := res.serverAt(i)
					if at >= res.srvNow+30_000 {
						t.Errorf("slot %d µs past the horizon (now %d)", at, res.srvNow)
					}
					slots = append(slots, at)
				}
				mu.Unlock()
				if res.N < 50 {
					time.Sleep(time.Until(res.Next) - 15*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(slots)
	if len(slots) < 100 {
		t.Fatalf("only %d slots in a second at 2000/s", len(slots))
	}
	for i := 1; i < len(slots); i++ {
		if d := slots[i] - slots[i-1]; d < lim.interval() {
			t.Fatalf("slots %d µs apart, interval %d", d, lim.interval())
		}
	}
	checkWindows(t, slots, time.Second+lim.Slack, int(lim.Rate))
}

func TestReserveWithinGrantsWhatFits(t *testing.T) {
	gs, _ := governors(t, 1)
	g := gs[0]
	ctx := context.Background()
	lim := Limits{Rate: 10} // 100 ms: five slots reach half a second ahead
	iv := lim.interval()

	// A probe takes nothing.
	p, err := g.ReserveWithin(ctx, "s", lim, 10, 0)
	if err != nil || p.N != 0 || p.Held {
		t.Fatalf("probe = %+v, %v", p, err)
	}
	// Fewer than fit: all of them.
	r1, err := g.ReserveWithin(ctx, "s", lim, 5, time.Second)
	if err != nil || r1.N != 5 {
		t.Fatalf("reserve 5 = %+v, %v", r1, err)
	}
	if r1.srvStart < r1.srvNow || r1.srvStart > r1.srvNow+50_000 {
		t.Fatalf("idle sender's first slot at %d µs from now", r1.srvStart-r1.srvNow)
	}
	if r1.srvNext != r1.srvStart+5*iv || r1.Next.Sub(r1.Start) != 5*r1.Interval {
		t.Fatalf("next %d, want %d", r1.srvNext, r1.srvStart+5*iv)
	}
	// More than fit: exactly those before now+horizon, and Next is the first one after.
	r2, err := g.ReserveWithin(ctx, "s", lim, 1000, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	end := r2.srvNow + 2_000_000
	if r2.srvNow < r1.srvNext && r2.srvStart != r1.srvNext {
		t.Fatalf("second reservation starts at %d, want %d (right after the first)", r2.srvStart, r1.srvNext)
	}
	want := int((end - r2.srvStart + iv - 1) / iv)
	if r2.N != want || r2.serverAt(r2.N-1) >= end || r2.srvNext < end || r2.srvNext != r2.srvStart+int64(r2.N)*iv {
		t.Fatalf("granted %d (want %d), last %d, next %d, horizon end %d", r2.N, want, r2.serverAt(r2.N-1), r2.srvNext, end)
	}
	// Nothing fits: none granted, none taken.
	r3, err := g.ReserveWithin(ctx, "s", lim, 10, time.Millisecond)
	if err != nil || r3.N != 0 || r3.srvNext != r2.srvNext {
		t.Fatalf("reserve past the horizon = %+v, %v; next want %d", r3, err, r2.srvNext)
	}
	// Local times follow the server's: an idle sender's slot is about now.
	r4, err := g.ReserveWithin(ctx, "idle", lim, 1, time.Second)
	if err != nil || r4.N != 1 {
		t.Fatal(r4, err)
	}
	if d := time.Until(r4.Start); d < -time.Second || d > time.Second {
		t.Fatalf("idle sender's slot is %v from now on the local clock", d)
	}
	if _, err := g.ReserveWithin(ctx, "s", Limits{}, 1, time.Second); err == nil {
		t.Fatal("limits without a rate were accepted")
	}
}

// Warm-up: bursts at the rate, pauses of Pause ± Jitter between them, and the rate and
// per-minute caps hold throughout.
func TestWarmUpNeverExceedsCaps(t *testing.T) {
	gs, _ := governors(t, 3)
	lim := Limits{Rate: 100, PerMinute: 200, WarmUp: WarmUp{Burst: 20, Pause: 2 * time.Second, Jitter: 500 * time.Millisecond}}
	slots := reserveAll(t, gs, "s", lim, 700, 45, time.Hour)
	checkWindows(t, slots, time.Second, int(lim.Rate))
	checkWindows(t, slots, time.Minute, lim.PerMinute)
	iv := lim.interval()
	var bursts []int
	var pauses []int64
	run := 1
	for i := 1; i < len(slots); i++ {
		d := slots[i] - slots[i-1]
		switch {
		case d == iv:
			run++
		case d < iv:
			t.Fatalf("slots %d µs apart, below the interval", d)
		default:
			bursts = append(bursts, run)
			pauses = append(pauses, d)
			run = 1
		}
	}
	bursts = append(bursts, run)
	for i, b := range bursts {
		if b != lim.WarmUp.Burst {
			t.Fatalf("burst %d has %d slots, want %d (bursts %v)", i, b, lim.WarmUp.Burst, bursts)
		}
	}
	lo, hi := (lim.WarmUp.Pause - lim.WarmUp.Jitter).Microseconds(), (lim.WarmUp.Pause + lim.WarmUp.Jitter).Microseconds()
	var jittered bool
	for i, p := range pauses {
		if p < lo {
			t.Fatalf("pause %d of %d µs, below %d", i, p, lo)
		}
		// The per-minute cap may stretch a pause; otherwise it is within the jitter.
		if p > hi && p < 20*time.Second.Microseconds() {
			t.Fatalf("pause %d of %d µs, above %d", i, p, hi)
		}
		if p != pauses[0] {
			jittered = true
		}
	}
	if !jittered {
		t.Fatal("every pause is the same: no jitter")
	}
}

// Turning a per-minute cap on for a busy sender assumes the worst about the minute
// before (slots dense at the rate), rather than allowing a full minute's cap at once.
func TestPerMinuteCapOnABusySender(t *testing.T) {
	gs, _ := governors(t, 1)
	g := gs[0]
	ctx := context.Background()
	busy, err := g.Reserve(ctx, "s", 1000, 200) // 200 ms of slots, no log
	if err != nil {
		t.Fatal(err)
	}
	tat := busy.serverAt(busy.N-1) + 1000
	r, err := g.ReserveWithin(ctx, "s", Limits{Rate: 1000, PerMinute: 50}, 1, 2*time.Minute)
	if err != nil || r.N != 1 {
		t.Fatal(r, err)
	}
	if r.srvStart < tat-50*1000+time.Minute.Microseconds() {
		t.Fatalf("first capped slot %d µs after the busy run's end; want ≥ a minute after its last 50 slots",
			r.srvStart-tat)
	}
}

func TestHoldAndResume(t *testing.T) {
	gs, _ := governors(t, 2)
	g, other := gs[0], gs[1]
	ctx := context.Background()
	lim := Limits{Rate: 80}
	until := time.Now().Add(time.Hour)
	if err := g.Hold(ctx, "s", until); err != nil {
		t.Fatal(err)
	}
	r, err := other.ReserveWithin(ctx, "s", lim, 10, 10*time.Second)
	if err != nil || r.N != 0 || !r.Held {
		t.Fatalf("held sender got %+v, %v", r, err)
	}
	if d := r.Next.Sub(until); d < -time.Second || d > time.Second {
		t.Fatalf("hold ends at %v, want about %v", r.Next, until)
	}
	var he *HeldError
	if _, err := other.Reserve(ctx, "s", 80, 1); !errors.Is(err, ErrHeld) || !errors.As(err, &he) || he.Until.IsZero() {
		t.Fatalf("Reserve on a held sender = %v", err)
	}
	st, err := other.State(ctx, "s")
	if err != nil || st.HeldUntil.IsZero() {
		t.Fatalf("state = %+v, %v", st, err)
	}
	// Other senders are not held.
	if r, err := other.ReserveWithin(ctx, "t", lim, 1, time.Second); err != nil || r.N != 1 {
		t.Fatalf("another sender = %+v, %v", r, err)
	}
	if err := other.Resume(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if r, err := g.ReserveWithin(ctx, "s", lim, 3, time.Second); err != nil || r.N != 3 || r.Held {
		t.Fatalf("resumed sender got %+v, %v", r, err)
	}
	if st, _ := g.State(ctx, "s"); !st.HeldUntil.IsZero() {
		t.Fatalf("state after resume = %+v", st)
	}

	// 131048 holds for HoldFor; pushback never shortens a longer hold; Hold in the past resumes.
	g.WithConfig(GovernorConfig{HoldFor: 30 * time.Minute})
	if err := g.Pushback(ctx, "s", SignalHoldSender); err != nil {
		t.Fatal(err)
	}
	st, _ = g.State(ctx, "s")
	if d := time.Until(st.HeldUntil); d < 29*time.Minute || d > 31*time.Minute {
		t.Fatalf("131048 held the sender for %v, want 30m", d)
	}
	if err := g.Hold(ctx, "s", time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	_ = g.Pushback(ctx, "s", SignalHoldSender)
	if st, _ = g.State(ctx, "s"); time.Until(st.HeldUntil) < 119*time.Minute {
		t.Fatalf("pushback shortened a 2h hold to %v", time.Until(st.HeldUntil))
	}
	if err := g.Hold(ctx, "s", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if r, err := g.ReserveWithin(ctx, "s", lim, 1, time.Second); err != nil || r.N != 1 {
		t.Fatalf("after a hold in the past: %+v, %v", r, err)
	}
	// Signals that are not the sender's change nothing.
	if err := g.Pushback(ctx, "s", SignalBackoffRecipient); err != nil {
		t.Fatal(err)
	}
	if st, _ := g.State(ctx, "s"); st.Factor != 1 || !st.HeldUntil.IsZero() {
		t.Fatalf("a recipient back-off changed the sender: %+v", st)
	}
}

// 130429 halves the effective rate, more of them within the debounce do not slow it
// again, and it recovers linearly to the configured rate. Bounds come from measured
// elapsed time, so a slow machine only loosens them.
func TestPushbackSlowsThenRecovers(t *testing.T) {
	gs, _ := governors(t, 2)
	g, other := gs[0], gs[1]
	ctx := context.Background()
	const recovery = 2 * time.Second
	cfg := GovernorConfig{Recovery: recovery, Backoff: 300 * time.Millisecond}
	g.WithConfig(cfg)
	other.WithConfig(cfg)
	lim := Limits{Rate: 100}
	base := time.Duration(lim.interval()) * time.Microsecond

	before := time.Now()
	if err := g.Pushback(ctx, "s", SignalSlowSender); err != nil {
		t.Fatal(err)
	}
	_ = other.Pushback(ctx, "s", SignalSlowSender) // in flight together: debounced
	st, err := other.State(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(before)
	lo := 0.5
	if elapsed >= time.Second { // too slow for the debounce to apply: it was slowed twice
		lo = 0.25
	}
	if hi := 0.5 + 0.5*elapsed.Seconds()/recovery.Seconds(); st.Factor < lo || st.Factor > hi {
		t.Fatalf("factor %v after a 130429, want in [%v, %v]", st.Factor, lo, hi)
	}
	if st.NextFree.Before(before.Add(cfg.Backoff - 50*time.Millisecond)) {
		t.Fatalf("next free slot %v after the 130429, want the %v backoff", st.NextFree.Sub(before), cfg.Backoff)
	}
	r, err := other.ReserveWithin(ctx, "s", lim, 2, time.Minute)
	if err != nil || r.N != 2 {
		t.Fatal(r, err)
	}
	if (time.Since(before) < recovery && r.Interval <= base) || float64(r.Interval) > float64(base)/st.Factor+float64(time.Microsecond) {
		t.Fatalf("interval %v after the slowdown; base %v, factor %v", r.Interval, base, st.Factor)
	}
	// Recovered after the recovery time.
	time.Sleep(recovery + 50*time.Millisecond)
	st, _ = g.State(ctx, "s")
	r, err = g.ReserveWithin(ctx, "s", lim, 2, time.Minute)
	if err != nil || st.Factor != 1 || r.Interval != base || !st.SlowedAt.IsZero() {
		t.Fatalf("after recovery: factor %v, interval %v (base %v), %v", st.Factor, r.Interval, base, err)
	}

	// Without a debounce, repeated 130429s floor at MinFactor.
	g.WithConfig(GovernorConfig{Recovery: time.Hour, Debounce: time.Nanosecond, MinFactor: 0.125, Backoff: -1})
	for range 6 {
		if err := g.Pushback(ctx, "u", SignalSlowSender); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := g.State(ctx, "u"); st.Factor < 0.125 || st.Factor > 0.126 {
		t.Fatalf("factor %v after six 130429s, want the 0.125 floor", st.Factor)
	}
}

func TestGovernorStateOfAnIdleSender(t *testing.T) {
	gs, _ := governors(t, 1)
	st, err := gs[0].State(context.Background(), "nobody")
	if err != nil || st.Factor != 1 || !st.HeldUntil.IsZero() || st.Burst != 0 || st.LastMinute != 0 {
		t.Fatalf("state = %+v, %v", st, err)
	}
	if d := time.Until(st.NextFree); d < -time.Second || d > time.Second {
		t.Fatalf("idle sender next free in %v", d)
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  Limits
		ok   bool
	}{
		{"rate", Limits{Rate: 80}, true},
		{"no rate", Limits{}, false},
		{"negative per-minute", Limits{Rate: 1, PerMinute: -1}, false},
		{"slack too big", Limits{Rate: 1, Slack: time.Second}, false},
		{"warm-up", Limits{Rate: 1, WarmUp: WarmUp{Burst: 5, Pause: time.Second, Jitter: time.Second}}, true},
		{"warm-up without pause", Limits{Rate: 1, WarmUp: WarmUp{Burst: 5}}, false},
		{"jitter above pause", Limits{Rate: 1, WarmUp: WarmUp{Burst: 5, Pause: time.Second, Jitter: 2 * time.Second}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.lim.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v) = %v", tc.lim, err)
			}
		})
	}
}

// The cost of one reservation round trip (go test -bench Reserve ./throttle/).
func BenchmarkReserveWithin(b *testing.B) {
	rdb, prefix := testenv.Redis(b)
	g := NewGovernor(rdb, prefix)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		lim  Limits
		n    int
	}{
		{"rate/1", Limits{Rate: 1e6}, 1},
		{"rate/100", Limits{Rate: 1e6}, 100},
		{"per-minute/100", Limits{Rate: 1e6, PerMinute: 3e7}, 100},
		{"warm-up/100", Limits{Rate: 1e6, WarmUp: WarmUp{Burst: 50, Pause: time.Millisecond}}, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sender := bc.name
			for b.Loop() {
				if _, err := g.ReserveWithin(ctx, sender, bc.lim, bc.n, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A per-hour cap (email quotas) is exact like the per-minute one: the cap's slots go at
// the rate, and the next is placed an hour after the first of them, whatever process asks.
func TestPerHourCap(t *testing.T) {
	gs, _ := governors(t, 2)
	ctx := context.Background()
	lim := Limits{Rate: 100, PerHour: 30}
	r, err := gs[0].ReserveWithin(ctx, "mail", lim, 20, time.Minute)
	if err != nil || r.N != 20 {
		t.Fatal(r, err)
	}
	first := r.srvStart
	r, err = gs[1].ReserveWithin(ctx, "mail", lim, 20, time.Minute)
	if err != nil || r.N != 10 {
		t.Fatalf("the second process got %+v, %v; want the 10 slots left of the hour's 30", r, err)
	}
	if wait := time.Duration(r.srvNext-first) * time.Microsecond; wait < time.Hour {
		t.Fatalf("the hour's 31st slot is %v after its first; want at least an hour", wait)
	}
	r, err = gs[0].ReserveWithin(ctx, "mail", lim, 1, 2*time.Hour)
	if err != nil || r.N != 1 || time.Duration(r.srvStart-first)*time.Microsecond < time.Hour {
		t.Fatalf("a slot past the cap = %+v, %v; want one an hour after the first", r, err)
	}
	st, err := gs[1].State(ctx, "mail")
	if err != nil || st.LastHour != 30 {
		t.Fatalf("state %+v, %v; want 30 slots in the last hour", st, err)
	}
	if err := (Limits{Rate: 1, PerMinute: 10, PerHour: 100}).Validate(); err == nil {
		t.Fatal("a per-minute and a per-hour cap together were accepted")
	}
}
