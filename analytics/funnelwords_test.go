package analytics

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// randomCampaignEvents makes the events of n contacts of campaign: every lifecycle a
// campaign's contacts go through (queued only, skipped under one reason or several,
// sent then failed, failed then retried and sent, delivered, read without delivered,
// clicked without read, replies and conversions), with redelivered duplicates (the same
// event id) and statuses out of order (a read before its sent). A contact's variant,
// sender, country and channel are fixed; status events carry none of them, and some
// contacts' events never carry a country.
func randomCampaignEvents(rng *rand.Rand, campaign string, n int, base time.Time) []events.Event {
	reasons := []string{"no_consent", "quiet_hours", "suppressed", "frequency_cap", ""}
	codes := []int{131026, 131049, 130472, 0, 131000}
	var out []events.Event
	for c := 1; c <= n; c++ {
		contact := uint32(2*c + rng.IntN(2)) // distinct, some sharing a word, some far apart
		if rng.IntN(4) == 0 {
			contact += 1_000_000
		}
		variant := []string{"A", "B", "control"}[rng.IntN(3)]
		sender := []string{"s1", "s2"}[rng.IntN(2)]
		country := []string{"TH", "ID", ""}[rng.IntN(3)]
		channel := []string{"whatsapp", "sms"}[rng.IntN(2)]
		t := base.Add(time.Duration(rng.IntN(3600)) * time.Second)
		seq := 0
		ev := func(kind events.Kind, carries bool) *events.Event {
			seq++
			e := events.New(kind, campaign, contact, t.Add(time.Duration(rng.IntN(600)-60)*time.Second))
			e.ID = events.ID(campaign, contact, kind, fmt.Sprint(seq))
			if carries {
				e.Variant, e.SenderID, e.Country, e.Channel = variant, sender, country, channel
			}
			out = append(out, e)
			return &out[len(out)-1]
		}
		if rng.IntN(8) > 0 {
			ev(events.Queued, true)
		}
		switch r := rng.IntN(10); {
		case r == 0: // queued only (still waiting)
		case r == 1: // skipped, maybe again under another reason (a redelivered job)
			for range 1 + rng.IntN(3) {
				ev(events.Skipped, true).Reason = reasons[rng.IntN(len(reasons))]
			}
		case r == 2: // failed, maybe several times with different codes
			for range 1 + rng.IntN(3) {
				ev(events.Failed, true).ErrorCode = codes[rng.IntN(len(codes))]
			}
		default:
			ev(events.Sent, true)
			if rng.IntN(6) == 0 { // failed after sent (an undeliverable status)
				ev(events.Failed, false).ErrorCode = codes[rng.IntN(len(codes))]
			}
			if rng.IntN(2) == 0 {
				ev(events.Delivered, false)
			}
			if rng.IntN(3) == 0 {
				ev(events.Read, false)
			}
			if rng.IntN(5) == 0 {
				ev(events.Clicked, false)
			}
			if rng.IntN(7) == 0 {
				ev(events.Replied, false)
			}
			if rng.IntN(9) == 0 {
				ev(events.Converted, false)
			}
		}
	}
	// Redeliveries: the same events again (same ids), and the whole stream shuffled.
	for i := range len(out) / 5 {
		out = append(out, out[rng.IntN(len(out)-i)])
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// The funnels and A/B counts from campaign_words equal those grouped from the events
// (and the timeline from campaign_minutes the one counted in Go), on random
// event sets: some inserted before migration 0014 (backfilled), the rest after (through
// the view), duplicates across both, and the few contacts skipped or failed under
// several reasons read both by id and by the whole-campaign fallback.
func TestFunnelWordsEqualsEvents(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 18))
			conn := migratedUpTo(t, 13)
			var campaigns []string
			var all []events.Event
			for i := range 3 {
				cp := fmt.Sprintf("c%d", i)
				campaigns = append(campaigns, cp)
				all = append(all, randomCampaignEvents(rng, cp, 50+rng.IntN(400), baseTime.AddDate(0, i, 0))...)
			}
			rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
			cut := len(all) / 2
			insertEvents(t, conn, all[:cut])
			if _, err := Migrate(ctx, conn); err != nil {
				t.Fatal(err)
			}
			// After the migration: the other half, in two batches, plus a batch of
			// events seen before (an insert retried).
			insertEvents(t, conn, all[cut:cut+(len(all)-cut)/2])
			insertEvents(t, conn, all[cut+(len(all)-cut)/2:])
			insertEvents(t, conn, all[:cut/3])
			for _, cp := range append(campaigns, "absent") {
				want, err := funnelFromEvents(ctx, conn, cp)
				if err != nil {
					t.Fatal(err)
				}
				for _, limit := range []uint64{maxAmbiguous, 0} {
					maxAmbiguous, limit = limit, maxAmbiguous
					got, err := Funnel(ctx, conn, cp)
					maxAmbiguous = limit
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("funnel of %s (max ambiguous %d):\n got %+v\nwant %+v", cp, limit, got, want)
					}
				}
				if cp != "absent" && (want.Steps[0].Contacts == 0 || len(want.Skipped) == 0 || len(want.Failed) == 0) {
					t.Fatalf("funnel of %s: the data set lacks a case: %+v", cp, want)
				}
				var mine []events.Event
				for _, e := range all {
					if e.CampaignID == cp {
						mine = append(mine, e)
					}
				}
				tl, err := Timeline(ctx, conn, cp, 5*time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if want := timelineReference(mine, cp, 5*time.Minute); !reflect.DeepEqual(tl, want) {
					t.Fatalf("timeline of %s:\n got %+v\nwant %+v", cp, tl, want)
				}
				for step := range abSteps {
					want, err := abTestWith(ctx, conn, cp, step, "", abFromEvents)
					if err != nil {
						t.Fatal(err)
					}
					got, err := ABTest(ctx, conn, cp, step, "")
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("a/b test of %s at %s:\n got %+v\nwant %+v", cp, step, got, want)
					}
				}
				for by := range funnelDims {
					want, err := funnelByFromEvents(ctx, conn, cp, by)
					if err != nil {
						t.Fatal(err)
					}
					got, err := FunnelBy(ctx, conn, cp, by)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("funnel of %s by %s:\n got %+v\nwant %+v", cp, by, got, want)
					}
				}
			}
		})
	}
}

// migratedUpTo returns a connection to a fresh database migrated to version v.
func migratedUpTo(t testing.TB, v uint32) driver.Conn {
	t.Helper()
	conn, _ := testenv.ClickHouse(t)
	var ms []migration
	for _, m := range migrations {
		if m.version <= v {
			ms = append(ms, m)
		}
	}
	if _, err := migrate(context.Background(), conn, ms); err != nil {
		t.Fatal(err)
	}
	return conn
}
