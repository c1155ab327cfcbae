package analytics

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
)

// Lift from campaign_words and the converters' events equals Lift grouping every
// contact's events, on random campaigns: contacts sent to (some twice, some also held
// out), held out, skipped for other reasons; orders before, inside and after the window,
// tracked twice (same order id, even under another campaign), without an order id, in
// two currencies; every event possibly stored twice. Both ways of reading the
// converters' reference times (by id, and the whole campaign) are checked.
func TestLiftWordsEqualsEvents(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			conn := migrated(t)
			var evs []events.Event
			n := 200 + rng.IntN(300)
			for c := uint32(1); c <= uint32(n); c++ {
				at := baseTime.Add(time.Duration(rng.IntN(48)) * time.Hour)
				switch r := rng.IntN(10); {
				case r < 7:
					evs = append(evs, events.New(events.Sent, "h", c, at))
					if rng.IntN(10) == 0 { // a second send (a fallback), later
						e := events.New(events.Sent, "h", c, at.Add(time.Hour))
						e.ID = events.ID("h", c, events.Sent, "2")
						evs = append(evs, e)
					}
					if rng.IntN(20) == 0 { // also held out: treated wins
						e := events.New(events.Skipped, "h", c, at.Add(-time.Minute))
						e.Reason = HoldoutReason
						evs = append(evs, e)
					}
				case r < 9:
					e := events.New(events.Skipped, "h", c, at)
					e.Reason = HoldoutReason
					evs = append(evs, e)
				default:
					e := events.New(events.Skipped, "h", c, at)
					e.Reason = "no_consent"
					evs = append(evs, e)
				}
				for k := range rng.IntN(4) {
					id := fmt.Sprintf("o%d-%d", c, rng.IntN(3))
					if rng.IntN(6) == 0 {
						id = ""
					}
					campaign := []string{"h", "", "other"}[rng.IntN(3)]
					// On the window's edges (the send, a day and a week after it, just
					// before it) or anywhere from two days before to ten after.
					after := []time.Duration{0, 24 * time.Hour, 7 * 24 * time.Hour, -time.Millisecond,
						time.Duration(rng.IntN(12*24)-48) * time.Hour}[rng.IntN(5)]
					conv := ConversionEvent(Conversion{ContactID: c, OrderID: id, Value: float64(rng.IntN(400)) / 2,
						Currency: []string{"THB", "USD"}[rng.IntN(2)],
						Time:     at.Add(after)}, campaign)
					if id == "" {
						conv.ID = events.ID(campaign, c, events.Converted, fmt.Sprint("anon", k))
					}
					evs = append(evs, conv)
				}
			}
			for i := range len(evs) / 4 {
				evs = append(evs, evs[rng.IntN(len(evs)-i)])
			}
			rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
			insertEvents(t, conn, evs)
			for _, window := range []time.Duration{0, 24 * time.Hour} {
				want, err := liftFromEvents(ctx, conn, "h", window)
				if err != nil {
					t.Fatal(err)
				}
				if want.Treated.Converted == 0 || want.Holdout.Converted == 0 || len(want.Treated.Revenue) != 2 {
					t.Fatalf("the data set lacks a case: %+v", want)
				}
				for _, limit := range []int{maxLiftConverters, 0} {
					maxLiftConverters, limit = limit, maxLiftConverters
					got, err := Lift(ctx, conn, "h", window)
					maxLiftConverters = limit
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("lift (window %v, max converters %d):\n got %+v\nwant %+v", window, limit, got, want)
					}
				}
			}
			if got, err := Lift(ctx, conn, "absent", 0); err != nil || got.Treated.Contacts != 0 || got.Holdout.Contacts != 0 {
				t.Fatalf("lift of a campaign without events: %+v, %v", got, err)
			}
		})
	}
}
