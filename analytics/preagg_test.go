package analytics

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// retentionTruth computes cohort retention from events in Go, the way Retention
// defines it: a contact's cohort is the week of its first sent event, which must lie
// in [from, to); Active[k] counts the contacts with an engagement (read, clicked,
// replied, converted) in the cohort's week + k.
func retentionTruth(evs []events.Event, from, to time.Time, weeks int) []Cohort {
	first := map[uint32]time.Time{}
	engaged := map[uint32]map[int64]bool{}
	for _, e := range evs {
		switch e.Kind {
		case events.Sent:
			if f, ok := first[e.ContactID]; !ok || e.Time.Before(f) {
				first[e.ContactID] = e.Time
			}
		case events.Read, events.Clicked, events.Replied, events.Converted:
			if engaged[e.ContactID] == nil {
				engaged[e.ContactID] = map[int64]bool{}
			}
			engaged[e.ContactID][weekNumber(e.Time.Truncate(time.Second))] = true
		}
	}
	byWeek := map[int64]*Cohort{}
	for c, f := range first {
		ms := f.UnixMilli()
		if ms < from.UnixMilli() || ms >= to.UnixMilli() {
			continue
		}
		w := weekNumber(f)
		co := byWeek[w]
		if co == nil {
			co = &Cohort{Week: weekMonday(w).Format(time.DateOnly), Active: make([]uint64, weeks), Retained: make([]float64, weeks)}
			byWeek[w] = co
		}
		co.Contacts++
		for k := range weeks {
			if engaged[c][w+int64(k)] {
				co.Active[k]++
			}
		}
	}
	out := []Cohort{}
	for _, w := range sortedKeys(mapInt64ToUint32(byWeek)) {
		co := byWeek[int64(w)]
		for k := range co.Active {
			co.Retained[k] = ratio(co.Active[k], co.Contacts)
		}
		out = append(out, *co)
	}
	return out
}

// campaignRetentionTruth computes cohort retention by campaign from events in Go, the
// way RetentionByCampaign defines it: each campaign (not "") whose first sent event lies
// in [from, to), in the week w0 of that send; its contacts are those it was ever sent
// to; Active[k] counts those engaged (in any campaign or none) in week w0 + k.
// Ordered by week, then campaign.
func campaignRetentionTruth(evs []events.Event, from, to time.Time, weeks int) []CampaignCohort {
	first := map[string]time.Time{}
	members := map[string]map[uint32]bool{}
	engaged := map[uint32]map[int64]bool{}
	for _, e := range evs {
		switch e.Kind {
		case events.Sent:
			if e.CampaignID == "" {
				continue
			}
			if f, ok := first[e.CampaignID]; !ok || e.Time.Before(f) {
				first[e.CampaignID] = e.Time
			}
			if members[e.CampaignID] == nil {
				members[e.CampaignID] = map[uint32]bool{}
			}
			members[e.CampaignID][e.ContactID] = true
		case events.Read, events.Clicked, events.Replied, events.Converted:
			if engaged[e.ContactID] == nil {
				engaged[e.ContactID] = map[int64]bool{}
			}
			engaged[e.ContactID][weekNumber(e.Time.Truncate(time.Second))] = true
		}
	}
	out := []CampaignCohort{}
	for c, f := range first {
		if ms := f.UnixMilli(); ms < from.UnixMilli() || ms >= to.UnixMilli() {
			continue
		}
		w0 := weekNumber(f)
		co := CampaignCohort{Campaign: c, Week: weekMonday(w0).Format(time.DateOnly),
			Contacts: uint64(len(members[c])), Active: make([]uint64, weeks), Retained: make([]float64, weeks)}
		for m := range members[c] {
			for k := range weeks {
				if engaged[m][w0+int64(k)] {
					co.Active[k]++
				}
			}
		}
		for k, a := range co.Active {
			co.Retained[k] = ratio(a, co.Contacts)
		}
		out = append(out, co)
	}
	slices.SortFunc(out, func(a, b CampaignCohort) int {
		return cmp.Or(strings.Compare(a.Week, b.Week), strings.Compare(a.Campaign, b.Campaign))
	})
	return out
}

func retentionByCampaign(t *testing.T, conn driver.Conn, from, to time.Time, weeks int, campaigns ...string) []CampaignCohort {
	t.Helper()
	rep, err := RetentionByCampaign(context.Background(), conn, from, to, weeks, campaigns...)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Cohorts
}

