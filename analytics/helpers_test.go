package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testLogger logs warnings and errors into the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// migrated returns a connection to a fresh, migrated database of the test's own.
func migrated(t testing.TB) driver.Conn {
	t.Helper()
	conn, _ := testenv.ClickHouse(t)
	if _, err := Migrate(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	return conn
}

// waitFor polls cond until it holds, failing the test after a generous deadline (a
// guard against hangs, not a timing assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// runSink runs s until the returned stop is called (or the test ends); stop returns
// what Run returned.
func runSink(t testing.TB, s *Sink) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitCaughtUp waits until the sink's group has committed everything.
func waitCaughtUp(t testing.TB, s *Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := s.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// settle returns once every reader of s has joined the group for good: it publishes a
// sentinel to each topic and waits until the sink has committed them all. The last
// reader to take its sentinel did so in a generation with every reader in it, so no
// rebalance follows to redeliver what the test publishes next. The sentinels are
// campaign "sentinel", contact 4000000000 and inbound id "sentinel".
func settle(t testing.TB, s *Sink, brokers []string, topics kafkax.Topics) {
	t.Helper()
	const contact = 4000000000
	e, _ := events.New(events.Queued, "sentinel", contact, baseTime).Marshal()
	r := events.ConsentRecord{ID: "sentinel", ContactID: contact, Channel: "whatsapp", Purpose: "marketing",
		Action: events.Grant, Source: "api", Time: baseTime}
	r.Seal("")
	c, _ := r.Marshal()
	in, _ := json.Marshal(events.Inbound{ID: "sentinel", ContactID: contact, Time: baseTime})
	key := kafkax.ContactKey(contact)
	publish(t, brokers, topics.Events, []kafka.Message{{Key: key, Value: e}})
	publish(t, brokers, topics.Consent, []kafka.Message{{Key: key, Value: c}})
	publish(t, brokers, topics.Inbound, []kafka.Message{{Key: key, Value: in}})
	waitCaughtUp(t, s)
}

// publish writes values to topic, keyed by contact.
func publish(t testing.TB, brokers []string, topic string, msgs []kafka.Message) {
	t.Helper()
	w := kafkax.NewWriter(brokers, topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

func eventMessages(t testing.TB, evs []events.Event) []kafka.Message {
	t.Helper()
	msgs := make([]kafka.Message, len(evs))
	for i, e := range evs {
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = kafka.Message{Key: kafkax.ContactKey(e.ContactID), Value: b}
	}
	return msgs
}

var baseTime = time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)

// campaignStream is a campaign's events as Kafka would carry them, and the funnel they
// must give. For 500 contacts:
//
//	500 queued; 20 skipped (12 no_consent, 8 quiet_hours); 480 sent (10 of them
//	deferred by pair_rate first);
//	of the sent: 420 delivered (270 of them also read), 30 read without delivered,
//	10 failed (6 × 131026, 4 × 131049; 3 of them after an earlier retryable 130429),
//	20 with no status yet.
//
// About 10% of the events are duplicated, and the whole stream is shuffled, so statuses
// arrive out of order (read before delivered before sent…). Every event's time is
// realistic; the arrival order is not.
func campaignStream(campaign string, seed uint64) ([]events.Event, FunnelReport) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var evs []events.Event
	ev := func(kind events.Kind, contact uint32, after time.Duration) events.Event {
		e := events.New(kind, campaign, contact, baseTime.Add(time.Duration(contact)*time.Millisecond+after))
		e.SenderID, e.Channel, e.Template, e.Country = "s1", "whatsapp", "promo", "TH"
		e.Variant = []string{"A", "B"}[contact%2]
		return e
	}
	for i := range 500 {
		c := uint32(i + 1)
		evs = append(evs, ev(events.Queued, c, 0))
		if i < 20 {
			e := ev(events.Skipped, c, 10*time.Millisecond)
			e.Reason = "no_consent"
			if i >= 12 {
				e.Reason = "quiet_hours"
			}
			evs = append(evs, e)
			continue
		}
		if i < 30 { // deferred by the pair rate first, due again 6 s later
			d := ev(events.Deferred, c, 500*time.Millisecond)
			d.Reason, d.Until = "pair_rate", d.Time.Add(6*time.Second)
			evs = append(evs, d)
		}
		sent := ev(events.Sent, c, time.Second)
		sent.ProviderMessageID = fmt.Sprintf("wamid.%s.%d", campaign, c)
		sent.ConsentRef = fmt.Sprintf("consent-%d", c)
		evs = append(evs, sent)
		switch j := i - 20; {
		case j < 420:
			evs = append(evs, ev(events.Delivered, c, 5*time.Second))
			if j < 270 {
				evs = append(evs, ev(events.Read, c, 30*time.Second))
			}
		case j < 450:
			evs = append(evs, ev(events.Read, c, 30*time.Second))
		case j < 460:
			if j < 453 { // an earlier, retryable failure with its own id
				e := ev(events.Failed, c, 2*time.Second)
				e.ID = events.ID(campaign, c, events.Failed, "attempt-1")
				e.ErrorCode, e.Retryable = 130429, true
				evs = append(evs, e)
			}
			e := ev(events.Failed, c, 20*time.Second)
			e.ErrorCode = 131026
			if j >= 456 {
				e.ErrorCode = 131049
			}
			evs = append(evs, e)
		}
	}
	n := len(evs)
	for i := range n {
		if rng.IntN(10) == 0 {
			evs = append(evs, evs[i])
		}
	}
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })

	want := FunnelReport{
		Campaign: campaign,
		Steps: []FunnelStep{
			{Name: "queued", Contacts: 500, OfPrevious: 1, OfFirst: 1},
			{Name: "sent", Contacts: 480, OfPrevious: 480.0 / 500, OfFirst: 480.0 / 500},
			{Name: "delivered", Contacts: 450, OfPrevious: 450.0 / 480, OfFirst: 450.0 / 500},
			{Name: "read", Contacts: 300, OfPrevious: 300.0 / 450, OfFirst: 300.0 / 500},
		},
		Skipped: []ReasonCount{{"no_consent", 12}, {"quiet_hours", 8}},
		Failed:  []CodeCount{{131026, 6}, {131049, 4}},
	}
	return evs, want
}

