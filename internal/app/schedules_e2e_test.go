package app

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/recurring"
	"github.com/herald-dev/herald/templates"
)

// testClock is the clock the stack's policy, scheduler and schedules read (Config.Now):
// the real clock moved by an offset the test sets, so what waits seconds (a pair-rate
// deferral, a retry) still comes due, and what waits days waits for the test.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func newTestClock(t time.Time) *testClock { return &testClock{offset: time.Until(t)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}
func (c *testClock) Set(t time.Time) { c.mu.Lock(); c.offset = time.Until(t); c.mu.Unlock() }

// pollUntil waits for cond (a guard against hangs, not a timing assertion).
func pollUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scheduleStack is a stack on an injected clock, with the e2e template and a sender.
func scheduleStack(t *testing.T, clk *testClock, sc sandbox.Config) (*Stack, context.Context, *Components) {
	t.Helper()
	sc.Templates = []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}
	s, ctx := testStackWith(t, sc, func(c *Config, _ *Stack) { c.Now = clk.Now })
	comp, err := s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: DevSandboxToken, Rate: 300}); err != nil {
		t.Fatal(err)
	}
	return s, ctx, comp
}

func sentTo(s *Stack, run string) map[string]int {
	got := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		if strings.HasPrefix(r.CallbackData, run+":") {
			got[r.To]++
		}
	}
	return got
}