func mapInt64ToUint32(m map[int64]*Cohort) map[uint32]bool {
	out := map[uint32]bool{}
	for k := range m {
		out[uint32(k)] = true
	}
	return out
}

// cohortEvents: contacts 1…100 first sent on Monday 2025-03-10 (week A, the last week
// of a 64-week block), 101…150 in week A+1, 151…160 sent in week A+2 and also, arriving
// later, in week A (so their cohort is A). Engagement: 1…60 read in week A, 1…30 clicked
// in A+1, 1…10 replied in A+3; 101…120 read in A+1 and 101…150 converted (no campaign)
// in A+2, stored before their sends; 151…160 read in A+2.
func cohortEvents() (evs []events.Event, want []Cohort) {
	week := func(k int, d time.Duration) time.Time { return baseTime.AddDate(0, 0, 7*k).Add(d) }
	ev := func(kind events.Kind, campaign string, c uint32, at time.Time) events.Event {
		return events.New(kind, campaign, c, at.Add(time.Duration(c)*time.Millisecond))
	}
	var late []events.Event
	for c := uint32(1); c <= 160; c++ {
		switch {
		case c <= 100:
			evs = append(evs, ev(events.Sent, "a", c, week(0, 0)))
			if c <= 60 {
				evs = append(evs, ev(events.Read, "a", c, week(0, time.Hour)))
			}
			if c <= 30 {
				evs = append(evs, ev(events.Clicked, "a", c, week(1, 2*time.Hour)))
			}
			if c <= 10 {
				evs = append(evs, ev(events.Replied, "a", c, week(3, 6*24*time.Hour)))
			}
		case c <= 150:
			conv := ev(events.Converted, "", c, week(2, 3*time.Hour))
			conv.ID = events.ID("", c, events.Converted, "order-1")
			evs = append(evs, conv)
			if c <= 120 {
				evs = append(evs, ev(events.Read, "b", c, week(1, 5*time.Hour)))
			}
			late = append(late, ev(events.Sent, "b", c, week(1, 0)))
		default:
			evs = append(evs, ev(events.Sent, "c", c, week(2, 0)), ev(events.Read, "c", c, week(2, time.Hour)))
			late = append(late, ev(events.Sent, "a2", c, week(0, 30*time.Minute)))
		}
	}
	evs = append(evs, late...)
	want = []Cohort{
		{Week: "2025-03-10", Contacts: 110, Active: []uint64{60, 30, 10, 10}},
		{Week: "2025-03-17", Contacts: 50, Active: []uint64{20, 50, 0, 0}},
	}
	for i := range want {
		want[i].Retained = make([]float64, 4)
		for k, a := range want[i].Active {
			want[i].Retained[k] = ratio(a, want[i].Contacts)
		}
	}
	return evs, want
}

func retention(t *testing.T, conn driver.Conn, from, to time.Time, weeks int) []Cohort {
	t.Helper()
	rep, err := Retention(context.Background(), conn, from, to, weeks)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Cohorts
}

