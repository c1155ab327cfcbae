package analytics

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
)

// processCPU is the CPU time this process has used (user and system), kfake included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRows reports rows/s and this process's CPU per row since cpu0: a machine
// shared with other jobs moves the first a lot, the second little.
func reportRows(b *testing.B, rows int, cpu0 time.Duration) {
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(rows), "cpu-ns/row")
}

func benchEvents(n int) []events.Event {
	kinds := []events.Kind{events.Queued, events.Sent, events.Delivered, events.Read}
	evs := make([]events.Event, n)
	for i := range evs {
		e := events.New(kinds[i%len(kinds)], "bench", uint32(i/len(kinds)+1), baseTime.Add(time.Duration(i)*time.Millisecond))
		e.SenderID, e.Channel, e.Template, e.Variant, e.Country = "s1", "whatsapp", "promo", "A", "TH"
		e.ProviderMessageID = "wamid.HBgLNjY4MTIzNDU2NzgVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
		evs[i] = e
	}
	return evs
}

// BenchmarkSinkInsert compares inserting events into ClickHouse with clickhouse-go
// directly (row by row, and column by column as the sink does) with the sink: sink-drain
// empties a topic that holds the batches already (fetch, decode, insert, commit: the
// sink's own throughput), sink publishes each batch and waits for it (kafka-publish is
// that publish alone). Each op is one batch of 10,000 events; compare the rows/s
// metric of one run, e.g. with benchstat: the machine is shared.
func BenchmarkSinkInsert(b *testing.B) {
	const batchRows = 10000
	ctx := context.Background()
	evs := benchEvents(batchRows)

	b.Run("clickhouse-go-append", func(b *testing.B) {
		conn := migrated(b)
		query := "INSERT INTO events (" + strings.Join(eventsColumns, ", ") + ")"
		cpu0 := processCPU()
		for b.Loop() {
			batch, err := conn.PrepareBatch(ctx, query)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range evs {
				if err := batch.Append(e.ID, string(e.Kind), e.Time, uint64(e.Time.UnixMilli()), e.CampaignID,
					e.ContactID, e.SenderID, e.Channel, e.Template, e.Variant, e.Country, e.ProviderMessageID,
					e.Reason, int32(e.ErrorCode), b2u8(e.Retryable), e.ConsentRef, unixZero, e.OrderID, e.Value, e.Currency,
					e.Name, e.Properties, e.FromChannel); err != nil {
					b.Fatal(err)
				}
			}
			if err := batch.Send(); err != nil {
				b.Fatal(err)
			}
		}
		reportRows(b, b.N*batchRows, cpu0)
	})

	b.Run("clickhouse-go-columns", func(b *testing.B) {
		conn := migrated(b)
		cpu0 := processCPU()
		for b.Loop() {
			var buf eventsBuffer
			for _, e := range evs {
				buf.appendEvent(e)
			}
			if err := buf.insert(ctx, conn); err != nil {
				b.Fatal(err)
			}
		}
		reportRows(b, b.N*batchRows, cpu0)
	})

	b.Run("clickhouse-go-columns-no-views", func(b *testing.B) {
		// The same into a schema without the materialized views of migrations 0007 and
		// 0009: what feeding the pre-aggregates costs each insert.
		conn, _ := testenv.ClickHouse(b)
		if _, err := migrate(ctx, conn, withoutViews()); err != nil {
			b.Fatal(err)
		}
		cpu0 := processCPU()
		for b.Loop() {
			var buf eventsBuffer
			for _, e := range evs {
				buf.appendEvent(e)
			}
			if err := buf.insert(ctx, conn); err != nil {
				b.Fatal(err)
			}
		}
		reportRows(b, b.N*batchRows, cpu0)
	})

	b.Run("kafka-publish", func(b *testing.B) {
		// What publishing costs alone, to read the sink's figure against.
		brokers, topics := testenv.Kafka(b, 3)
		msgs := eventMessages(b, evs)
		cpu0 := processCPU()
		for b.Loop() {
			publish(b, brokers, topics.Events, msgs)
		}
		reportRows(b, b.N*batchRows, cpu0)
	})

	b.Run("sink-drain", func(b *testing.B) {
		// Steady state: b.N batches wait in Kafka (published before the clock starts);
		// one op is one batch of them inserted by the sink, which fetches, decodes and
		// inserts continuously, as it does behind a busy topic.
		brokers, topics := testenv.Kafka(b, 3)
		conn := migrated(b)
		msgs := eventMessages(b, evs)
		for range b.N {
			publish(b, brokers, topics.Events, msgs)
		}
		s := NewSink(SinkConfig{Brokers: brokers, Topics: kafkax.Topics{Events: topics.Events}, Conn: conn,
			BatchRows: batchRows, FlushInterval: time.Second})
		rows := s.metrics.rows.WithLabelValues("events")
		b.ResetTimer()
		cpu0 := processCPU()
		runSink(b, s)
		for value(rows) < float64(b.N*batchRows) {
			time.Sleep(100 * time.Microsecond) // polling an in-process counter
		}
		b.StopTimer()
		reportRows(b, b.N*batchRows, cpu0)
	})

	b.Run("sink", func(b *testing.B) {
		// One op: publish a batch to Kafka and wait until the sink has inserted it.
		brokers, topics := testenv.Kafka(b, 3)
		conn := migrated(b)
		msgs := eventMessages(b, evs)
		s := NewSink(SinkConfig{Brokers: brokers, Topics: topics, Conn: conn, BatchRows: batchRows,
			FlushInterval: time.Second})
		runSink(b, s)
		// Warm up: the readers have joined the group once a first message is through.
		publish(b, brokers, topics.Events, msgs[:1])
		waitCaughtUp(b, s)
		rows := s.metrics.rows.WithLabelValues("events")
		target := value(rows)

		cpu0 := processCPU()
		for b.Loop() {
			publish(b, brokers, topics.Events, msgs)
			target += batchRows
			for value(rows) < target {
				time.Sleep(100 * time.Microsecond) // polling an in-process counter
			}
		}
		reportRows(b, b.N*batchRows, cpu0)
	})
}
