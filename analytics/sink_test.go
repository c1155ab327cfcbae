package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
)

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func insertErrors(s *Sink, table string) float64 {
	return value(s.metrics.insertErrors.WithLabelValues(table))
}

func decodeErrors(s *Sink, table string) float64 {
	return value(s.metrics.decodeErrors.WithLabelValues(table))
}

func pending(s *Sink, table string) float64 {
	return value(s.metrics.pending.WithLabelValues(table))
}

func uint64Query(t testing.TB, conn driver.Conn, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestSinkEndToEnd(t *testing.T) {
	ctx := context.Background()
	brokers, topics := testenv.Kafka(t, 3)
	conn := migrated(t)

	evs, want := campaignStream("spring", 7)
	other, _ := campaignStream("autumn", 8) // same contact ids, another campaign
	all := append(append([]events.Event{}, evs...), other...)
	publish(t, brokers, topics.Events, eventMessages(t, all))

	reg := prometheus.NewRegistry()
	s := NewSink(SinkConfig{Brokers: brokers, Topics: topics, Conn: conn, Logger: testLogger(t), Registerer: reg,
		BatchRows: 97, FlushInterval: 20 * time.Millisecond})
	stop := runSink(t, s)
	waitCaughtUp(t, s)

	got, err := Funnel(ctx, conn, "spring")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("funnel\n got %+v\nwant %+v", got, want)
	}
	if n, w := uint64Query(t, conn, "SELECT uniqExact(event_id) FROM events"), distinctIDs(all); n != w {
		t.Errorf("events holds %d distinct ids, want %d", n, w)
	}
	// Every message was inserted (at least once: merges may since have collapsed the
	// duplicates, so count() proves nothing here).
	if n := value(s.metrics.rows.WithLabelValues("events")); n < float64(len(all)) {
		t.Errorf("%v rows inserted, fewer than the %d messages", n, len(all))
	}
	if n := decodeErrors(s, "events"); n != 0 {
		t.Errorf("%v decode errors", n)
	}
	// Deferred events keep their reason and due time (DateTime: whole seconds).
	if n := uint64Query(t, conn, `SELECT uniqExact(event_id) FROM events
		WHERE campaign_id = 'spring' AND kind = 'deferred' AND reason = 'pair_rate' AND toUInt64(until) * 1000 = intDiv(ts_ms + 6000, 1000) * 1000`); n != 10 {
		t.Errorf("%d deferred events with their due time, want 10", n)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for _, f := range families {
		exposed[f.GetName()] = true
	}
	for _, name := range []string{"herald_sink_rows_inserted_total", "herald_sink_batches_total", "herald_sink_batch_seconds", "herald_sink_pending_messages"} {
		if !exposed[name] {
			t.Errorf("metric %s not exposed", name)
		}
	}

	// A second consumer group reads every message again into the same tables, as a full
	// redelivery would: no figure changes.
	// It shares the first sink's registry: no duplicate-registration panic.
	replay := NewSink(SinkConfig{Brokers: brokers, Topics: topics, Group: "herald-sink-replay", Conn: conn,
		Logger: testLogger(t), Registerer: reg, BatchRows: 500, FlushInterval: 20 * time.Millisecond})
	stop = runSink(t, replay)
	waitCaughtUp(t, replay)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n, w := uint64Query(t, conn, "SELECT uniqExact(event_id) FROM events"), distinctIDs(all); n != w {
		t.Errorf("events holds %d distinct ids after the replay, want %d", n, w)
	}
	again, err := Funnel(ctx, conn, "spring")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("funnel after a full redelivery\n got %+v\nwant %+v", again, want)
	}
}