// Duplicates in separate parts, events out of order and an earlier sent arriving late
// give the same retention, before and after ClickHouse merges the pre-aggregate.
func TestRetentionPreAggregateDedupes(t *testing.T) {
	ctx := context.Background()
	conn := migrated(t)
	evs, want := cohortEvents()
	// Engagement first, sends last (the late ones at the very end), and every event
	// three times, in three inserts: three parts of contact_weeks.
	insertEvents(t, conn, evs)
	dup := append([]events.Event{}, evs...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(dup), func(i, j int) { dup[i], dup[j] = dup[j], dup[i] })
	insertEvents(t, conn, dup)
	insertEvents(t, conn, evs[:len(evs)/2])

	from, to := baseTime.AddDate(0, 0, -3), baseTime.AddDate(0, 0, 14)
	if got := retention(t, conn, from, to, 4); !reflect.DeepEqual(got, want) {
		t.Fatalf("retention\n got %+v\nwant %+v", got, want)
	}
	if got := retentionTruth(evs, from, to, 4); !reflect.DeepEqual(got, want) {
		t.Fatalf("the Go reference disagrees with the fixture: %+v", got)
	}
	wantByCampaign := campaignRetentionTruth(evs, from, to.AddDate(0, 0, 7), 4)
	if len(wantByCampaign) != 4 {
		t.Fatalf("the reference gives %d campaign cohorts, want 4", len(wantByCampaign))
	}
	if got := retentionByCampaign(t, conn, from, to.AddDate(0, 0, 7), 4); !reflect.DeepEqual(got, wantByCampaign) {
		t.Fatalf("retention by campaign\n got %+v\nwant %+v", got, wantByCampaign)
	}
	// The duplicates really are stored more than once until merged.
	tables := []struct{ name, key string }{
		{"week_contacts", "series, week, word"},
		{"campaign_contacts", "campaign_id, word"},
		{"campaign_starts", "campaign_id"},
		{"sent_times", "ts_ms, contact_id"},
		{"contact_weeks", "contact_id, block"},
	}
	keys := map[string]uint64{}
	for _, tb := range tables {
		rows := uint64Query(t, conn, "SELECT count() FROM "+tb.name)
		keys[tb.name] = uint64Query(t, conn, "SELECT count() FROM (SELECT DISTINCT "+tb.key+" FROM "+tb.name+")")
		if rows <= keys[tb.name] {
			t.Fatalf("%s holds %d rows for %d keys: the test needs unmerged duplicates", tb.name, rows, keys[tb.name])
		}
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+tb.name+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tb := range tables {
		if rows := uint64Query(t, conn, "SELECT count() FROM "+tb.name); rows != keys[tb.name] {
			t.Fatalf("after OPTIMIZE: %s holds %d rows for %d keys", tb.name, rows, keys[tb.name])
		}
	}
	if got := retention(t, conn, from, to, 4); !reflect.DeepEqual(got, want) {
		t.Fatalf("retention after merges\n got %+v\nwant %+v", got, want)
	}
	if got := retentionByCampaign(t, conn, from, to.AddDate(0, 0, 7), 4); !reflect.DeepEqual(got, wantByCampaign) {
		t.Fatalf("retention by campaign after merges\n got %+v\nwant %+v", got, wantByCampaign)
	}
	// A cohort range that starts after week A leaves only the second cohort.
	if got := retention(t, conn, baseTime.AddDate(0, 0, 7), to, 4); !reflect.DeepEqual(got, want[1:]) {
		t.Fatalf("retention from week A+1\n got %+v\nwant %+v", got, want[1:])
	}
}

// Random streams over two years, checked against the Go reference for several windows,
// including ones that start and end mid-week and cross 64-week blocks.
func TestRetentionMatchesReference(t *testing.T) {
	conn := migrated(t)
	rng := rand.New(rand.NewPCG(42, 7))
	start := time.Date(2023, 5, 3, 17, 0, 0, 0, time.UTC) // block 22 starts on 2023-12-25
	kinds := []events.Kind{events.Sent, events.Sent, events.Read, events.Clicked, events.Replied, events.Converted, events.Delivered, events.Queued}
	var evs []events.Event
	for i := range 6000 {
		c := uint32(rng.IntN(400) + 1)
		at := start.Add(time.Duration(rng.Int64N(int64(2 * 365 * 24 * time.Hour))))
		e := events.New(kinds[rng.IntN(len(kinds))], "r", c, at)
		e.ID = events.ID("r", c, e.Kind, string(rune(i)))
		evs = append(evs, e)
	}
	// Twelve campaigns that start 8 weeks apart and send for 10 weeks, to contacts of
	// ids spread over many words, half of them read; some sends carry no campaign.
	for i := range 3000 {
		k := rng.IntN(12)
		campaign := fmt.Sprintf("k%02d", k)
		if rng.IntN(20) == 0 {
			campaign = ""
		}
		c := uint32(rng.IntN(2000) + 1)
		at := start.AddDate(0, 0, 56*k).Add(time.Duration(rng.Int64N(int64(70 * 24 * time.Hour))))
		e := events.New(events.Sent, campaign, c, at)
		e.ID = events.ID(campaign, c, e.Kind, fmt.Sprint("k", i))
		evs = append(evs, e)
		if rng.IntN(2) == 0 { // read within 8 weeks
			r := events.New(events.Read, campaign, c, at.Add(time.Duration(rng.Int64N(int64(56*24*time.Hour)))))
			r.ID = events.ID(campaign, c, r.Kind, fmt.Sprint("k", i))
			evs = append(evs, r)
		}
	}
	for i := 0; i < len(evs); i += 1000 {
		insertEvents(t, conn, evs[i:min(i+1500, len(evs))]) // overlapping batches: duplicates
	}
	monday := weekMonday(weekNumber(start) + 1) // 2023-05-08, 00:00 UTC
	var campaignCohorts int
	for _, tc := range []struct {
		from, to time.Time
		weeks    int
	}{
		{start, start.AddDate(2, 0, 0), 104},
		{start.AddDate(0, 3, 0).Add(5 * time.Hour), start.AddDate(0, 9, 2), 13},
		{start.AddDate(0, 0, 5).Add(7 * time.Hour), start.AddDate(0, 0, 12), 1},
		{start.AddDate(0, 11, 0), start.AddDate(1, 4, 0), 70},
		// Whole weeks (no partial week at either end), and from and to in one week.
		{monday.AddDate(0, 0, 7*20), monday.AddDate(0, 0, 7*45), 8},
		{monday.AddDate(0, 0, 7*30+1).Add(3 * time.Hour), monday.AddDate(0, 0, 7*30+4), 5},
	} {
		wantC := campaignRetentionTruth(evs, tc.from, tc.to, tc.weeks)
		campaignCohorts += len(wantC)
		if got := retentionByCampaign(t, conn, tc.from, tc.to, tc.weeks); !reflect.DeepEqual(got, wantC) {
			t.Errorf("retention by campaign %s..%s, %d weeks\n got %+v\nwant %+v", tc.from, tc.to, tc.weeks, got, wantC)
		}
		if len(wantC) > 1 {
			named := []CampaignCohort{wantC[0], wantC[len(wantC)-1]}
			if got := retentionByCampaign(t, conn, tc.from, tc.to, tc.weeks, named[1].Campaign, "nope", named[0].Campaign); !reflect.DeepEqual(got, named) {
				t.Errorf("retention of campaigns %s and %s, %s..%s\n got %+v\nwant %+v", named[0].Campaign, named[1].Campaign, tc.from, tc.to, got, named)
			}
		}
		want := retentionTruth(evs, tc.from, tc.to, tc.weeks)
		var active uint64
		for _, c := range want {
			for _, a := range c.Active {
				active += a
			}
		}
		t.Logf("%s..%s, %d weeks: %d cohorts, %d contact-weeks engaged", tc.from.Format(time.DateOnly), tc.to.Format(time.DateOnly), tc.weeks, len(want), active)
		if len(want) == 0 || (active == 0 && tc.weeks > 1) {
			t.Fatalf("window %s..%s: the reference has nothing to compare", tc.from, tc.to)
		}
		if got := retention(t, conn, tc.from, tc.to, tc.weeks); !reflect.DeepEqual(got, want) {
			t.Errorf("retention %s..%s, %d weeks\n got %+v\nwant %+v", tc.from, tc.to, tc.weeks, got, want)
		}
	}
	if campaignCohorts < 12 {
		t.Fatalf("the windows hold %d campaign cohorts: too few to compare", campaignCohorts)
	}
}

// Events stored before migrations 0007 and 0009 are backfilled; backfilling again, or
// events going through both the backfills and the views, changes nothing.
func TestPreAggregateBackfill(t *testing.T) {
	ctx := context.Background()
	conn, _ := testenv.ClickHouse(t)
	if _, err := migrate(ctx, conn, withoutViews()); err != nil {
		t.Fatal(err)
	}
	evs, want := cohortEvents()
	insertEvents(t, conn, evs)
	if _, err := Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	from, to := baseTime.AddDate(0, 0, -3), baseTime.AddDate(0, 0, 14)
	wantByCampaign := campaignRetentionTruth(evs, from, to.AddDate(0, 0, 7), 4)
	check := func(when string) {
		t.Helper()
		if got := retention(t, conn, from, to, 4); !reflect.DeepEqual(got, want) {
			t.Fatalf("retention %s\n got %+v\nwant %+v", when, got, want)
		}
		if got := retentionByCampaign(t, conn, from, to.AddDate(0, 0, 7), 4); !reflect.DeepEqual(got, wantByCampaign) {
			t.Fatalf("retention by campaign %s\n got %+v\nwant %+v", when, got, wantByCampaign)
		}
		if got, err := contactWeeksRetention(ctx, conn, from, to, 4); err != nil || !reflect.DeepEqual(got.Cohorts, withoutRetained(want)) {
			t.Fatalf("contact_weeks retention %s\n got %+v, %v\nwant %+v", when, got.Cohorts, err, want)
		}
	}
	check("after the backfill")
	if err := backfillContactWeeks(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := backfillCohorts(ctx, conn); err != nil {
		t.Fatal(err)
	}
	insertEvents(t, conn, evs[:len(evs)/3])
	check("after a second backfill and redelivered events")
}

// withoutRetained is cohorts without their Retained ratios (contactWeeksRetention,
// the benchmark's baseline, leaves them out).
func withoutRetained(cs []Cohort) []Cohort {
	out := make([]Cohort, len(cs))
	for i, c := range cs {
		out[i] = Cohort{Week: c.Week, Contacts: c.Contacts, Active: c.Active}
	}
	return out
}

func TestWeekNumber(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Date(1970, 1, 11, 23, 59, 59, 0, time.UTC), 0},
		{time.Date(1970, 1, 12, 0, 0, 0, 0, time.UTC), 1},
		{time.Date(2025, 3, 16, 23, 59, 59, 999e6, time.UTC), 2879},
		{time.Date(2025, 3, 17, 0, 0, 0, 0, time.UTC), 2880},
		{time.Date(2025, 3, 17, 6, 0, 0, 0, time.FixedZone("+07", 7*3600)), 2879},
	} {
		if got := weekNumber(tc.t); got != tc.want {
			t.Errorf("weekNumber(%s) = %d, want %d", tc.t, got, tc.want)
		}
		if m := weekMonday(tc.want); m.Weekday() != time.Monday {
			t.Errorf("weekMonday(%d) = %s, not a Monday", tc.want, m)
		}
	}
}

