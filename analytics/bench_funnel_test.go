package analytics

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// benchGenerate fills events with n generated events inside ClickHouse (INSERT …
// SELECT from system.numbers, far faster than sending rows). Message q (= number / 5)
// goes to contact q %% 2,000,000 + 1 in campaign "c<q / 200,000>", sent on day
// q / 200,000 after the base time; each message has queued, sent, delivered, read and
// clicked events, from one of three senders, in variant A or B. So 50M events are 50
// campaigns of 200,000 contacts (1M events each) over 7 weeks, and every contact gets
// 5 campaigns.
const benchGenerate = `INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, variant, country)
SELECT toString(number), arrayElement(['queued', 'sent', 'delivered', 'read', 'clicked'], (number %% 5) + 1),
    toDateTime(intDiv(t, 1000)), t, concat('c', toString(intDiv(q, 200000))), toUInt32(q %% 2000000 + 1),
    arrayElement(['s1', 's2', 's3'], (q %% 3) + 1), 'whatsapp', arrayElement(['A', 'B'], (q %% 2) + 1), 'TH'
FROM (
    SELECT number, intDiv(number, 5) AS q,
        toUInt64(%d + intDiv(q, 200000) * 86400000 + (q %% 1000) * 1000 + (number %% 5) * 60000) AS t
    FROM system.numbers LIMIT %d
)`

// BenchmarkFunnel times the funnel, funnel-by-variant and A/B queries of one campaign,
// and the cohort retention of all contacts, over HERALD_BENCH_EVENTS generated events
// (default 50,000,000; generating them takes a minute or two and a few GB of disk).
func BenchmarkFunnel(b *testing.B) {
	n := 50_000_000
	if s := os.Getenv("HERALD_BENCH_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 5 {
			b.Fatalf("HERALD_BENCH_EVENTS %q: want a count ≥ 5", s)
		}
		n = v
	}
	ctx := context.Background()
	conn := migrated(b)
	start := time.Now()
	if err := conn.Exec(ctx, fmt.Sprintf(benchGenerate, baseTime.UnixMilli(), n)); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d events in %s", n, time.Since(start).Round(time.Millisecond))
	perCampaign := uint64(min(n/5, 200000))
	contacts := uint64(min(n/5, 2000000))

	b.Run("funnel", func(b *testing.B) {
		for b.Loop() {
			f, err := Funnel(ctx, conn, "c0")
			if err != nil {
				b.Fatal(err)
			}
			if f.Steps[3].Contacts != perCampaign {
				b.Fatalf("read %d, want %d", f.Steps[3].Contacts, perCampaign)
			}
		}
	})
	b.Run("funnel-by-variant", func(b *testing.B) {
		for b.Loop() {
			if _, err := FunnelBy(ctx, conn, "c0", "variant"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ab-clicked", func(b *testing.B) {
		for b.Loop() {
			if _, err := ABTest(ctx, conn, "c0", "clicked", ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("retention", func(b *testing.B) {
		for b.Loop() {
			r, err := Retention(ctx, conn, baseTime, baseTime.AddDate(0, 0, 70), 8)
			if err != nil {
				b.Fatal(err)
			}
			var total uint64
			for _, c := range r.Cohorts {
				total += c.Contacts
			}
			if total != contacts {
				b.Fatalf("cohorts hold %d contacts, want %d", total, contacts)
			}
		}
	})
}