func TestSinkSkipsMalformedMessages(t *testing.T) {
	ctx := context.Background()
	brokers, topics := testenv.Kafka(t, 2)
	conn := migrated(t)

	badEvents := []string{
		"not json",
		`{"id":"x1","kind":"exploded","ts":"2025-03-10T09:00:00Z","contact":1}`, // unknown kind
		`{"kind":"queued","ts":"2025-03-10T09:00:00Z","contact":1}`,             // no id
		`{"id":"x2","kind":"queued","ts":"2200-01-01T00:00:00Z","contact":1}`,   // beyond DateTime
		`{"id":"x3","kind":"queued","ts":"2025-03-10T09:00:00Z","contact":-4}`,  // bad contact
	}
	var msgs []kafka.Message
	for i := range 60 {
		e := events.New(events.Queued, "m", uint32(i+1), baseTime)
		b, _ := e.Marshal()
		msgs = append(msgs, kafka.Message{Key: kafkax.ContactKey(e.ContactID), Value: b})
		if i%12 == 0 {
			// Same key as the good messages around it, so each bad one sits in a
			// partition before good ones.
			msgs = append(msgs, kafka.Message{Key: kafkax.ContactKey(e.ContactID), Value: []byte(badEvents[i/12])})
		}
	}
	// The decode-error counts below are exact only if no rebalance redelivers a
	// message, so the group settles before anything is published.
	s := NewSink(SinkConfig{Brokers: brokers, Topics: topics, Conn: conn, Logger: testLogger(t), BatchRows: 10, FlushInterval: 20 * time.Millisecond})
	stop := runSink(t, s)
	settle(t, s, brokers, topics)

	publish(t, brokers, topics.Events, msgs)
	rec := consentChains(1, 2)[1]
	forged := rec[1]
	forged.Wording = "edited after sealing"
	good0, _ := rec[0].Marshal()
	good1, _ := rec[1].Marshal()
	bad, _ := forged.Marshal()
	publish(t, brokers, topics.Consent, []kafka.Message{
		{Key: []byte("1"), Value: good0}, {Key: []byte("1"), Value: []byte("{")},
		{Key: []byte("1"), Value: bad}, {Key: []byte("1"), Value: good1},
	})
	in, _ := json.Marshal(events.Inbound{ID: "wamid.in.1", ContactID: 1, From: "+66812345678", SenderID: "s1",
		Channel: "whatsapp", Type: "text", Text: "STOP", Time: baseTime})
	publish(t, brokers, topics.Inbound, []kafka.Message{
		{Key: []byte("1"), Value: []byte(`{"id":"","contact":1,"ts":"2025-03-10T09:00:00Z"}`)},
		{Key: []byte("1"), Value: []byte("\x00\x01")},
		{Key: []byte("1"), Value: in},
	})

	waitCaughtUp(t, s) // every message committed, bad ones included: nothing blocked
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	for table, want := range map[string]float64{"events": float64(len(badEvents)), "consent_log": 2, "inbound": 2} {
		if got := decodeErrors(s, table); got != want {
			t.Errorf("%s: %v decode errors, want %v", table, got, want)
		}
	}
	rep, err := Funnel(ctx, conn, "m")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Steps[0].Contacts != 60 {
		t.Errorf("queued %d, want 60", rep.Steps[0].Contacts)
	}
	if n := uint64Query(t, conn, "SELECT uniqExact(event_id) FROM events WHERE campaign_id = 'm'"); n != 60 {
		t.Errorf("events holds %d ids, want 60", n)
	}
	ledger, err := ConsentLedger(ctx, conn, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ledger) != 2 || events.VerifyChain(ledger) != -1 {
		t.Errorf("ledger of contact 1 = %+v, want the 2 genuine records, chained", ledger)
	}
	if n := uint64Query(t, conn, "SELECT uniqExact(id) FROM inbound WHERE text = 'STOP'"); n != 1 {
		t.Errorf("inbound holds %d STOP messages, want 1", n)
	}
}

