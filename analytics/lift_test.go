package analytics

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
)

// Campaign "h": contacts 1…200 sent to, 201…300 held out, 301…310 skipped for another
// reason (neither group). Orders of 100 THB: 1…30 within the week after the send
// (contact 1's order tracked twice, attributed to "h" and to no campaign; contact 5
// also buys for 50 USD), 31…35 only nine days later, and 201…210 within the week,
// unattributed. Every event is stored twice, shuffled.
func TestLift(t *testing.T) {
	conn := migrated(t)
	at := baseTime
	var evs []events.Event
	order := func(c uint32, campaign, id string, value float64, currency string, after time.Duration) {
		evs = append(evs, ConversionEvent(Conversion{ContactID: c, OrderID: id, Value: value, Currency: currency, Time: at.Add(after)}, campaign))
	}
	for c := uint32(1); c <= 310; c++ {
		switch {
		case c <= 200:
			evs = append(evs, events.New(events.Sent, "h", c, at))
		case c <= 300:
			e := events.New(events.Skipped, "h", c, at)
			e.Reason = HoldoutReason
			evs = append(evs, e)
		default:
			e := events.New(events.Skipped, "h", c, at)
			e.Reason = "no_consent"
			evs = append(evs, e)
			order(c, "", fmt.Sprint("o", c), 100, "THB", time.Hour)
		}
		switch {
		case c <= 30, c > 200 && c <= 210:
			campaign := "h"
			if c > 200 {
				campaign = ""
			}
			order(c, campaign, fmt.Sprint("o", c), 100, "THB", time.Duration(c%100)*time.Hour)
		case c > 30 && c <= 35:
			order(c, "h", fmt.Sprint("o", c), 100, "THB", 9*24*time.Hour)
		}
	}
	order(1, "", "o1", 100, "THB", 2*time.Hour)
	order(5, "h", "o5b", 50, "USD", 3*time.Hour)
	evs = append(evs, evs...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	insertEvents(t, conn, evs)

	rep, err := Lift(context.Background(), conn, "h", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantT := LiftGroup{Contacts: 200, Converted: 30, Rate: 0.15, Revenue: []Amount{{"THB", 30, 3000}, {"USD", 1, 50}}}
	wantH := LiftGroup{Contacts: 100, Converted: 10, Rate: 0.10, Revenue: []Amount{{"THB", 10, 1000}}}
	if !reflect.DeepEqual(rep.Treated, wantT) || !reflect.DeepEqual(rep.Holdout, wantH) {
		t.Fatalf("treated %+v\nholdout %+v", rep.Treated, rep.Holdout)
	}
	z, p := twoProportionZ(30, 200, 10, 100)
	if math.Abs(rep.Lift-0.05) > 1e-12 || math.Abs(rep.RelativeLift-0.5) > 1e-9 || rep.Z != z || rep.PValue != p || rep.WindowMS != 168*3600*1000 {
		t.Fatalf("lift %v relative %v z %v p %v window %v", rep.Lift, rep.RelativeLift, rep.Z, rep.PValue, rep.WindowMS)
	}
	goldenJSON(t, "lift.json", rep)

	// A ten-day window also counts contacts 31…35.
	rep, err = Lift(context.Background(), conn, "h", 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Treated.Converted != 35 || rep.Holdout.Converted != 10 {
		t.Fatalf("ten-day window: treated %+v holdout %+v", rep.Treated, rep.Holdout)
	}
	// Without a holdout group.
	rep, err = Lift(context.Background(), conn, "none", 0)
	if err != nil || rep.Treated.Contacts != 0 || rep.Holdout.Contacts != 0 || rep.PValue != 1 {
		t.Fatalf("campaign without events: %+v, %v", rep, err)
	}
}
