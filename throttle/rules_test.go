package throttle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// rulesEnv is a policy on the test Redis with a settable clock and granted contacts.
type rulesEnv struct {
	t      *testing.T
	rdb    redis.UniversalClient
	prefix string
	now    time.Time
	p      *Policy
}

var rulesT0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func newRulesEnv(t *testing.T, contacts uint32, purposes ...string) *rulesEnv {
	t.Helper()
	rdb, prefix := rulesRedis(t)
	e := &rulesEnv{t: t, rdb: rdb, prefix: prefix, now: rulesT0}
	e.p = NewPolicy(rdb, prefix, func() time.Time { return e.now })
	rulesGrant(t, rdb, prefix, contacts, purposes...)
	return e
}

// rulesGrant grants consent to contacts 1…n for each purpose (marketing by default).
func rulesGrant(t testing.TB, rdb redis.UniversalClient, prefix string, n uint32, purposes ...string) {
	t.Helper()
	if len(purposes) == 0 {
		purposes = []string{"marketing"}
	}
	var changes []Change
	for _, purpose := range purposes {
		for id := uint32(1); id <= n; id++ {
			changes = append(changes, Change{ContactID: id, Channel: "whatsapp", Purpose: purpose, Action: events.Grant, Source: "api"})
		}
	}
	if _, err := NewLedger(rdb, prefix, &memPublisher{}).Apply(context.Background(), changes, false); err != nil {
		t.Fatal(err)
	}
}

func rulesJob(campaign string, contact uint32, sender string) Job {
	return Job{Campaign: campaign, ContactID: contact, SenderID: sender, Channel: "whatsapp", Purpose: "marketing"}
}