func TestSinkConsentLedger(t *testing.T) {
	ctx := context.Background()
	brokers, topics := testenv.Kafka(t, 3)
	conn := migrated(t)

	chains := consentChains(20, 5)
	var msgs []kafka.Message
	for _, c := range sortedKeys(chains) {
		for k, r := range chains[c] {
			b, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			m := kafka.Message{Key: kafkax.ContactKey(c), Value: b}
			msgs = append(msgs, m)
			if k == 1 || c%4 == 0 { // redelivered records
				msgs = append(msgs, m)
			}
		}
	}
	publish(t, brokers, topics.Consent, msgs)
	var inbound []kafka.Message
	for i := range 30 {
		b, _ := json.Marshal(events.Inbound{ID: fmt.Sprintf("wamid.in.%d", i), ContactID: uint32(i%7 + 1),
			From: "+66812345678", SenderID: "s1", Channel: "whatsapp", Type: "text", Text: "hi",
			Time: baseTime.Add(time.Duration(i) * time.Second)})
		inbound = append(inbound, kafka.Message{Key: []byte("x"), Value: b})
		if i%5 == 0 {
			inbound = append(inbound, kafka.Message{Key: []byte("x"), Value: b})
		}
	}
	publish(t, brokers, topics.Inbound, inbound)

	s := NewSink(SinkConfig{Brokers: brokers, Topics: topics, Conn: conn, Logger: testLogger(t), BatchRows: 16, FlushInterval: 20 * time.Millisecond})
	stop := runSink(t, s)
	waitCaughtUp(t, s)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	for _, c := range sortedKeys(chains) {
		got, err := ConsentLedger(ctx, conn, c)
		if err != nil {
			t.Fatal(err)
		}
		if i := events.VerifyChain(got); i != -1 {
			t.Fatalf("contact %d: chain broken at record %d", c, i)
		}
		want := chains[c]
		if len(got) != len(want) {
			t.Fatalf("contact %d: %d records, want %d", c, len(got), len(want))
		}
		for i := range want {
			if got[i].Hash != want[i].Hash || !got[i].Time.Equal(want[i].Time) {
				t.Fatalf("contact %d record %d = %+v, want %+v", c, i, got[i], want[i])
			}
		}
	}
	if n := uint64Query(t, conn, "SELECT uniqExact(id) FROM inbound"); n != 30 {
		t.Errorf("inbound holds %d messages, want 30", n)
	}

	// An edited copy of a record stored next to the original is detected.
	forged := chains[3][2]
	forged.Wording = "Yes, send me everything"
	var b consentBuffer
	b.appendRecord(forged)
	if err := b.insert(ctx, conn); err != nil {
		t.Fatal(err)
	}
	got, err := ConsentLedger(ctx, conn, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 || events.VerifyChain(got) == -1 {
		t.Fatalf("ledger with a forged row: %d records, VerifyChain = %d; want 6 records and a break", len(got), events.VerifyChain(got))
	}
}

func TestSinkHoldsBatchWhileClickHouseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup returns a connection the insert fails on, and fix, which makes it work.
		setup func(t *testing.T) (driver.Conn, func())
	}{
		{"tables missing", func(t *testing.T) (driver.Conn, func()) {
			conn, _ := testenv.ClickHouse(t) // not migrated
			return conn, func() {
				if _, err := Migrate(context.Background(), conn); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"database missing", func(t *testing.T) (driver.Conn, func()) {
			addr := testenv.ClickHouseAddr(t)
			db := "t_" + testenv.Unique()
			conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}})
			if err != nil {
				t.Fatal(err)
			}
			admin, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				conn.Close()
				_ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
				admin.Close()
			})
			return conn, func() {
				if err := admin.Exec(context.Background(), "CREATE DATABASE "+db); err != nil {
					t.Fatal(err)
				}
				if _, err := Migrate(context.Background(), conn); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			brokers, topics := testenv.Kafka(t, 2)
			evs, want := campaignStream("retry", 3)
			publish(t, brokers, topics.Events, eventMessages(t, evs))

			conn, fix := tc.setup(t)
			const batch = 100
			s := NewSink(SinkConfig{Brokers: brokers, Topics: topics, Conn: conn, Logger: testLogger(t), BatchRows: batch, FlushInterval: 20 * time.Millisecond})
			s.minBackoff, s.maxBackoff = 2*time.Millisecond, 10*time.Millisecond
			stop := runSink(t, s)

			waitFor(t, "three failed insert attempts", func() bool { return insertErrors(s, "events") >= 3 })
			lag, err := s.Lag(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if lag != int64(len(evs)) {
				t.Fatalf("lag %d while ClickHouse rejects inserts, want %d: something was committed", lag, len(evs))
			}
			// The batch being retried, and at most one more filling behind it.
			if p := pending(s, "events"); p < 1 || p > 2*batch {
				t.Fatalf("%v messages pending while retrying, want 1..%d", p, 2*batch)
			}

			fix()
			waitCaughtUp(t, s)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			got, err := Funnel(ctx, conn, "retry")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("funnel after recovery\n got %+v\nwant %+v", got, want)
			}
			if n, w := uint64Query(t, conn, "SELECT uniqExact(event_id) FROM events"), distinctIDs(evs); n != w {
				t.Errorf("events holds %d distinct ids, want %d", n, w)
			}
		})
	}
}