// distinctIDs counts the distinct event ids in evs.
func distinctIDs(evs []events.Event) uint64 {
	seen := map[string]bool{}
	for _, e := range evs {
		seen[e.ID] = true
	}
	return uint64(len(seen))
}

// consentChains returns contacts × per records of sealed ledger chains, in ledger order
// per contact; some records of a contact share a millisecond.
func consentChains(contacts, per int) map[uint32][]events.ConsentRecord {
	out := map[uint32][]events.ConsentRecord{}
	for c := 1; c <= contacts; c++ {
		prev := ""
		for k := range per {
			r := events.ConsentRecord{
				ID: fmt.Sprintf("cr-%d-%d", c, k), ContactID: uint32(c), Channel: "whatsapp", Purpose: "marketing",
				Action: events.Grant, Source: "web_form", Wording: "Yes, send me offers", WordingVersion: "v2",
				IP: "203.0.113.7", UserAgent: "Mozilla/5.0", Actor: "contact", Proof: fmt.Sprintf("form-%d", k),
				// records 2 and 3 share a millisecond, and 3's id sorts before 2's
				Time: baseTime.Add(time.Duration(k/2*2) * time.Minute).Add(123456 * time.Nanosecond),
			}
			if k == 3 {
				r.ID = fmt.Sprintf("cr-%d-0%d", c, k)
			}
			if k%2 == 1 {
				r.Action = events.Revoke
			}
			r.Seal(prev)
			prev = r.Hash
			out[uint32(c)] = append(out[uint32(c)], r)
		}
	}
	return out
}

func sortedKeys[K ~uint32 | ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