func (e *rulesEnv) check(jobs ...Job) []Decision {
	e.t.Helper()
	d, err := e.p.Check(context.Background(), jobs)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// expect checks one job and compares the verdict, reason and (for deferrals) Until.
func (e *rulesEnv) expect(j Job, v Verdict, reason string, until time.Time) {
	e.t.Helper()
	d := e.check(j)[0]
	if d.Verdict != v || d.Reason != reason || v == Defer && !d.Until.Equal(until) {
		e.t.Fatalf("at %v, %s→%d via %s: %v %q until %v; want %v %q until %v",
			e.now.Format(time.TimeOnly), j.Campaign, j.ContactID, j.SenderID, d.Verdict, d.Reason, d.Until.UTC(), v, reason, until.UTC())
	}
}

// state is every key the rules keep for a contact and a sender, for comparisons.
func (e *rulesEnv) state(contact uint32, sender string) string {
	e.t.Helper()
	ctx := context.Background()
	rules, _ := e.rdb.HGetAll(ctx, e.p.rulesKey(contact)).Result()
	tier, _ := e.rdb.ZRangeWithScores(ctx, e.p.tierKey(sender), 0, -1).Result()
	return fmt.Sprint("rules=", rules, " tier=", tier)
}

func TestPairRate(t *testing.T) {
	e := newRulesEnv(t, 2)
	e.expect(rulesJob("A", 1, "s1"), Allow, "", time.Time{})
	e.now = rulesT0.Add(time.Second)
	e.expect(rulesJob("A", 1, "s1"), Allow, "", time.Time{}) // A decided again holds the slot
	e.expect(rulesJob("B", 1, "s1"), Defer, ReasonPairRate, rulesT0.Add(DefaultPairInterval))
	e.expect(rulesJob("B", 1, "s2"), Allow, "", time.Time{}) // another sender
	e.expect(rulesJob("B", 2, "s1"), Allow, "", time.Time{}) // another contact
	e.now = rulesT0.Add(DefaultPairInterval - time.Millisecond)
	e.expect(rulesJob("B", 1, "s1"), Defer, ReasonPairRate, rulesT0.Add(DefaultPairInterval))
	e.now = rulesT0.Add(DefaultPairInterval)
	e.expect(rulesJob("B", 1, "s1"), Allow, "", time.Time{})
	// Two jobs for one pair in one batch: the first goes, the second waits for it.
	e.now = rulesT0.Add(time.Minute)
	d := e.check(rulesJob("C", 1, "s1"), rulesJob("D", 1, "s1"))
	if d[0].Verdict != Allow || d[1].Reason != ReasonPairRate || !d[1].Until.Equal(e.now.Add(DefaultPairInterval)) {
		t.Fatalf("one batch, one pair: %+v", d)
	}
	// A configured interval, and none.
	e.p.WithPairInterval(time.Minute)
	e.now = rulesT0.Add(90 * time.Second)
	e.expect(rulesJob("E", 1, "s1"), Defer, ReasonPairRate, rulesT0.Add(2*time.Minute))
	e.p.WithPairInterval(0)
	e.expect(rulesJob("E", 1, "s1"), Allow, "", time.Time{})
	e.expect(rulesJob("F", 1, "s1"), Allow, "", time.Time{})
}

// Eight workers, each with its own connection, decide overlapping audiences for one
// sender of tier 20 at once: exactly 20 distinct contacts get through, and messaging a
// counted contact again never counts twice.
func TestDailyTierIsExactAcrossWorkers(t *testing.T) {
	ctx := context.Background()
	const tier, workers, contacts = 20, 8, 60
	e := newRulesEnv(t, contacts)
	var clock atomic.Int64
	clock.Store(rulesT0.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	run := func(campaign string) (allowed map[uint32]int, deferred []Decision) {
		allowed = map[uint32]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rdb := rulesClient(t)
				defer rdb.Close()
				p := NewPolicy(rdb, e.prefix, now).WithPairInterval(0)
				// Each worker sees every contact, in its own order, in batches of 7.
				var jobs []Job
				for k := 0; k < contacts; k++ {
					c := uint32((k*(w+1)+w)%contacts) + 1
					j := rulesJob(campaign+strconv.Itoa(w), c, "s1")
					j.SenderTier = tier
					jobs = append(jobs, j)
				}
				for len(jobs) > 0 {
					n := min(7, len(jobs))
					ds, err := p.Check(ctx, jobs[:n])
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for i, d := range ds {
						switch {
						case d.Verdict == Allow:
							allowed[jobs[i].ContactID]++
						case d.Reason == ReasonDailyTier:
							deferred = append(deferred, d)
						default:
							t.Errorf("unexpected decision %+v", d)
						}
					}
					mu.Unlock()
					jobs = jobs[n:]
				}
			}()
		}
		wg.Wait()
		return allowed, deferred
	}
	allowed, deferred := run("a")
	if len(allowed) != tier {
		t.Fatalf("%d distinct contacts allowed under a tier of %d", len(allowed), tier)
	}
	if n, _ := e.rdb.ZCard(ctx, e.p.tierKey("s1")).Result(); n != tier {
		t.Fatalf("tier set holds %d contacts, want %d", n, tier)
	}
	for _, d := range deferred {
		if !d.Until.Equal(rulesT0.Add(TierWindow)) {
			t.Fatalf("deferred until %v, want when the first recipient leaves the window (%v)", d.Until.UTC(), rulesT0.Add(TierWindow))
		}
	}
	// An hour later: the same 20 may hear from the sender again, nobody else.
	clock.Store(rulesT0.Add(time.Hour).UnixNano())
	again, _ := run("b")
	if len(again) != tier {
		t.Fatalf("an hour later %d distinct contacts allowed, want the same %d", len(again), tier)
	}
	for c := range again {
		if allowed[c] == 0 {
			t.Fatalf("contact %d allowed an hour later although the tier was full", c)
		}
	}
	// A day after the first messages the window has rolled: 20 new contacts... but the
	// first 20 were messaged again an hour in, so they still fill it until 25h.
	clock.Store(rulesT0.Add(TierWindow).UnixNano())
	late, deferred := run("c")
	if len(late) != tier || len(deferred) == 0 {
		t.Fatalf("24h later: %d allowed, %d deferred", len(late), len(deferred))
	}
	// Until is when the oldest recipient leaves the window as the deferral saw it: 25h
	// while some of the 20 still date from the hour-later run, later once the concurrent
	// workers have messaged them all again; never earlier.
	for _, d := range deferred {
		if d.Until.Before(rulesT0.Add(TierWindow + time.Hour)) {
			t.Fatalf("24h later: deferred until %v, before the first place frees (%v)", d.Until.UTC(), rulesT0.Add(TierWindow+time.Hour))
		}
	}
	clock.Store(rulesT0.Add(TierWindow + time.Hour).UnixNano())
	if fresh, _ := run("d"); len(fresh) != tier {
		t.Fatalf("25h later: %d allowed, want a fresh tier of %d", len(fresh), tier)
	}
}

