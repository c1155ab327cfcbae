package journeys

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// recorder is a Kafka topic as the engine writes it (what it queued, in order). It may
// be told to fail: a crash after the write, before the state change commits.
type recorder struct {
	mu    sync.Mutex
	msgs  []kafka.Message
	crash atomic.Int64 // writes left that "crash" after writing
}

var errCrash = errors.New("crashed")

func (r *recorder) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, msgs...)
	r.mu.Unlock()
	if r.crash.Add(-1) >= 0 {
		return errCrash
	}
	return nil
}

func (r *recorder) jobs(t testing.TB) []dispatcher.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []dispatcher.Job
	for _, m := range r.msgs {
		j, err := dispatcher.UnmarshalJob(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, j)
	}
	return out
}

func (r *recorder) events(t testing.TB) []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Event
	for _, m := range r.msgs {
		e, err := events.Unmarshal(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t time.Time) *clock    { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func templatesOK(string) bool        { return true }
func check(d *Definition) error      { return d.CheckTemplates(templatesOK) }
func (e *Engine) timers(ctx context.Context, id string) int64 {
	return e.cfg.Redis.ZCard(ctx, e.timersKey(id)).Val()
}

type rig struct {
	eng       *Engine
	out, evs  *recorder
	clk       *clock
	store     *Store
	ctx       context.Context
	newEngine func() *Engine
}

func newRig(t *testing.T, src string) *rig {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	clk := newClock(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)) // a Monday, 10:00 in Bangkok
	st := NewStore(rdb, prefix).WithClock(clk.now)
	if _, _, err := st.Save(ctx, []byte(src), check); err != nil {
		t.Fatal(err)
	}
	r := &rig{out: &recorder{}, evs: &recorder{}, clk: clk, store: st, ctx: ctx}
	contacts := segments.NewStore(rdb, prefix)
	r.newEngine = func() *Engine {
		e := NewEngine(Config{Redis: rdb, Prefix: prefix, Store: st, Campaigns: dispatcher.NewCampaigns(dispatcher.CampaignsConfig{Redis: rdb, Prefix: prefix}),
			Contacts: contacts, Segments: contacts, Outbound: r.out, Events: r.evs, Now: clk.now, Lease: 10 * time.Second})
		if err := e.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		return e
	}
	r.eng = r.newEngine()
	return r
}

const followUp = `id: follow
senders: [s1, s2]
entry: read
reentry: every_time
exit_on: [replied]
steps:
  - id: wait-reply
    wait_for: {event: replied, timeout: 30m, on_event: done, on_timeout: nudge}
  - id: nudge
    send: nudge_tpl
  - id: later
    wait: 30d
  - id: again
    send: again_tpl
  - id: done
    exit: completed
`

// A read enters; no reply in 30 minutes sends the nudge once, then 30 days later the
// second message; a reply while waiting the 30 days ends the journey at once, its timer
// with it.
func TestEngineFollowUpAndExit(t *testing.T) {
	r := newRig(t, followUp)
	read := func(c uint32, id string) {
		if err := r.eng.Handle(r.ctx, Event{ID: id, Kind: OnRead, Contact: c, Campaign: "7"}); err != nil {
			t.Fatal(err)
		}
	}
	read(1, "r1")
	read(2, "r2")
	read(1, "r1") // a redelivery: no second entry
	if got := r.eng.timers(r.ctx, "follow"); got != 2 {
		t.Fatalf("%d timers, want 2", got)
	}
	// Contact 2 replies within the 30 minutes: the journey-level exit (replied).
	if err := r.eng.Handle(r.ctx, Event{ID: "in:1", Kind: OnInbound, Contact: 2, Text: "thanks"}); err != nil {
		t.Fatal(err)
	}
	r.clk.add(29 * time.Minute)
	if n, _ := r.eng.Tick(r.ctx); n != 0 {
		t.Fatalf("%d timers fired before their time", n)
	}
	r.clk.add(time.Minute)
	if n, err := r.eng.Tick(r.ctx); n != 1 || err != nil {
		t.Fatalf("fired %d, %v", n, err)
	}
	jobs := r.out.jobs(t)
	if len(jobs) != 1 || jobs[0].Contact != 1 || jobs[0].Campaign != CampaignID("follow", 1, "nudge", 1) {
		t.Fatalf("jobs %+v", jobs)
	}
	in, ok, _ := r.eng.Get(r.ctx, "follow", 1)
	if !ok || !in.Waiting || in.Step != "later" {
		t.Fatalf("instance %+v %v", in, ok)
	}
	// Day 3 of the 30-day wait: a reply exits now, not on day 30.
	r.clk.add(72 * time.Hour)
	if err := r.eng.Handle(r.ctx, Event{ID: "in:2", Kind: OnInbound, Contact: 1, Text: "stop asking"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := r.eng.Get(r.ctx, "follow", 1); ok {
		t.Fatal("still in the journey after replying")
	}
	if got := r.eng.timers(r.ctx, "follow"); got != 0 {
		t.Fatalf("%d timers left", got)
	}
	r.clk.add(30 * 24 * time.Hour)
	r.eng.Tick(r.ctx)
	if got := len(r.out.jobs(t)); got != 1 {
		t.Fatalf("%d jobs after the exit, want 1", got)
	}
	exits := map[string]int{}
	for _, e := range r.evs.events(t) {
		if e.Kind == events.JourneyExited {
			exits[e.Reason]++
		}
	}
	if exits["replied"] != 2 { // contact 2 within the 30 minutes (exit_on wins over on_event), contact 1 on day 3
		t.Fatalf("exits %v", exits)
	}
	// every_time: a new read enters again (entry 2), with campaigns of its own.
	read(1, "r3")
	if in, ok, _ := r.eng.Get(r.ctx, "follow", 1); !ok || in.Entry != 2 {
		t.Fatalf("re-entry %+v %v", in, ok)
	}
}

// Engines that die after queuing a step's sends but before recording the step (every
// other write fails) leave the step to be run again when its lease runs out: the jobs
// repeat, but each (journey, version, contact, step, entry) has one campaign and
// contact, which the worker's claim sends once.
func TestEngineExactlyOnceAcrossCrashes(t *testing.T) {
	r := newRig(t, followUp)
	const n = 300
	for c := uint32(1); c <= n; c++ {
		if err := r.eng.Handle(r.ctx, Event{ID: fmt.Sprint("r", c), Kind: OnRead, Contact: c}); err != nil {
			t.Fatal(err)
		}
	}
	r.out.crash.Store(n / 3)
	engines := []*Engine{r.eng, r.newEngine(), r.newEngine()}
	r.clk.add(30 * time.Minute)
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		for _, e := range engines {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = e.Tick(r.ctx) }()
		}
		wg.Wait()
		r.clk.add(11 * time.Second) // past the lease: what a dead engine held is due again
	}
	r.clk.add(31 * 24 * time.Hour)
	for round := 0; round < 5; round++ {
		for _, e := range engines {
			_, _ = e.Tick(r.ctx)
		}
		r.clk.add(11 * time.Second)
	}
	distinct := map[string]int{}
	for _, j := range r.out.jobs(t) {
		_, _, step, entry, ok := ParseCampaignID(j.Campaign)
		if !ok || entry != 1 {
			t.Fatalf("job %+v", j)
		}
		distinct[fmt.Sprint(step, "/", j.Contact)]++
	}
	if len(distinct) != 2*n {
		t.Fatalf("%d distinct (step, contact) jobs, want %d", len(distinct), 2*n)
	}
	if r.eng.timers(r.ctx, "follow") != 0 {
		t.Fatalf("timers left: %d", r.eng.timers(r.ctx, "follow"))
	}
	for c := uint32(1); c <= n; c++ {
		if _, ok, _ := r.eng.Get(r.ctx, "follow", c); ok {
			t.Fatalf("contact %d still in the journey", c)
		}
	}
}

// Journey campaigns are running campaigns the worker can load.
func TestJourneyCampaignIDs(t *testing.T) {
	id := CampaignID("after-order", 3, "care", 12)
	j, v, s, e, ok := ParseCampaignID(id)
	if !ok || j != "after-order" || v != 3 || s != "care" || e != 12 || !strings.HasPrefix(id, CampaignPrefix("after-order")) {
		t.Fatalf("%s → %s %d %s %d %v", id, j, v, s, e, ok)
	}
	c, _, ok := dispatcher.ParseCallbackData(dispatcher.CallbackData(id, 9))
	if !ok || c != id {
		t.Fatalf("callback data %q", c)
	}
}
