package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/recurring"
)

// firerChildEnv carries a firerChild as JSON.
const firerChildEnv = "HERALD_TEST_FIRER_CHILD"

// firerChild is what a process firing recurring campaigns needs: the servers, a clock
// that runs Factor times faster than real time from Origin (so a minutely cron fires
// every few seconds), and how often it kills itself (SIGKILL) right after claiming an
// instant, noting it in KillLog first.
type firerChild struct {
	KafkaBrokers                  []string
	RedisURL, Prefix, TopicPrefix string
	FanoutLease                   time.Duration
	Origin                        time.Time
	Factor                        float64
	DieAfterClaim                 float64
	KillLog                       string
}

func (c firerChild) now() time.Time {
	return c.Origin.Add(time.Duration(float64(time.Since(c.Origin)) * c.Factor))
}

// runFirerChild ticks a recurring.Firer every 100 ms until SIGTERM (or its own SIGKILL).
func runFirerChild() int {
	var fc firerChild
	if err := json.Unmarshal([]byte(os.Getenv(firerChildEnv)), &fc); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	cfg := Config{KafkaBrokers: fc.KafkaBrokers, RedisURL: fc.RedisURL, Prefix: fc.Prefix, TopicPrefix: fc.TopicPrefix, FanoutLease: fc.FanoutLease,
		Now: fc.now, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d := NewDeps(cfg)
	defer d.Close()
	comp, err := d.Components()
	if err != nil {
		fmt.Fprintln(os.Stderr, "components:", err)
		return 1
	}
	f, err := Firer(d, comp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "firer:", err)
		return 1
	}
	f.Claimed = func(schedule string, at time.Time) {
		if rand.Float64() >= fc.DieAfterClaim {
			return
		}
		if lf, err := os.OpenFile(fc.KillLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(lf, "%s %s\n", schedule, at.UTC().Format(time.RFC3339))
			lf.Close()
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL) // claimed, not launched: no cleanup at all
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := f.Tick(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "tick:", err)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
	}
}

