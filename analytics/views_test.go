package analytics

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
)

// v_message_outcomes tells which messages were deferred, how many times, and the reason
// and due time of the latest deferral, whatever the order and multiplicity of arrival.
func TestMessageOutcomesDeferred(t *testing.T) {
	ctx := context.Background()
	conn := migrated(t)
	defer1 := func(c uint32, at time.Duration, reason string, until time.Duration) events.Event {
		e := events.New(events.Deferred, "d", c, baseTime.Add(at))
		e.Reason, e.Until = reason, baseTime.Add(until)
		e.ID = events.ID("d", c, events.Deferred, e.Until.String()+reason)
		return e
	}
	evs := []events.Event{
		// 1: deferred by quiet hours, then by the pair rate, then sent.
		events.New(events.Queued, "d", 1, baseTime),
		defer1(1, time.Second, "quiet_hours", 8*time.Hour),
		defer1(1, 8*time.Hour, "pair_rate", 8*time.Hour+6*time.Second),
		events.New(events.Sent, "d", 1, baseTime.Add(8*time.Hour+6*time.Second)),
		// 2: deferred once, still waiting.
		events.New(events.Queued, "d", 2, baseTime),
		defer1(2, time.Second, "sender_cap", time.Hour),
		// 3: never deferred.
		events.New(events.Queued, "d", 3, baseTime),
		events.New(events.Sent, "d", 3, baseTime.Add(time.Second)),
	}
	// Every event twice, the whole stream reversed and shuffled: the latest deferral of
	// contact 1 arrives first.
	all := append(append([]events.Event{}, evs...), evs...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	insertEvents(t, conn, all[:len(all)/2])
	insertEvents(t, conn, all[len(all)/2:])

	type outcome struct {
		stage, deferred uint8
		deferrals       uint64
		reason          string
		until           time.Time
	}
	want := map[uint32]outcome{
		1: {2, 1, 2, "pair_rate", baseTime.Add(8*time.Hour + 6*time.Second)},
		2: {1, 1, 1, "sender_cap", baseTime.Add(time.Hour)},
		3: {2, 0, 0, "", time.Unix(0, 0).UTC()},
	}
	rows, err := conn.Query(ctx, `SELECT contact_id, stage, deferred, deferrals, deferred_reason, deferred_until
		FROM v_message_outcomes WHERE campaign_id = 'd' ORDER BY contact_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for ; rows.Next(); n++ {
		var (
			c uint32
			o outcome
		)
		if err := rows.Scan(&c, &o.stage, &o.deferred, &o.deferrals, &o.reason, &o.until); err != nil {
			t.Fatal(err)
		}
		o.until = o.until.UTC()
		if w := want[c]; o != w {
			t.Errorf("contact %d: %+v, want %+v", c, o, w)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("%d rows, want %d", n, len(want))
	}
	// The funnel views still read the replaced view.
	var queued, sent uint64
	if err := conn.QueryRow(ctx, "SELECT queued, sent FROM v_funnel WHERE campaign_id = 'd'").Scan(&queued, &sent); err != nil {
		t.Fatal(err)
	}
	if queued != 3 || sent != 2 {
		t.Fatalf("v_funnel: queued %d sent %d, want 3 and 2", queued, sent)
	}
}