// Free-form replies inside the customer-service window do not count against the tier.
func TestDailyTierSparesWindowMessages(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 3)
	if err := e.p.RecordInbound(ctx, "s1", []uint32{3}, []time.Time{rulesT0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	j := rulesJob("A", 1, "s1")
	j.SenderTier = 1
	e.expect(j, Allow, "", time.Time{})
	j.ContactID = 2
	e.expect(j, Defer, ReasonDailyTier, rulesT0.Add(TierWindow))
	j.ContactID, j.FreeForm = 3, true
	e.expect(j, Allow, "", time.Time{})
}

func TestPushbackBacksOffTheRecipient(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 2)
	e.p.WithRecipientBackoff(100*time.Second, time.Hour).WithPairInterval(0)
	hit := func(at time.Time) {
		t.Helper()
		if err := e.p.Pushback(ctx, "s1", 1, SignalBackoffRecipient, at); err != nil {
			t.Fatal(err)
		}
	}
	at := rulesT0
	for _, wait := range []time.Duration{4 * time.Second, 16 * time.Second, 64 * time.Second, 100 * time.Second, 100 * time.Second} {
		hit(at)
		e.now = at
		e.expect(rulesJob("A", 1, "s1"), Defer, ReasonRecipientBackoff, at.Add(wait))
		e.expect(rulesJob("A", 1, "s2"), Allow, "", time.Time{}) // only this sender's pair
		e.expect(rulesJob("A", 2, "s1"), Allow, "", time.Time{}) // only this contact
		e.now = at.Add(wait)
		e.expect(rulesJob("A", 1, "s1"), Allow, "", time.Time{})
		if err := e.p.ReleaseCaps(ctx, []Job{rulesJob("A", 1, "s1")}); err != nil {
			t.Fatal(err)
		}
		at = at.Add(wait)
	}
	// Quiet for more than the reset period after the last back-off ended: 4 s again.
	at = at.Add(time.Hour + time.Second)
	hit(at)
	e.now = at
	e.expect(rulesJob("B", 1, "s1"), Defer, ReasonRecipientBackoff, at.Add(4*time.Second))
	// A late report of an older refusal never shortens a back-off (it still counts).
	hit(at.Add(-time.Minute))
	e.expect(rulesJob("B", 1, "s1"), Defer, ReasonRecipientBackoff, at.Add(4*time.Second))
	hit(at.Add(4 * time.Second))
	e.expect(rulesJob("B", 1, "s1"), Defer, ReasonRecipientBackoff, at.Add(4*time.Second+64*time.Second))
}

func TestMarketingHold(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 2, "marketing", "utility")
	for _, code := range []Signal{SignalSlowSender, SignalHoldSender, SignalNone} {
		if err := e.p.Pushback(ctx, "s1", 1, code, rulesT0); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := e.rdb.Exists(ctx, e.p.rulesKey(1)).Result(); n != 0 {
		t.Fatal("a signal the rules do not react to left state")
	}
	at := rulesT0.Add(-time.Hour) // the status webhook reports it late
	if err := e.p.Pushback(ctx, "s1", 1, SignalHoldMarketing, at); err != nil {
		t.Fatal(err)
	}
	utility := rulesJob("U", 1, "s1")
	utility.Purpose = "utility"
	e.expect(rulesJob("M", 1, "s1"), Defer, ReasonMarketingHold, at.Add(MarketingHold))
	e.expect(rulesJob("M", 1, "s2"), Defer, ReasonMarketingHold, at.Add(MarketingHold)) // every sender
	e.expect(utility, Allow, "", time.Time{})
	e.expect(rulesJob("M", 2, "s1"), Allow, "", time.Time{})
	e.now = at.Add(MarketingHold)
	e.expect(rulesJob("M", 1, "s1"), Allow, "", time.Time{})
}

