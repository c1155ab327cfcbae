package journeys

import (
	"testing"
	"time"
)

// A paused journey's due timers are parked: no engine leases them (their score stays
// their due time however often the engines tick), nothing runs; resume fires them at
// the next tick, each once.
func TestPausedTimersParkedUntilResume(t *testing.T) {
	r := newRig(t, `id: pz
senders: [s1]
entry: read
steps:
  - id: nap
    wait: 1h
  - id: hello
    send: hello_tpl
`)
	for c := uint32(1); c <= 3; c++ {
		if err := r.eng.Handle(r.ctx, Event{ID: "r" + string(rune('0'+c)), Kind: OnRead, Contact: c}); err != nil {
			t.Fatal(err)
		}
	}
	other := r.newEngine()
	if _, err := r.store.SetState(r.ctx, "pz", Paused); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*Engine{r.eng, other} {
		if err := e.Refresh(r.ctx); err != nil {
			t.Fatal(err)
		}
	}
	scores := func() []float64 {
		zs := r.eng.cfg.Redis.ZRangeWithScores(r.ctx, r.eng.timersKey("pz"), 0, -1).Val()
		out := make([]float64, len(zs))
		for i, z := range zs {
			out[i] = z.Score
		}
		return out
	}
	parked := scores()
	if len(parked) != 3 {
		t.Fatalf("timers %v", parked)
	}
	r.clk.add(2 * time.Hour)
	for round := 0; round < 5; round++ { // past the lease (10 s) several times
		for _, e := range []*Engine{r.eng, other} {
			if n, err := e.Tick(r.ctx); n != 0 || err != nil {
				t.Fatalf("round %d: fired %d while paused, %v", round, n, err)
			}
		}
		r.clk.add(11 * time.Second)
	}
	if got := scores(); len(got) != 3 || got[0] != parked[0] || got[2] != parked[2] {
		t.Fatalf("timers re-scored while paused: %v, were %v", got, parked)
	}
	if n := len(r.out.jobs(t)); n != 0 {
		t.Fatalf("%d sends while paused", n)
	}
	// Resume: the next tick fires every parked timer, once.
	if _, err := r.store.SetState(r.ctx, "pz", Active); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*Engine{r.eng, other} {
		if err := e.Refresh(r.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.eng.Tick(r.ctx); n != 3 || err != nil {
		t.Fatalf("fired %d after resume, %v", n, err)
	}
	if n, _ := other.Tick(r.ctx); n != 0 {
		t.Fatalf("fired %d more", n)
	}
	if jobs := r.out.jobs(t); len(jobs) != 3 {
		t.Fatalf("%d sends after resume, want 3", len(jobs))
	}
	if n := r.eng.timers(r.ctx, "pz"); n != 0 {
		t.Fatalf("%d timers left", n)
	}
}
