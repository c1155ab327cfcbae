package recurring

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// countingPublisher counts the jobs published per campaign.
type countingPublisher struct {
	mu   sync.Mutex
	jobs map[string]map[uint32]int
}

func (p *countingPublisher) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.jobs == nil {
		p.jobs = map[string]map[uint32]int{}
	}
	for _, m := range msgs {
		j, err := dispatcher.UnmarshalJob(m.Value)
		if err != nil {
			continue
		}
		if p.jobs[j.Campaign] == nil {
			p.jobs[j.Campaign] = map[uint32]int{}
		}
		p.jobs[j.Campaign][j.Contact]++
	}
	return nil
}

func (p *countingPublisher) campaign(id string) map[uint32]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[uint32]int{}
	for c, n := range p.jobs[id] {
		out[c] = n
	}
	return out
}

type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }

// fixedSegment is an audience of given contacts, whatever the expression.
type fixedSegment struct{ ids []uint32 }

func (s fixedSegment) Evaluate(context.Context, string) (*roaring.Bitmap, error) {
	return roaring.BitmapOf(s.ids...), nil
}

type rig struct {
	store *Store
	cps   *dispatcher.Campaigns
	out   *countingPublisher
	clk   *clock
	seg   fixedSegment
}

func newRig(t *testing.T, start time.Time) *rig {
	rdb, prefix := testenv.Redis(t)
	clk := &clock{t: start}
	out := &countingPublisher{}
	r := &rig{clk: clk, out: out, seg: fixedSegment{ids: []uint32{1, 2, 3, 5, 8}},
		store: NewStore(rdb, prefix, clk.Now),
		cps:   dispatcher.NewCampaigns(dispatcher.CampaignsConfig{Redis: rdb, Prefix: prefix, Outbound: out, Events: discard{}, Chunk: 2}),
	}
	return r
}

func (r *rig) firer() *Firer {
	return &Firer{Store: r.store, Campaigns: r.cps, Segments: r.seg, Now: r.clk.Now}
}

func (r *rig) spec(id, cron string) Spec {
	return Spec{ID: id, Cron: cron, Zone: "Europe/Berlin",
		Campaign: dispatcher.Campaign{Segment: "vip", Template: "welcome", Senders: []string{"s1"}}}
}

// launchedOnce checks that run id's campaign exists, is launched, and had each member of
// the audience queued exactly once.
func (r *rig) launchedOnce(t *testing.T, id string) {
	t.Helper()
	st, err := r.cps.Status(context.Background(), id)
	if err != nil {
		t.Fatalf("run %s: %v", id, err)
	}
	if st.State != dispatcher.Running && st.State != dispatcher.Completed {
		t.Fatalf("run %s is %s", id, st.State)
	}
	jobs := r.out.campaign(id)
	if len(jobs) != len(r.seg.ids) {
		t.Fatalf("run %s queued %d contacts, want %d", id, len(jobs), len(r.seg.ids))
	}
	for c, n := range jobs {
		if n != 1 {
			t.Fatalf("run %s queued contact %d %d times", id, c, n)
		}
	}
}

// Two firers ticking at once over a day of half-hourly instants: each instant runs
// exactly once, as one campaign queued once.
func TestTwoFirersRunEachInstantOnce(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 12, 7, 9, 59, 0, 0, mustZone(t, "Europe/Berlin"))
	r := newRig(t, start)
	if _, err := r.store.Create(ctx, r.spec("halfhour", "0,30 * * * *"), false); err != nil {
		t.Fatal(err)
	}
	a, b := r.firer(), r.firer()
	var launches atomic.Int64
	for step := 0; step < 48*3; step++ { // a day in 10-minute steps
		r.clk.Add(10 * time.Minute)
		var wg sync.WaitGroup
		for _, f := range []*Firer{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids, err := f.Tick(ctx)
				if err != nil {
					t.Error(err)
				}
				launches.Add(int64(len(ids)))
			}()
		}
		wg.Wait()
	}
	runs, err := r.store.Runs(ctx, "halfhour", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 48 {
		t.Fatalf("%d runs, want 48 (one per half hour of the day)", len(runs))
	}
	seen := map[string]bool{}
	for _, run := range runs {
		if run.Status != RunLaunched || seen[run.ID] {
			t.Fatalf("run %+v (seen before: %v)", run, seen[run.ID])
		}
		seen[run.ID] = true
		r.launchedOnce(t, run.ID)
	}
	if launches.Load() != 48 {
		t.Fatalf("Tick reported %d launches, want 48", launches.Load())
	}
	if !seen["halfhour-20261207T1000"] || !seen["halfhour-20261208T0930"] {
		t.Fatalf("run ids: %v", seen)
	}
	sch, _ := r.store.Get(ctx, "halfhour")
	if sch.Runs != 48 {
		t.Fatalf("schedule counts %d runs", sch.Runs)
	}
}

