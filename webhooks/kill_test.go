package webhooks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// TestDelivererChild is the deliverer process TestSIGKILLLosesNothing starts and kills;
// it does nothing in a normal run.
func TestDelivererChild(t *testing.T) {
	env := os.Getenv("HERALD_WEBHOOK_CHILD")
	if env == "" {
		t.Skip("run by TestSIGKILLLosesNothing")
	}
	f := strings.Split(env, "|") // brokers, topic, group, redis addr, prefix
	rdb := redis.NewClient(&redis.Options{Addr: f[3]})
	defer rdb.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	d, err := New(Config{Brokers: strings.Split(f[0], ","), Topic: f[1], Group: f[2], Store: NewStore(rdb, f[4]),
		Poll: 20 * time.Millisecond, Lease: 2 * time.Second, Concurrency: 4, BatchSize: 5, SessionTimeout: 6 * time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// A deliverer process killed with SIGKILL mid-stream (requests in flight, events read
// but not committed) loses nothing: a second process takes over the group's partitions
// and the dead one's claims, and the receiver gets every delivery.
func TestSIGKILLLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	e := newEnv(t)
	r := newReceiver(t)
	r.answer = func(int64) int {
		time.Sleep(20 * time.Millisecond) // a slow receiver: the kill finds requests in flight
		return http.StatusOK
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	sub, err := e.store.Create(e.ctx, Spec{URL: srv.URL, Kinds: []events.Kind{events.Sent, events.Delivered, events.Read, events.Clicked}})
	if err != nil {
		t.Fatal(err)
	}
	r.secret.Store(sub.Secret)
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDelivererChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "HERALD_WEBHOOK_CHILD="+strings.Join([]string{strings.Join(e.brokers, ","), e.topics.Events, e.group,
			testenv.RedisAddr(t), e.store.prefix}, "|"))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	first := child()
	evs := stream(60)
	e.publish(evs)
	want := 0
	for _, ev := range evs {
		if slices.Contains(sub.Kinds, ev.Kind) {
			want++
		}
	}
	var killedAt atomic.Int64
	waitFor(t, 60*time.Second, "the first process's deliveries", func() bool { return r.count() >= 40 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	killedAt.Store(int64(r.count()))
	if int(killedAt.Load()) >= want {
		t.Fatalf("the first process delivered everything (%d) before the kill", killedAt.Load())
	}
	child()
	waitFor(t, 90*time.Second, "every delivery after the kill", func() bool { return r.count() >= want })
	e.settled(sub.ID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != want || len(r.bad) > 0 {
		t.Fatalf("got %d distinct deliveries (bad %v), want %d", len(r.got), r.bad, want)
	}
	t.Logf("killed after %d of %d deliveries; %d repeated under the same id", killedAt.Load(), want, r.dups)
}