// ReleaseCaps gives back the cap slot, the pair slot and the tier place: afterwards the
// state is as if the job had never been checked.
func TestReleaseCapsGivesEverythingBack(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 3)
	caps, _ := ParseCaps("marketing:1/72h")
	e.p.WithCaps(caps)
	tiered := func(campaign string, contact uint32) Job {
		j := rulesJob(campaign, contact, "s1")
		j.SenderTier = 2
		return j
	}
	// Contact 1 heard from s1 at t0 (another category, so no cap): in the tier window.
	first := tiered("X", 1)
	first.Purpose = "utility"
	rulesGrant(t, e.rdb, e.prefix, 1, "utility")
	e.expect(first, Allow, "", time.Time{})
	e.now = rulesT0.Add(time.Minute)
	before1, before2 := e.state(1, "s1"), e.state(2, "s1")

	e.expect(tiered("A", 1), Allow, "", time.Time{}) // not new in the tier window
	e.expect(tiered("B", 2), Allow, "", time.Time{}) // new: fills the tier of 2
	// Contact 1's place moved to A's time: the window frees up when A's and B's leave.
	e.expect(tiered("C", 3), Defer, ReasonDailyTier, e.now.Add(TierWindow))
	e.expect(tiered("D", 1), Skip, ReasonFrequencyCap, time.Time{})
	if err := e.p.ReleaseCaps(ctx, []Job{tiered("A", 1), tiered("B", 2)}); err != nil {
		t.Fatal(err)
	}
	if after := e.state(1, "s1"); after != before1 {
		t.Fatalf("after release, contact 1:\n%s\nwant as before:\n%s", after, before1)
	}
	if after := e.state(2, "s1"); after != before2 {
		t.Fatalf("after release, contact 2:\n%s\nwant as before:\n%s", after, before2)
	}
	// Released twice, or never reserved: nothing changes.
	if err := e.p.ReleaseCaps(ctx, []Job{tiered("A", 1), tiered("B", 2), tiered("Z", 3)}); err != nil {
		t.Fatal(err)
	}
	if after := e.state(1, "s1"); after != before1 {
		t.Fatalf("a second release changed contact 1:\n%s", after)
	}
	// What A and B held is free again: C gets the tier place, D the cap slot and the pair.
	e.expect(tiered("C", 3), Allow, "", time.Time{})
	e.expect(tiered("D", 1), Allow, "", time.Time{})
	// The pair slot released goes back to the previous message: X at t0 still paces s1→1.
	e.p.WithPairInterval(2 * time.Minute)
	if err := e.p.ReleaseCaps(ctx, []Job{tiered("D", 1)}); err != nil {
		t.Fatal(err)
	}
	e.expect(tiered("E", 1), Defer, ReasonPairRate, rulesT0.Add(2*time.Minute))
}

// A job refused by any rule after the caps holds no reservation: not its cap slot, not
// the pair slot, not a tier place.
func TestDeferredJobKeepsNothing(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 5)
	caps, _ := ParseCaps("marketing:2/72h")
	e.p.WithCaps(caps)
	tiered := func(campaign string, contact uint32) Job {
		j := rulesJob(campaign, contact, "s1")
		j.SenderTier = 1
		return j
	}
	e.expect(tiered("A", 1), Allow, "", time.Time{}) // fills the tier
	snapshot := func() string { return e.state(1, "s1") + " | " + e.state(2, "s1") }
	before := snapshot()
	e.expect(tiered("B", 2), Defer, ReasonDailyTier, rulesT0.Add(TierWindow))
	e.expect(tiered("B", 1), Defer, ReasonPairRate, rulesT0.Add(DefaultPairInterval))
	if err := e.p.Pushback(ctx, "s1", 3, SignalBackoffRecipient, rulesT0); err != nil {
		t.Fatal(err)
	}
	before3 := e.state(3, "s1")
	e.expect(tiered("B", 3), Defer, ReasonRecipientBackoff, rulesT0.Add(4*time.Second))
	quiet := QuietHours{Start: 11 * 60, End: 13 * 60}
	j := tiered("B", 2)
	j.Quiet = &quiet
	e.expect(j, Defer, ReasonQuietHours, rulesT0.Add(time.Hour))
	if after := snapshot(); after != before {
		t.Fatalf("deferred jobs changed the state:\n%s\nwant:\n%s", after, before)
	}
	if after := e.state(3, "s1"); after != before3 {
		t.Fatalf("a backed-off job changed the state:\n%s\nwant:\n%s", after, before3)
	}
}