// A firer that dies after claiming an instant (before or after creating the run's
// campaign) leaves it pending: the next tick of another firer launches it, once.
func TestCrashBetweenClaimAndLaunch(t *testing.T) {
	ctx := context.Background()
	loc := mustZone(t, "Europe/Berlin")
	r := newRig(t, time.Date(2026, 12, 7, 9, 0, 0, 0, loc))
	if _, err := r.store.Create(ctx, r.spec("daily", "0 10 * * *"), false); err != nil {
		t.Fatal(err)
	}
	dying := r.firer()
	// Day 1: claimed, then the process dies before anything else.
	r.clk.Set(time.Date(2026, 12, 7, 10, 0, 1, 0, loc))
	if err := dying.claim(ctx, "daily", r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	runs, _ := r.store.Runs(ctx, "daily", 10)
	if len(runs) != 1 || runs[0].Status != RunPending {
		t.Fatalf("after the claim: %+v", runs)
	}
	// Day 2: claimed, its campaign created and its audience stored, then death.
	r.clk.Set(time.Date(2026, 12, 8, 10, 0, 1, 0, loc))
	if err := dying.claim(ctx, "daily", r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	sch, _ := r.store.Get(ctx, "daily")
	w, _ := sch.parseWhen()
	cp, _ := sch.runCampaign(w, "daily-20261208T1000", time.Date(2026, 12, 8, 10, 0, 0, 0, loc))
	if _, err := r.cps.CreateRun(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cps.StoreAudience(ctx, cp.ID, roaring.BitmapOf(r.seg.ids...)); err != nil {
		t.Fatal(err)
	}
	// Another process ticks (twice, and concurrently with a third).
	r.clk.Add(time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.firer().Tick(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if _, err := r.firer().Tick(ctx); err != nil {
		t.Fatal(err)
	}
	runs, _ = r.store.Runs(ctx, "daily", 10)
	if len(runs) != 2 {
		t.Fatalf("runs %+v", runs)
	}
	for _, run := range runs {
		if run.Status != RunLaunched {
			t.Fatalf("run %+v not launched", run)
		}
		r.launchedOnce(t, run.ID)
	}
	if n, _ := r.store.rdb.ZCard(ctx, r.store.pendingKey()).Result(); n != 0 {
		t.Fatalf("%d runs still pending", n)
	}
}

// Missed instants: within the catch-up window the latest one runs late, once; older
// ones are recorded as skipped with the reason.
func TestCatchUpWindow(t *testing.T) {
	ctx := context.Background()
	loc := mustZone(t, "Europe/Berlin")
	r := newRig(t, time.Date(2026, 12, 7, 8, 30, 0, 0, loc))
	sp := r.spec("hourly", "0 * * * *")
	sp.CatchUpMS = (45 * time.Minute).Milliseconds()
	if _, err := r.store.Create(ctx, sp, false); err != nil {
		t.Fatal(err)
	}
	f := r.firer()
	// Down from 08:30 to 09:40: the 09:00 instant is 40 min late, within 45 min: it runs.
	r.clk.Set(time.Date(2026, 12, 7, 9, 40, 0, 0, loc))
	if ids, err := f.Tick(ctx); err != nil || len(ids) != 1 || ids[0] != "hourly-20261207T0900" {
		t.Fatalf("late run: %v, %v", ids, err)
	}
	// Ticking again changes nothing.
	if ids, err := f.Tick(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("second tick: %v, %v", ids, err)
	}
	// Down from 09:40 to 13:30: 10:00, 11:00 and 12:00 are past the window (skipped,
	// missed); 13:00 is 30 min late: it runs.
	r.clk.Set(time.Date(2026, 12, 7, 13, 30, 0, 0, loc))
	if ids, err := f.Tick(ctx); err != nil || len(ids) != 1 || ids[0] != "hourly-20261207T1300" {
		t.Fatalf("late run after a long outage: %v, %v", ids, err)
	}
	// Down from 13:30 to 16:50: every instant is past the window: no run at all.
	r.clk.Set(time.Date(2026, 12, 7, 16, 50, 0, 0, loc))
	if ids, err := f.Tick(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("after an outage longer than the window: %v, %v", ids, err)
	}
	// Two instants within a 2h window (down 17:30 → 18:20 with a 90 min window): the
	// latest runs, the earlier one is superseded.
	r.clk.Set(time.Date(2026, 12, 7, 17, 0, 5, 0, loc))
	if ids, _ := f.Tick(ctx); len(ids) != 1 {
		t.Fatalf("17:00 on time: %v", ids)
	}
	runs, err := r.store.Runs(ctx, "hourly", 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, run := range runs {
		got[run.ID] = string(run.Status) + " " + run.Reason
		if run.Status == RunLaunched {
			r.launchedOnce(t, run.ID)
		}
	}
	want := map[string]string{
		"hourly-20261207T0900": "launched ", "hourly-20261207T1000": "skipped missed", "hourly-20261207T1100": "skipped missed",
		"hourly-20261207T1200": "skipped missed", "hourly-20261207T1300": "launched ", "hourly-20261207T1400": "skipped missed",
		"hourly-20261207T1500": "skipped missed", "hourly-20261207T1600": "skipped missed", "hourly-20261207T1700": "launched ",
	}
	if len(got) != len(want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("run %s: %q, want %q", id, got[id], w)
		}
	}
	for _, run := range runs {
		if run.ID == "hourly-20261207T0900" && run.LateMS != (40*time.Minute).Milliseconds() {
			t.Errorf("the late run records %d ms late, want 40 min", run.LateMS)
		}
	}

	// Superseded: a 2h window, down over two instants.
	sp2 := r.spec("often", "0 * * * *")
	sp2.CatchUpMS = (2 * time.Hour).Milliseconds()
	if _, err := r.store.Create(ctx, sp2, false); err != nil {
		t.Fatal(err)
	}
	r.clk.Set(time.Date(2026, 12, 7, 19, 10, 0, 0, loc))
	if ids, err := f.Tick(ctx); err != nil || len(ids) != 2 || ids[1] != "often-20261207T1900" {
		t.Fatalf("superseding run (and the hourly one's 19:00): %v, %v", ids, err)
	}
	runs, _ = r.store.Runs(ctx, "often", 10)
	if len(runs) != 2 || runs[1].ID != "often-20261207T1800" || runs[1].Reason != ReasonSuperseded {
		t.Fatalf("runs %+v", runs)
	}
}

// Max runs and until end a schedule; pause holds it and resume starts at the next instant
// after now (what passed while paused does not run).
func TestScheduleLifecycle(t *testing.T) {
	ctx := context.Background()
	loc := mustZone(t, "Europe/Berlin")
	r := newRig(t, time.Date(2026, 12, 7, 9, 0, 0, 0, loc))
	sp := r.spec("twice", "0 10 * * *")
	sp.MaxRuns = 2
	if _, err := r.store.Create(ctx, sp, false); err != nil {
		t.Fatal(err)
	}
	until := r.spec("until", "0 10 * * *")
	until.Until = time.Date(2026, 12, 8, 12, 0, 0, 0, loc)
	if _, err := r.store.Create(ctx, until, false); err != nil {
		t.Fatal(err)
	}
	paused := r.spec("held", "0 10 * * *")
	if _, err := r.store.Create(ctx, paused, true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Create(ctx, r.spec("held", "0 11 * * *"), false); err == nil {
		t.Fatal("a second schedule with the same id was created")
	}
	f := r.firer()
	for d := 7; d <= 10; d++ {
		r.clk.Set(time.Date(2026, 12, d, 10, 0, 1, 0, loc))
		if _, err := f.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if d == 8 {
			if _, err := r.store.Resume(ctx, "held"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id, want := range map[string]int{"twice": 2, "until": 2, "held": 2} {
		sch, err := r.store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		runs, _ := r.store.Runs(ctx, id, 10)
		if sch.Runs != want || len(runs) != want {
			t.Errorf("%s: %d runs (%d records), want %d", id, sch.Runs, len(runs), want)
		}
		if id != "held" && (sch.State != Ended || sch.EndReason == "") {
			t.Errorf("%s: state %s (%q), want ended", id, sch.State, sch.EndReason)
		}
	}
	if _, err := r.store.Pause(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	r.clk.Set(time.Date(2026, 12, 11, 10, 0, 1, 0, loc))
	if ids, _ := f.Tick(ctx); len(ids) != 0 {
		t.Fatalf("a paused schedule ran: %v", ids)
	}
	if _, err := r.store.Pause(ctx, "twice"); err == nil {
		t.Fatal("an ended schedule was paused")
	}
	if err := r.store.Delete(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Get(ctx, "held"); err == nil {
		t.Fatal("deleted schedule still there")
	}
	// Its runs' campaigns stay.
	if _, err := r.cps.Status(ctx, "held-20261209T1000"); err != nil {
		t.Fatal(err)
	}
}

// Two scheduler processes, each ticking a firer as a leader job: every instant runs once,
// also across a change of leader (the first one stops half-way).
func TestSchedulersFireEachInstantOnceAcrossLeaderChange(t *testing.T) {
	ctx := context.Background()
	loc := mustZone(t, "America/New_York")
	r := newRig(t, time.Date(2026, 3, 7, 23, 50, 0, 0, loc)) // over the spring-forward night
	sp := r.spec("q", "*/15 * * * *")
	sp.Zone = "America/New_York"
	if _, err := r.store.Create(ctx, sp, false); err != nil {
		t.Fatal(err)
	}
	rdb := r.store.rdb
	prefix := r.store.prefix // any prefix of this test's own serves for the lock
	start := func() (stop func()) {
		f := r.firer()
		s := &dispatcher.Scheduler{Delayed: dispatcher.NewDelayed(rdb, prefix), Outbound: discard{}, Redis: rdb, Prefix: prefix,
			Poll: 5 * time.Millisecond, TTL: 300 * time.Millisecond, Now: r.clk.Now,
			Jobs: []dispatcher.LeaderJob{{Name: "recurring", Every: 5 * time.Millisecond, Run: func(ctx context.Context) error {
				_, err := f.Tick(ctx)
				return err
			}}}}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(cctx) }()
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}
	stopA := start()
	start()
	// 4 hours of quarter hours; the 02:00-02:45 instants fall in the gap and run once at 03:00.
	want := 0
	for step := 0; step < 16; step++ {
		if step == 8 {
			stopA()
		}
		next, err := r.store.Get(ctx, "q")
		if err != nil {
			t.Fatal(err)
		}
		r.clk.Set(next.NextRunAt.Add(time.Second))
		want++
		deadline := time.Now().Add(30 * time.Second)
		for {
			runs, _ := r.store.Runs(ctx, "q", 100)
			if len(runs) == want && runs[0].Status == RunLaunched {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("step %d: runs %+v", step, runs)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	runs, _ := r.store.Runs(ctx, "q", 100)
	seen := map[string]bool{}
	for _, run := range runs {
		if seen[run.ID] || run.Status != RunLaunched {
			t.Fatalf("run %+v twice or not launched", run)
		}
		seen[run.ID] = true
		r.launchedOnce(t, run.ID)
	}
	// After 01:45 EST comes 03:00 EDT (02:00-02:45 do not exist), once.
	if !seen["q-20260308T0145"] || !seen["q-20260308T0300"] || seen["q-20260308T0200"] {
		t.Fatalf("runs over the gap: %v", seen)
	}
}