// withoutViews is every migration but 0007 and 0009 (the pre-aggregates and their views).
func withoutViews() []migration {
	var out []migration
	for _, m := range migrations {
		if m.version != 7 && m.version != 9 {
			out = append(out, m)
		}
	}
	return out
}

// Cohorts by campaign over the same stream: each campaign's contacts, engaged in the
// weeks from its first send (engagement in any campaign counts).
func TestRetentionByCampaign(t *testing.T) {
	conn := migrated(t)
	evs, _ := cohortEvents()
	insertEvents(t, conn, evs)
	insertEvents(t, conn, evs[len(evs)/3:])
	rep, err := RetentionByCampaign(context.Background(), conn, baseTime.AddDate(0, 0, -3), baseTime.AddDate(0, 0, 21), 4)
	if err != nil {
		t.Fatal(err)
	}
	cohort := func(campaign, week string, n uint64, active ...uint64) CampaignCohort {
		c := CampaignCohort{Campaign: campaign, Week: week, Contacts: n, Active: active, Retained: make([]float64, len(active))}
		for k, a := range active {
			c.Retained[k] = ratio(a, n)
		}
		return c
	}
	want := []CampaignCohort{
		cohort("a", "2025-03-10", 100, 60, 30, 0, 10),
		cohort("a2", "2025-03-10", 10, 0, 0, 10, 0),
		cohort("b", "2025-03-17", 50, 20, 50, 0, 0),
		cohort("c", "2025-03-24", 10, 10, 0, 0, 0),
	}
	if !reflect.DeepEqual(rep.Cohorts, want) {
		t.Fatalf("cohorts by campaign\n got %+v\nwant %+v", rep.Cohorts, want)
	}
	goldenJSON(t, "retention_by_campaign.json", rep)
	// Named campaigns only.
	rep, err = RetentionByCampaign(context.Background(), conn, baseTime.AddDate(0, 0, -3), baseTime.AddDate(0, 0, 21), 4, "b", "a2", "nope")
	if err != nil || !reflect.DeepEqual(rep.Cohorts, []CampaignCohort{want[1], want[2]}) {
		t.Fatalf("campaigns b and a2: %+v, %v", rep.Cohorts, err)
	}
	// Campaigns first sent from week A+1 on.
	rep, err = RetentionByCampaign(context.Background(), conn, baseTime.AddDate(0, 0, 7), baseTime.AddDate(0, 0, 21), 4)
	if err != nil || !reflect.DeepEqual(rep.Cohorts, want[2:]) {
		t.Fatalf("from week A+1: %+v, %v", rep.Cohorts, err)
	}
}