func TestQuietHoursInCheck(t *testing.T) {
	e := newRulesEnv(t, 6)
	night, _ := ParseQuietHours("21:00-08:00")
	e.p.WithQuietHours(night).WithPairInterval(0)
	// 2026-11-21 14:00 UTC, a Saturday: 21:00 in Bangkok, 09:00 in New York.
	e.now = time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)
	bangkokMorning := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	weekdays, _ := ParseDays("mon-fri")
	campaignQuiet := QuietHours{Days: weekdays}
	none := QuietHours{}
	jobs := []Job{
		{Phone: "+66812345678"},                               // zone from the phone: night
		{TimeZone: "America/New_York", Phone: "+66812345678"}, // profile zone wins: morning
		{TimeZone: "Nowhere/Atlantis", Phone: "+66812345678"}, // invalid zone: the phone's
		{Phone: "+66812345678", Quiet: &none},                 // the campaign has no quiet hours
		{TimeZone: "America/New_York", Quiet: &campaignQuiet}, // the campaign's own days: not Saturday
		{Phone: "+18005551234"},                               // zone unknown: fallback UTC, 14:00
	}
	want := []struct {
		v     Verdict
		until time.Time
	}{
		{Defer, bangkokMorning}, {Allow, time.Time{}}, {Defer, bangkokMorning}, {Allow, time.Time{}},
		{Defer, time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)}, {Allow, time.Time{}},
	}
	for i := range jobs {
		jobs[i].Campaign, jobs[i].ContactID, jobs[i].SenderID, jobs[i].Channel, jobs[i].Purpose = "Q", uint32(i+1), "s1", "whatsapp", "marketing"
	}
	got := e.check(jobs...)
	for i, d := range got {
		if d.Verdict != want[i].v || d.Verdict == Defer && (d.Reason != ReasonQuietHours || !d.Until.Equal(want[i].until)) {
			t.Errorf("job %d (%+v): %v %q until %v; want %v until %v", i, jobs[i], d.Verdict, d.Reason, d.Until.UTC(), want[i].v, want[i].until)
		}
	}
	// The fallback zone is configurable.
	e.p.WithFallbackZone(mustZone(t, "Asia/Tokyo")) // 23:00
	e.expect(Job{Campaign: "R", ContactID: 6, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing", Phone: "+18005551234"},
		Defer, ReasonQuietHours, time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC))
	// Caps come before quiet hours: a capped contact is skipped, not deferred.
	caps, _ := ParseCaps("marketing:1/72h")
	e.p.WithCaps(caps)
	e.expect(Job{Campaign: "S", ContactID: 2, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing", TimeZone: "America/New_York"},
		Allow, "", time.Time{})
	e.expect(Job{Campaign: "T", ContactID: 2, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing", Phone: "+66812345678"},
		Skip, ReasonFrequencyCap, time.Time{})
	e.expect(Job{Campaign: "T", ContactID: 3, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing", Phone: "+66812345678"},
		Defer, ReasonQuietHours, bangkokMorning)
	if n, _ := e.rdb.Exists(context.Background(), e.p.rulesKey(3)).Result(); n != 0 {
		t.Fatal("a job deferred by quiet hours took a cap slot")
	}
}

func TestPreviewReservesNothing(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 3)
	caps, _ := ParseCaps("marketing:1/72h")
	e.p.WithCaps(caps)
	var jobs []Job
	for c := uint32(1); c <= 3; c++ {
		j := rulesJob("A", c, "s1")
		j.SenderTier = 1
		jobs = append(jobs, j)
	}
	d, err := e.p.Preview(ctx, jobs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range d {
		if d[i].Verdict != Allow {
			t.Fatalf("preview of job %d: %+v", i, d[i])
		}
	}
	if keys, _ := scanKeys(ctx, e.rdb, e.prefix+"{[cs]:*"); len(keys) != 0 {
		t.Fatalf("a preview wrote %v", keys)
	}
	if d := e.check(jobs...); d[0].Verdict != Allow || d[1].Reason != ReasonDailyTier {
		t.Fatalf("check after the preview: %+v", d)
	}
}

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

// A batch of any size, with every rule on, takes two round trips; after Redis lost its
// script cache, one more, and the decisions are the same.
func TestCheckTakesTwoRoundTrips(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 600, "marketing", "utility")
	caps, _ := ParseCaps("marketing:1/72h")
	night, _ := ParseQuietHours("23:00-06:00")
	e.p.WithCaps(caps).WithQuietHours(night)
	if err := e.p.RecordInbound(ctx, "s2", []uint32{5}, []time.Time{rulesT0}); err != nil {
		t.Fatal(err)
	}
	rt := &roundTrips{}
	e.rdb.AddHook(rt)
	batch := func(from uint32) []Job {
		var jobs []Job
		for c := from; c < from+300; c++ {
			j := rulesJob("A", c, fmt.Sprint("s", c%3))
			j.SenderTier, j.Phone, j.FreeForm = 1000, "+66812345678", c%7 == 0
			if c%2 == 0 {
				j.Purpose = "utility"
			}
			jobs = append(jobs, j)
		}
		return jobs
	}
	e.check(batch(1)...) // loads the scripts if this server has not seen them
	rt.n.Store(0)
	first := e.check(batch(1)...) // decided again: retries of the same messages
	if n := rt.n.Load(); n != 2 {
		t.Fatalf("a batch of 300 took %d round trips", n)
	}
	if err := e.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rt.n.Store(0)
	again := e.check(batch(1)...)
	if n := rt.n.Load(); n != 3 {
		t.Fatalf("after SCRIPT FLUSH a batch took %d round trips, want 3 (EVALSHA, then EVAL of the refused)", n)
	}
	for i := range first {
		if first[i] != again[i] {
			t.Fatalf("job %d decided %+v, and %+v after the script cache was flushed", i, first[i], again[i])
		}
	}
	if err := e.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.p.ReleaseCaps(ctx, batch(1)); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.rdb.ZCard(ctx, e.p.tierKey("s1")).Result(); n != 0 {
		t.Fatalf("after SCRIPT FLUSH, release left %d contacts in the tier", n)
	}
}

// pipelineFault breaks a client's first pipeline of scripts (the rules' round trip):
// before it reaches Redis (before), or after Redis ran it: with an error reply for the
// commands from reply on (replyErr), or with the connection lost while reading (lost:
// go-redis then fails every command).
type pipelineFault struct {
	done     bool
	before   func()
	reply    int
	replyErr error
	lost     error
}

// rulesRedisErr is an error reply of Redis.
type rulesRedisErr string

func (e rulesRedisErr) Error() string { return string(e) }
func (e rulesRedisErr) RedisError()   {}

func (f *pipelineFault) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (f *pipelineFault) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (f *pipelineFault) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if f.done || len(cmds) == 0 || cmds[0].Name() != "evalsha" {
			return next(ctx, cmds)
		}
		f.done = true
		if f.before != nil {
			f.before()
		}
		if err := next(ctx, cmds); err != nil || f.before != nil {
			return err
		}
		if f.replyErr != nil {
			for _, c := range cmds[f.reply:] {
				c.SetErr(f.replyErr)
			}
			return f.replyErr
		}
		for _, c := range cmds { // as go-redis does when the connection breaks
			c.SetErr(f.lost)
		}
		return f.lost
	}
}