// Processes firing a minutely recurring campaign (on a clock 20 times faster than real
// time: an instant every 3 s) kill themselves with SIGKILL right after claiming an
// instant, half the time, and the test kills others at random moments; another firer
// takes each claimed run over. Six runs later: every instant from the first to the
// last ran exactly once (none skipped, none twice), and every contact got exactly one
// message per run at the sandbox.
func TestKilledFirersRunEachInstantOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts firer processes")
	}
	const n, runs, factor = 40, 6, 20
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Templates: welcomeSandbox},
		func(c *Config, _ *Stack) {
			c.NoRecurring = true // only the killable processes fire schedules
			c.NoJourneys = true
		})
	d := s.Deps
	comp := seedAudience(t, ctx, d, n, e2eTemplate)
	const pnid = "106540352240001"
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: pnid, Channel: "whatsapp", PhoneNumberID: pnid, Token: DevSandboxToken, Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	fc := firerChild{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		FanoutLease: 2 * time.Second, Origin: time.Now(), Factor: factor, DieAfterClaim: 0.5, KillLog: t.TempDir() + "/kills"}
	cp, err := CheckCampaign(ctx, d, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{pnid}})
	if err != nil {
		t.Fatal(err)
	}
	cp.ID, cp.Created = "", time.Time{}
	rdb, err := d.Redis()
	if err != nil {
		t.Fatal(err)
	}
	store := recurring.NewStore(rdb, d.Cfg.Prefix, fc.now)
	if _, err := store.Create(ctx, recurring.Spec{ID: "minutely", Cron: "* * * * *", Zone: "UTC", MaxRuns: runs, Campaign: cp}, false); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(fc)
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=firer", firerChildEnv+"="+string(b))}
	defer procs.stopAll()
	var mu sync.Mutex
	live := map[*exec.Cmd]bool{}
	exited := make(chan *exec.Cmd, 64)
	start := func() {
		cmd := procs.start()
		mu.Lock()
		live[cmd] = true
		mu.Unlock()
		go func() { _ = cmd.Wait(); exited <- cmd }()
	}
	// The firers this test waits on itself are stopped and reaped here, before
	// procs.stopAll: their Wait is this test's, and its end reaches stopAll through
	// exited (os/exec's ProcessState is not safe to read beside a Wait).
	defer func() {
		mu.Lock()
		for cmd := range live {
			_ = cmd.Process.Kill()
		}
		mu.Unlock()
		for {
			mu.Lock()
			n := len(live)
			mu.Unlock()
			if n == 0 {
				return
			}
			cmd := <-exited
			mu.Lock()
			delete(live, cmd)
			mu.Unlock()
		}
	}()
	for i := 0; i < 3; i++ {
		start()
	}
	rng := rand.New(rand.NewPCG(5, 6))
	ended := func() bool {
		sch, err := store.Get(ctx, "minutely")
		return err == nil && sch.State == recurring.Ended
	}
	deadline := time.Now().Add(3 * time.Minute)
	nextKill := time.Now().Add(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
	killed := 0
	for !ended() || pending(t, ctx, store) {
		if time.Now().After(deadline) {
			procs.logs()
			t.Fatalf("the schedule did not finish its %d runs within 3 minutes", runs)
		}
		select {
		case cmd := <-exited: // killed (by itself after a claim, or by us): another takes its place
			mu.Lock()
			delete(live, cmd)
			mu.Unlock()
			start()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(nextKill) {
			mu.Lock()
			for cmd := range live {
				_ = cmd.Process.Kill() // SIGKILL at a random moment
				killed++
				break
			}
			mu.Unlock()
			nextKill = time.Now().Add(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		}
	}
	selfKills := 0
	if b, err := os.ReadFile(fc.KillLog); err == nil {
		selfKills = strings.Count(string(b), "\n")
	}
	t.Logf("%d firers killed themselves right after a claim, %d killed at random moments", selfKills, killed)
	list, err := store.Runs(ctx, "minutely", 100)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Time]int{}
	var ids []string
	for _, r := range list {
		seen[r.ScheduledAt]++
		if r.Status != recurring.RunLaunched {
			t.Errorf("run %s: %s (%s %s)", r.ID, r.Status, r.Reason, r.Detail)
			continue
		}
		ids = append(ids, r.ID)
	}
	if len(ids) != runs {
		t.Fatalf("%d runs launched, want %d: %+v", len(ids), runs, list)
	}
	var first time.Time
	for at, k := range seen {
		if k != 1 {
			t.Errorf("instant %v recorded %d times", at, k)
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	for i := 0; i < runs; i++ {
		if seen[first.Add(time.Duration(i)*time.Minute)] != 1 {
			t.Errorf("instant %v (run %d) missing: the runs are %v", first.Add(time.Duration(i)*time.Minute), i+1, seen)
		}
	}
	// Every contact gets one message per run.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, id := range ids {
		waitCompletedWithin(t, wctx, comp.Campaigns, id, 2*time.Minute)
	}
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	per := map[string]map[string]int{}
	for _, r := range s.Sandbox.Records() {
		cid, _, ok := dispatcher.ParseCallbackData(r.CallbackData)
		if !ok {
			t.Fatalf("record without callback data: %+v", r)
		}
		if per[cid] == nil {
			per[cid] = map[string]int{}
		}
		per[cid][r.WaID]++
	}
	for _, id := range ids {
		if len(per[id]) != n {
			t.Errorf("run %s reached %d contacts, want %d", id, len(per[id]), n)
		}
		for wa, k := range per[id] {
			if k != 1 {
				t.Errorf("run %s: %s got %d messages", id, wa, k)
			}
		}
	}
	if len(per) != runs {
		t.Errorf("messages of %d campaigns, want %d", len(per), runs)
	}
}

// pending reports whether claimed runs wait to be launched.
func pending(t *testing.T, ctx context.Context, store *recurring.Store) bool {
	list, err := store.Runs(ctx, "minutely", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if r.Status == recurring.RunPending {
			return true
		}
	}
	return false
}
