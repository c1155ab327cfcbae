package analytics

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
)

// The timeline (from campaign_minutes) equals distinct contacts per step and kind
// counted in Go from the same random events (duplicates and all), with every step
// between the first and the last present; a campaign without events has no points, a
// step that is not whole minutes and a campaign spanning too many steps are refused.
func TestTimeline(t *testing.T) {
	ctx := context.Background()
	conn := migrated(t)
	rng := rand.New(rand.NewPCG(7, 18))
	evs := randomCampaignEvents(rng, "c", 400, baseTime)
	insertEvents(t, conn, evs)
	insertEvents(t, conn, evs[:len(evs)/4]) // an insert retried
	for _, step := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour} {
		got, err := Timeline(ctx, conn, "c", step)
		if err != nil {
			t.Fatal(err)
		}
		want := timelineReference(evs, "c", step)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("timeline at %v:\n got %+v\nwant %+v", step, got, want)
		}
		if len(want.Points) < 2 {
			t.Fatalf("timeline at %v: %d points; the data set should span several", step, len(want.Points))
		}
	}
	if got, err := Timeline(ctx, conn, "absent", time.Minute); err != nil || len(got.Points) != 0 {
		t.Fatalf("campaign without events: %+v, %v", got, err)
	}
	if _, err := Timeline(ctx, conn, "c", time.Second); err == nil {
		t.Fatal("a step of a second: no error")
	}
	if _, err := timelineOf(ctx, conn, "c", time.Minute, 10); !errors.Is(err, ErrTimelineTooLong) {
		t.Fatalf("a timeline of more than 10 steps: %v, want ErrTimelineTooLong", err)
	}
}

// timelineReference is the timeline of campaign at step counted in Go from evs.
func timelineReference(evs []events.Event, campaign string, step time.Duration) TimelineReport {
	type key struct {
		t    int64
		kind events.Kind
	}
	seen := map[key]map[uint32]bool{}
	lo, hi := int64(1<<62), int64(0)
	secs := int64(step / time.Second)
	for _, e := range evs {
		switch e.Kind {
		case events.Sent, events.Delivered, events.Read, events.Clicked, events.Failed, events.Skipped:
		default:
			continue
		}
		if e.CampaignID != campaign {
			continue
		}
		b := e.Time.Unix() / secs * secs
		lo, hi = min(lo, b), max(hi, b)
		k := key{b, e.Kind}
		if seen[k] == nil {
			seen[k] = map[uint32]bool{}
		}
		seen[k][e.ContactID] = true
	}
	rep := TimelineReport{Campaign: campaign, StepSeconds: secs, Points: []TimelinePoint{}}
	for b := lo; b <= hi; b += secs {
		n := func(k events.Kind) uint64 { return uint64(len(seen[key{b, k}])) }
		rep.Points = append(rep.Points, TimelinePoint{Time: time.Unix(b, 0).UTC(), Sent: n(events.Sent), Delivered: n(events.Delivered),
			Read: n(events.Read), Clicked: n(events.Clicked), Failed: n(events.Failed), Skipped: n(events.Skipped)})
	}
	return rep
}