// "At 10:00 in each recipient's local time": the run starts when 10:00 comes first on
// Earth, and each contact gets its message when the (injected) clock reaches 10:00 in
// its own zone — Bangkok, then Berlin, then New York — and not before.
func TestLocalTimeScheduleSendsAtEachContactsTen(t *testing.T) {
	// The injected clock runs in the past (June 2026): jobs it defers are due by the
	// real clock, so only the injected one holds them.
	clk := newTestClock(time.Date(2026, 6, 1, 19, 59, 0, 0, time.UTC))
	s, ctx, comp := scheduleStack(t, clk, sandbox.Config{Throughput: 1000, DelayScale: 0.02, Seed: 3})
	zones := map[string][]string{"Asia/Bangkok": nil, "Europe/Berlin": nil, "America/New_York": nil}
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in,timezone\n")
	n := 0
	for zone := range zones {
		for i := 0; i < 4; i++ {
			n++
			phone := fmt.Sprintf("+6681%07d", n)
			fmt.Fprintf(&csv, "%s,Name %d,daily,yes,%s\n", phone, n, zone)
			zones[zone] = append(zones[zone], phone)
		}
	}
	if _, err := ImportContacts(ctx, s.Deps, &csv, ImportOptions{Source: "zones.csv"}); err != nil {
		t.Fatal(err)
	}
	sch, err := CreateSchedule(ctx, s.Deps, comp, recurring.Spec{ID: "tips", LocalTime: "10:00",
		Campaign: dispatcher.Campaign{Segment: "daily", Template: "welcome", Senders: []string{"106540352242922"}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	// 2 June 10:00 comes first at UTC+14: 1 June 20:00 UTC.
	if want := time.Date(2026, 6, 1, 20, 0, 0, 0, time.UTC); !sch.NextRunAt.Equal(want) {
		t.Fatalf("first run at %v, want %v", sch.NextRunAt, want)
	}
	const run = "tips-20260602T1000"
	clk.Set(time.Date(2026, 6, 1, 20, 0, 1, 0, time.UTC)) // the scheduler's leader fires it
	pollUntil(t, "the run to be launched and every send to wait in the delayed set", func() bool {
		st, err := comp.Campaigns.Status(ctx, run)
		ds, _ := comp.Delayed.Stats(ctx)
		return err == nil && st.FanoutDone && ds.Jobs == int64(n)
	})
	if got := sentTo(s, run); len(got) != 0 {
		t.Fatalf("sent before anyone's 10:00: %v", got)
	}
	// Each zone's 10:00 on 2 June (Berlin is on summer time, New York too).
	steps := []struct {
		zone string
		at   time.Time
	}{
		{"Asia/Bangkok", time.Date(2026, 6, 2, 3, 0, 0, 0, time.UTC)},
		{"Europe/Berlin", time.Date(2026, 6, 2, 8, 0, 0, 0, time.UTC)},
		{"America/New_York", time.Date(2026, 6, 2, 14, 0, 0, 0, time.UTC)},
	}
	want := map[string]int{}
	waiting := n
	for _, step := range steps {
		// A minute before: nothing moves.
		clk.Set(step.at.Add(-time.Minute))
		if got := sentTo(s, run); len(got) != len(want) {
			t.Fatalf("before %s's 10:00: sent to %v, want %v", step.zone, got, want)
		}
		clk.Set(step.at.Add(time.Second))
		for _, p := range zones[step.zone] {
			want[p] = 1
		}
		waiting -= len(zones[step.zone])
		pollUntil(t, step.zone+"'s contacts to be sent", func() bool { return len(sentTo(s, run)) == len(want) })
		pollUntil(t, "the others to wait in the delayed set", func() bool {
			ds, _ := comp.Delayed.Stats(ctx)
			return ds.Jobs == int64(waiting)
		})
		got := sentTo(s, run)
		for p, k := range got {
			if want[p] != k {
				t.Fatalf("at %s's 10:00: %s got %d messages, want %d (sent %v)", step.zone, p, k, want[p], got)
			}
		}
	}
	waitCompleted(t, ctx, comp.Campaigns, run)
	// The next run is the next day's.
	got, err := s.Deps.Schedules()
	if err != nil {
		t.Fatal(err)
	}
	if sch, err := got.Get(ctx, "tips"); err != nil || !sch.NextRunAt.Equal(time.Date(2026, 6, 2, 20, 0, 0, 0, time.UTC)) {
		t.Fatalf("next run %v, %v", sch.NextRunAt, err)
	}
}

// Exclude-reached-within: a run leaves out the contacts an earlier run sent to within
// the window (not those it only skipped), and takes them again once the window has
// passed; each run's funnel in ClickHouse equals the sandbox's record of it.
func TestExcludeReachedWithin(t *testing.T) {
	// The schedules' clock runs ahead of the real one (the sends' times, in ClickHouse,
	// are real): run 1 at its first instant, run 2 three days later, run 3 nine.
	clk := newTestClock(time.Now())
	// Days pass in seconds of real time here: the sandbox's pair rate (one message per 6 s
	// of real time to a number) would refuse run 3's sends to run 2's contacts.
	s, ctx, comp := scheduleStack(t, clk, sandbox.Config{Throughput: 1000, DelayScale: 0.02, ReadRate: 0.5, UndeliverableRate: 0.1,
		DuplicateRate: 0.2, Seed: 11, PairInterval: -1})
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := 1; i <= 30; i++ {
		opted := "yes"
		if i > 24 {
			opted = "no" // skipped, never reached: not excluded later
		}
		fmt.Fprintf(&csv, "+6682%07d,Name %d,weekly,%s\n", i, i, opted)
	}
	if _, err := ImportContacts(ctx, s.Deps, &csv, ImportOptions{Source: "weekly.csv"}); err != nil {
		t.Fatal(err)
	}
	sch, err := CreateSchedule(ctx, s.Deps, comp, recurring.Spec{ID: "weekly", Cron: "0 10 * * *", Zone: "Asia/Bangkok",
		ExcludeReachedWithinMS: (7 * 24 * time.Hour).Milliseconds(), CatchUpMS: time.Hour.Milliseconds(),
		Campaign: dispatcher.Campaign{Segment: "weekly", Template: "welcome", Senders: []string{"106540352242922"}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	store, _ := s.Deps.Schedules()
	conn, err := s.Deps.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := sch.NextRunAt
	runAt := func(at time.Time) recurring.Run {
		t.Helper()
		// Resume from just before at (a paused schedule starts from the next instant
		// after now), then let the leader fire it.
		if _, err := store.Pause(ctx, "weekly"); err != nil {
			t.Fatal(err)
		}
		clk.Set(at.Add(-time.Minute))
		if _, err := store.Resume(ctx, "weekly"); err != nil {
			t.Fatal(err)
		}
		clk.Set(at.Add(time.Second))
		var r recurring.Run
		pollUntil(t, "the run at "+at.String(), func() bool {
			runs, _ := store.Runs(ctx, "weekly", 1)
			if len(runs) == 1 && runs[0].ScheduledAt.Equal(at) && runs[0].Status == recurring.RunLaunched {
				r = runs[0]
				return true
			}
			return false
		})
		waitCompleted(t, ctx, comp.Campaigns, r.ID)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := s.Sandbox.WaitIdle(wctx); err != nil {
			t.Fatal(err)
		}
		if err := waitSink(wctx, s.Deps); err != nil {
			t.Fatal(err)
		}
		f, err := analytics.Funnel(ctx, conn, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		truth := SandboxTruth(s.Sandbox.Records(), r.ID)
		if err := truth.Check(f); err != nil {
			t.Fatalf("run %s: funnel %+v vs sandbox %+v: %v", r.ID, f.Steps, truth, err)
		}
		return r
	}

	r1 := runAt(first)
	reached1 := sentTo(s, r1.ID)
	if r1.Audience != 30 || r1.Excluded != 0 || len(reached1) == 0 {
		t.Fatalf("run 1: %+v, reached %d", r1, len(reached1))
	}
	// Three days on: everyone run 1 sent to is left out; those it skipped are not.
	r2 := runAt(first.AddDate(0, 0, 3))
	if r2.Excluded != int64(len(reached1)) || r2.Audience != 30-int64(len(reached1)) {
		t.Fatalf("run 2: audience %d, excluded %d; run 1 reached %d", r2.Audience, r2.Excluded, len(reached1))
	}
	for p := range sentTo(s, r2.ID) {
		if reached1[p] > 0 {
			t.Fatalf("run 2 sent again to %s, reached by run 1 three days before", p)
		}
	}
	// Nine days on: the window (7 days) has passed for every earlier send.
	r3 := runAt(first.AddDate(0, 0, 9))
	if r3.Audience != 30 || r3.Excluded != 0 {
		t.Fatalf("run 3: audience %d, excluded %d; want everyone back", r3.Audience, r3.Excluded)
	}
	if reached3 := sentTo(s, r3.ID); len(reached3) == 0 {
		t.Fatal("run 3 reached no one")
	}
}