// Redis failing in the second round trip fails the whole check (fail closed). The
// scripts known to have run give their reservations back; one whose outcome is unknown
// may keep its own, which only ever holds the contact and the sender back.
func TestCheckFailsClosedInTheRulesRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 3)
	caps, _ := ParseCaps("marketing:1/72h")
	e.p.WithCaps(caps)
	jobs := func() []Job {
		var out []Job
		for c := uint32(1); c <= 3; c++ {
			j := rulesJob("A", c, "s1")
			j.SenderTier = 10
			out = append(out, j)
		}
		return out
	}
	e.check(jobs()...) // the scripts are cached: the faults hit the rules' round trip
	if err := e.p.ReleaseCaps(ctx, jobs()); err != nil {
		t.Fatal(err)
	}
	holds := func(c uint32) bool {
		n, _ := e.rdb.Exists(ctx, e.p.rulesKey(c)).Result()
		_, err := e.rdb.ZScore(ctx, e.p.tierKey("s1"), strconv.Itoa(int(c))).Result()
		return n != 0 || err != redis.Nil
	}

	proxy := testenv.NewProxy(t, testenv.RedisAddr(t))
	for _, tc := range []struct {
		name  string
		fault *pipelineFault
		kept  int // jobs still holding a reservation afterwards
	}{
		{"Redis unreachable", &pipelineFault{before: proxy.Down}, 0},
		{"an error reply", &pipelineFault{reply: 2, replyErr: rulesRedisErr("BUSY Redis is busy")}, 1},
		{"connection lost reading the replies", &pipelineFault{lost: errors.New("read tcp: connection reset by peer")}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr, MaxRetries: -1})
			defer rdb.Close()
			rdb.AddHook(tc.fault)
			p := NewPolicy(rdb, e.prefix, func() time.Time { return e.now }).WithCaps(caps)
			d, err := p.Check(ctx, jobs())
			if err == nil || d != nil {
				t.Fatalf("check with the rules' round trip failing = %v, %v; want an error and no decisions", d, err)
			}
			if tc.fault.before != nil {
				proxy.Up(t)
			}
			kept := 0
			for c := uint32(1); c <= 3; c++ {
				if holds(c) {
					kept++
				}
			}
			if kept != tc.kept {
				t.Fatalf("%d jobs hold reservations after the failed check, want %d", kept, tc.kept)
			}
			if err := e.p.ReleaseCaps(ctx, jobs()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkPolicyCheck decides batches of 500 jobs with every rule on — consent, caps,
// quiet hours with the zone from the phone, pair rate, a daily tier and the pushback
// checks — against the test Redis. Each batch is new contacts, so every job is allowed
// and reserves its cap line, pair slot and tier place: the most work a batch can be.
// Besides jobs/s (wall clock, which other load on the machine skews) it reports the CPU
// time per job of this process and of the Redis server, whose inverses are the jobs/s
// one core of each sustains.
func BenchmarkPolicyCheck(b *testing.B) {
	const batch = 500
	ctx := context.Background()
	rdb, prefix := testenv.Redis(b)
	now := rulesT0 // 12:00 UTC: daytime in Bangkok, Jakarta and São Paulo
	caps, _ := ParseCaps("marketing:1/72h,marketing:3/168h")
	night, _ := ParseQuietHours("21:00-08:00")
	p := NewPolicy(rdb, prefix, func() time.Time { return now }).WithCaps(caps).WithQuietHours(night)
	phones := []string{"+66812345678", "+6281234567890", "+5511987654321"}
	// Consent for every contact the benchmark will use, written directly in bulk.
	n := (b.N + 1) * batch
	for from := 1; from <= n; from += 10000 {
		fields := make([]any, 0, 20000)
		for id := from; id < from+10000 && id <= n; id++ {
			fields = append(fields, id, "g|bench")
		}
		if err := rdb.HSet(ctx, prefix+"consent:whatsapp:marketing", fields...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	jobs := make([]Job, batch)
	redisCPU := func() time.Duration {
		info, err := rdb.InfoMap(ctx, "cpu").Result()
		if err != nil {
			b.Fatal(err)
		}
		user, _ := strconv.ParseFloat(info["CPU"]["used_cpu_user"], 64)
		sys, _ := strconv.ParseFloat(info["CPU"]["used_cpu_sys"], 64)
		return time.Duration((user + sys) * float64(time.Second))
	}
	r0, c0 := redisCPU(), rulesProcessCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range jobs {
			c := uint32(i*batch + k + 1)
			jobs[k] = Job{Campaign: "bench", ContactID: c, SenderID: "s" + strconv.Itoa(k%4), Channel: "whatsapp",
				Purpose: "marketing", Phone: phones[k%len(phones)], SenderTier: 1 << 30}
		}
		ds, err := p.Check(ctx, jobs)
		if err != nil {
			b.Fatal(err)
		}
		if ds[batch-1].Verdict != Allow {
			b.Fatalf("job not allowed: %+v", ds[batch-1])
		}
	}
	b.StopTimer()
	total := float64(b.N * batch)
	b.ReportMetric(total/b.Elapsed().Seconds(), "jobs/s")
	b.ReportMetric(float64((rulesProcessCPU()-c0).Microseconds())/total, "client-cpu-µs/job")
	b.ReportMetric(float64((redisCPU()-r0).Microseconds())/total, "redis-cpu-µs/job")
}

// rulesProcessCPU is the CPU time this process has used, user and system.
func rulesProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