func TestSinkFlushesPendingOnShutdown(t *testing.T) {
	ctx := context.Background()
	brokers, topics := testenv.Kafka(t, 2)
	conn := migrated(t)
	var evs []events.Event
	for i := range 30 {
		evs = append(evs, events.New(events.Queued, "late", uint32(i+1), baseTime))
	}
	publish(t, brokers, topics.Events, eventMessages(t, evs))

	// Neither the size nor the age of the batch will trigger an insert: only shutdown.
	// Only the events topic is consumed, so the group has a single member and no
	// rebalance redelivers messages into the batch: exactly 30 end up pending.
	s := NewSink(SinkConfig{Brokers: brokers, Topics: kafkax.Topics{Events: topics.Events}, Conn: conn,
		Logger: testLogger(t), BatchRows: 1000, FlushInterval: time.Hour, IdleFlush: -1})
	stop := runSink(t, s)
	waitFor(t, "30 pending messages", func() bool { return pending(s, "events") == 30 })
	if lag, err := s.Lag(ctx); err != nil || lag != 30 {
		t.Fatalf("lag %d, %v before shutdown; want 30", lag, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	if lag, err := s.Lag(ctx); err != nil || lag != 0 {
		t.Fatalf("lag %d, %v after shutdown; want 0", lag, err)
	}
	rep, err := Funnel(ctx, conn, "late")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Steps[0].Contacts != 30 {
		t.Fatalf("queued %d after shutdown flush, want 30", rep.Steps[0].Contacts)
	}
}

// A quiet topic's batch is inserted once its fetch's messages are in, not when it is
// FlushInterval old; a stream that keeps coming still fills batches to BatchRows.
func TestSinkInsertsQuietTopicAtOnce(t *testing.T) {
	ctx := context.Background()
	brokers, topics := testenv.Kafka(t, 2)
	conn := migrated(t)
	reg := prometheus.NewRegistry()
	s := NewSink(SinkConfig{Brokers: brokers, Topics: kafkax.Topics{Events: topics.Events}, Conn: conn,
		Logger: testLogger(t), Registerer: reg, BatchRows: 1000, FlushInterval: time.Hour})
	stop := runSink(t, s)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	batches := func() float64 { return value(s.metrics.batches.WithLabelValues("events")) }

	// A trickle: three events, one at a time. Each lands while the age rule would hold
	// it for an hour.
	for i := range 3 {
		publish(t, brokers, topics.Events, eventMessages(t, []events.Event{events.New(events.Queued, "trickle", uint32(i+1), baseTime)}))
		want := uint64(i + 1)
		waitFor(t, fmt.Sprintf("%d trickled events in ClickHouse", want), func() bool {
			return uint64Query(t, conn, "SELECT uniqExact(contact_id) FROM events WHERE campaign_id = 'trickle'") == want
		})
	}
	// (Rows are visible before their batch is counted.)
	waitFor(t, "three batches counted", func() bool { return batches() == 3 })

	// A burst: 5,000 events published at once arrive back to back, so the gap rules
	// do not split them: they go in batches of up to BatchRows, not in many small ones.
	before := batches()
	var burst []events.Event
	for i := range 5000 {
		burst = append(burst, events.New(events.Queued, "burst", uint32(i+1), baseTime))
	}
	publish(t, brokers, topics.Events, eventMessages(t, burst))
	waitFor(t, "the burst committed", func() bool {
		lag, err := s.Lag(ctx)
		return err == nil && lag == 0
	})
	if n := uint64Query(t, conn, "SELECT uniqExact(contact_id) FROM events WHERE campaign_id = 'burst'"); n != 5000 {
		t.Fatalf("%d of the burst's 5,000 contacts in ClickHouse", n)
	}
	if n := batches() - before; n > 8 {
		t.Errorf("the burst of 5,000 took %v batches at 1,000 rows each; want at most 8", n)
	}
}

func TestWriteContacts(t *testing.T) {
	ctx := context.Background()
	conn := migrated(t)
	v1 := []Contact{
		{ID: 1, PhoneHash: "h1", Country: "TH", TZ: "Asia/Bangkok", Locale: "th", Tags: []string{"vip"}, UpdatedAt: baseTime},
		{ID: 2, PhoneHash: "h2", Country: "ID", TZ: "Asia/Jakarta", Locale: "id", UpdatedAt: baseTime},
	}
	if err := WriteContacts(ctx, conn, v1); err != nil {
		t.Fatal(err)
	}
	v2 := []Contact{{ID: 1, PhoneHash: "h1", Country: "TH", TZ: "Asia/Bangkok", Locale: "en", Tags: []string{"vip", "churned"}, UpdatedAt: baseTime.Add(time.Hour)}}
	if err := WriteContacts(ctx, conn, v2); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT contact_id, argMax(locale, updated_at), argMax(tags, updated_at)
FROM contacts GROUP BY contact_id ORDER BY contact_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		id     uint32
		locale string
		tags   []string
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.locale, &r.tags); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	want := []row{{1, "en", []string{"vip", "churned"}}, {2, "id", []string{}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("contacts %+v, want %+v", got, want)
	}
}

func TestEventsBufferUntil(t *testing.T) {
	for _, tc := range []struct {
		json string
		ok   bool
	}{
		{`{"id":"d1","kind":"deferred","ts":"2025-03-10T09:00:00Z","contact":1,"reason":"quiet_hours","until":"2025-03-10T21:00:00+07:00"}`, true},
		{`{"id":"q1","kind":"queued","ts":"2025-03-10T09:00:00Z","contact":1}`, true},
		{`{"id":"d2","kind":"deferred","ts":"2025-03-10T09:00:00Z","contact":1,"until":"2200-01-01T00:00:00Z"}`, false},
		{`{"id":"d3","kind":"deferred","ts":"2025-03-10T09:00:00Z","contact":1,"until":"1969-12-31T23:59:59Z"}`, false},
		{`{"id":"d4","kind":"deferred","ts":"2025-03-10T09:00:00Z","contact":1,"until":"tomorrow"}`, false},
	} {
		var b eventsBuffer
		err := b.add([]byte(tc.json))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.json, err, tc.ok)
		}
	}
	var b eventsBuffer
	for _, j := range []string{
		`{"id":"d1","kind":"deferred","ts":"2025-03-10T09:00:00Z","contact":1,"reason":"quiet_hours","until":"2025-03-10T21:00:00+07:00"}`,
		`{"id":"q1","kind":"queued","ts":"2025-03-10T09:00:00Z","contact":1}`,
	} {
		if err := b.add([]byte(j)); err != nil {
			t.Fatal(err)
		}
	}
	conn := migrated(t)
	if err := b.insert(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	until := uint64Query(t, conn, "SELECT toUInt64(until) FROM events WHERE event_id = 'd1'")
	if want := time.Date(2025, 3, 10, 14, 0, 0, 0, time.UTC).Unix(); until != uint64(want) {
		t.Errorf("until %d, want %d", until, want)
	}
	if n := uint64Query(t, conn, "SELECT toUInt64(until) FROM events WHERE event_id = 'q1'"); n != 0 {
		t.Errorf("until of an event without one: %d, want 0", n)
	}
}

// A tracked order keeps its id, value and currency through the sink's decoder.
func TestEventsBufferOrder(t *testing.T) {
	conv := ConversionEvent(Conversion{ContactID: 9, OrderID: "o-77", Value: 1299.5, Currency: "THB", Time: baseTime}, "spring")
	b, err := conv.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var buf eventsBuffer
	if err := buf.add(b); err != nil {
		t.Fatal(err)
	}
	conn := migrated(t)
	if err := buf.insert(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	var (
		order, currency string
		value           float64
	)
	if err := conn.QueryRow(context.Background(), "SELECT order_id, value, currency FROM events WHERE event_id = ?", conv.ID).
		Scan(&order, &value, &currency); err != nil {
		t.Fatal(err)
	}
	if order != "o-77" || value != 1299.5 || currency != "THB" {
		t.Fatalf("order %q value %v currency %q", order, value, currency)
	}
}

// A custom event keeps its name and properties, and a fallback the channel it left,
// through the sink's decoder into ClickHouse.
func TestEventsBufferCustomAndFallback(t *testing.T) {
	custom := events.New(events.Custom, "", 9, baseTime)
	custom.Name, custom.Properties = "cart_abandoned", events.EncodeProperties(map[string]string{"sku": "A-1", "note": `"q" ✓`})
	fallback := events.New(events.Fallback, "spring", 9, baseTime)
	fallback.Channel, fallback.FromChannel, fallback.Reason = "sms", "whatsapp", "circuit_open"
	var buf eventsBuffer
	for _, e := range []events.Event{custom, fallback} {
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := buf.add(b); err != nil {
			t.Fatal(err)
		}
	}
	conn := migrated(t)
	if err := buf.insert(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	var name, props, from, channel string
	if err := conn.QueryRow(context.Background(), "SELECT name, properties FROM events WHERE event_id = ?", custom.ID).
		Scan(&name, &props); err != nil {
		t.Fatal(err)
	}
	if name != "cart_abandoned" || props != custom.Properties {
		t.Errorf("custom: name %q properties %q, want %q %q", name, props, "cart_abandoned", custom.Properties)
	}
	if err := conn.QueryRow(context.Background(), "SELECT channel, from_channel FROM events WHERE event_id = ?", fallback.ID).
		Scan(&channel, &from); err != nil {
		t.Fatal(err)
	}
	if channel != "sms" || from != "whatsapp" {
		t.Errorf("fallback: channel %q from %q, want sms from whatsapp", channel, from)
	}
}
