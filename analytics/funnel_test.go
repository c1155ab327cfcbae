package analytics

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

// insertEvents writes evs straight into the events table, in the given order.
func insertEvents(t testing.TB, conn driver.Conn, evs []events.Event) {
	t.Helper()
	var b eventsBuffer
	for _, e := range evs {
		b.appendEvent(e)
	}
	if err := b.insert(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
}

func steps(q, s, d, r uint64) []FunnelStep {
	c := []uint64{q, s, d, r}
	out := make([]FunnelStep, 4)
	for i, n := range c {
		out[i] = FunnelStep{Name: funnelSteps[i], Contacts: n}
		if q > 0 {
			out[i].OfFirst = float64(n) / float64(q)
		}
		prev := q
		if i > 0 {
			prev = c[i-1]
		}
		if prev > 0 {
			out[i].OfPrevious = float64(n) / float64(prev)
		}
	}
	return out
}

func TestFunnelCountingRule(t *testing.T) {
	at := func(kind events.Kind, campaign string, contact uint32, sec int) events.Event {
		return events.New(kind, campaign, contact, baseTime.Add(time.Duration(sec)*time.Second))
	}
	failed := func(contact uint32, sec, code int, disc string) events.Event {
		e := at(events.Failed, "c", contact, sec)
		e.ErrorCode = code
		if disc != "" {
			e.ID = events.ID("c", contact, events.Failed, disc)
		}
		return e
	}
	skipped := func(contact uint32, reason string) events.Event {
		e := at(events.Skipped, "c", contact, 1)
		e.Reason = reason
		return e
	}
	for _, tc := range []struct {
		name string
		evs  []events.Event
		want FunnelReport
	}{
		{
			name: "empty campaign",
			want: FunnelReport{Campaign: "c", Steps: steps(0, 0, 0, 0)},
		},
		{
			name: "read without delivered counts as delivered",
			evs:  []events.Event{at(events.Queued, "c", 1, 0), at(events.Sent, "c", 1, 1), at(events.Read, "c", 1, 9)},
			want: FunnelReport{Campaign: "c", Steps: steps(1, 1, 1, 1)},
		},
		{
			name: "a later step implies the earlier ones, whatever arrived",
			evs:  []events.Event{at(events.Delivered, "c", 1, 5), at(events.Read, "c", 2, 5), at(events.Sent, "c", 3, 1)},
			want: FunnelReport{Campaign: "c", Steps: steps(3, 3, 2, 1)},
		},
		{
			name: "arrival order and duplicates do not matter",
			evs: []events.Event{
				at(events.Read, "c", 1, 9), at(events.Read, "c", 1, 9), at(events.Delivered, "c", 1, 5),
				at(events.Sent, "c", 1, 1), at(events.Queued, "c", 1, 0), at(events.Sent, "c", 1, 1),
				at(events.Queued, "c", 2, 0), at(events.Queued, "c", 2, 0),
			},
			want: FunnelReport{Campaign: "c", Steps: steps(2, 1, 1, 1)},
		},
		{
			name: "other campaigns are not counted",
			evs: []events.Event{at(events.Queued, "c", 1, 0), at(events.Read, "other", 1, 9),
				at(events.Read, "other", 2, 9), at(events.Queued, "c-2", 3, 0)},
			want: FunnelReport{Campaign: "c", Steps: steps(1, 0, 0, 0)},
		},
		{
			name: "skipped by reason, failed by the code of the latest failure",
			evs: []events.Event{
				at(events.Queued, "c", 1, 0), skipped(1, "quiet_hours"), skipped(1, "quiet_hours"),
				at(events.Queued, "c", 2, 0), skipped(2, "no_consent"),
				at(events.Queued, "c", 3, 0), skipped(3, "no_consent"),
				at(events.Queued, "c", 4, 0), at(events.Sent, "c", 4, 1), failed(4, 20, 131026, ""), failed(4, 2, 130429, "try-1"),
				at(events.Queued, "c", 5, 0), failed(5, 2, 131049, ""), failed(5, 2, 131049, ""),
			},
			want: FunnelReport{Campaign: "c", Steps: steps(5, 1, 0, 0),
				Skipped: []ReasonCount{{"no_consent", 2}, {"quiet_hours", 1}},
				Failed:  []CodeCount{{131026, 1}, {131049, 1}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := migrated(t)
			if len(tc.evs) > 0 {
				insertEvents(t, conn, tc.evs)
			}
			got, err := Funnel(context.Background(), conn, "c")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("funnel\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestFunnelKnownCampaign(t *testing.T) {
	// The full synthetic campaign, inserted twice in separate parts (as a redelivery
	// would), gives exactly the known figures.
	conn := migrated(t)
	evs, want := campaignStream("spring", 1)
	insertEvents(t, conn, evs)
	insertEvents(t, conn, evs[:len(evs)/3])
	got, err := Funnel(context.Background(), conn, "spring")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("funnel\n got %+v\nwant %+v", got, want)
	}
}
