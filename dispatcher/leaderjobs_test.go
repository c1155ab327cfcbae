package dispatcher

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
)

// checkFor polls cond until it holds, failing after a generous deadline (a guard against
// hangs, not a timing assertion).
func checkFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Only the leader runs the leader jobs, one run at a time; when it stops, the scheduler
// that takes over runs them.
func TestLeaderJobsRunOnTheLeaderOnly(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	var (
		mu          sync.Mutex
		runs        = map[string]int{}
		running     atomic.Int32
		overlapping atomic.Bool
	)
	job := func(name string) LeaderJob {
		return LeaderJob{Name: "count", Every: 10 * time.Millisecond, Run: func(ctx context.Context) error {
			if running.Add(1) > 1 {
				overlapping.Store(true)
			}
			defer running.Add(-1)
			mu.Lock()
			runs[name]++
			mu.Unlock()
			time.Sleep(30 * time.Millisecond) // longer than Every: the next run waits for this one
			return nil
		}}
	}
	count := func() (a, b int) {
		mu.Lock()
		defer mu.Unlock()
		return runs["a"], runs["b"]
	}
	start := func(name string) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		s := &Scheduler{Delayed: NewDelayed(rdb, prefix), Outbound: memPublisher{}, Redis: rdb, Prefix: prefix,
			Poll: 5 * time.Millisecond, TTL: 300 * time.Millisecond, Jobs: []LeaderJob{job(name)}}
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(ctx) }()
		stopped := false
		stop = func() {
			if !stopped {
				stopped = true
				cancel()
				<-done
			}
		}
		t.Cleanup(stop)
		return stop
	}
	stopA := start("a")
	checkFor(t, "scheduler a to lead and run its job", func() bool { a, _ := count(); return a >= 1 })
	start("b")
	checkFor(t, "more runs on the leader", func() bool { a, _ := count(); return a >= 4 })
	if _, b := count(); b != 0 {
		t.Fatalf("the scheduler that does not lead ran its job %d times", b)
	}
	stopA() // returns once its job's run has ended
	a, _ := count()
	checkFor(t, "scheduler b to take over and run its job", func() bool { _, b := count(); return b >= 2 })
	if a2, _ := count(); a2 != a {
		t.Fatalf("the stopped scheduler ran its job %d more times", a2-a)
	}
	if overlapping.Load() {
		t.Fatal("two runs of the job overlapped")
	}
}
