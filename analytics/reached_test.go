package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
)

// Reached counts each contact once whatever the duplicates, and only sends at or after
// since, of the campaigns asked about.
func TestReached(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var evs []events.Event
	add := func(kind events.Kind, campaign string, contact uint32, at time.Time) {
		e := events.New(kind, campaign, contact, at)
		evs = append(evs, e, e) // each twice: at-least-once delivery
	}
	add(events.Sent, "w-1", 1, t0)
	add(events.Sent, "w-1", 2, t0.Add(48*time.Hour))
	add(events.Skipped, "w-1", 3, t0.Add(48*time.Hour))
	add(events.Sent, "w-2", 4, t0.Add(72*time.Hour))
	add(events.Sent, "other", 5, t0.Add(72*time.Hour))
	insertEvents(t, conn, evs)
	r := Reached{Conn: conn}
	got, err := r.SentSince(ctx, []string{"w-1", "w-2"}, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got.GetCardinality() != 2 || !got.Contains(2) || !got.Contains(4) {
		t.Fatalf("reached since a day later: %v, want [2 4]", got.ToArray())
	}
	counts, err := r.SentCounts(ctx, []string{"w-1", "w-2", "none"})
	if err != nil {
		t.Fatal(err)
	}
	if counts["w-1"] != 2 || counts["w-2"] != 1 || len(counts) != 2 {
		t.Fatalf("sent counts %v", counts)
	}
}
