package analytics

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// benchFailoverGenerate writes, inside ClickHouse, the events of kind on channel for the
// contacts c = 1 … n of campaign "fo" that satisfy cond (an expression of c), at
// base + c·10 ms + offset. Arguments: kind, channel, base + offset (ms), reason, error
// code, from_channel, n, cond.
const benchFailoverGenerate = `INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, reason, error_code, from_channel)
SELECT concat('%[1]s-%[2]s-', toString(c)), '%[1]s', toDateTime(intDiv(t, 1000)), t, 'fo', toUInt32(c), '%[2]s-1', '%[2]s', '%[4]s', toInt32(%[5]d), '%[6]s'
FROM (SELECT c, toUInt64(%[3]d + c * 10) AS t FROM (SELECT number + 1 AS c FROM system.numbers LIMIT %[7]d) WHERE %[8]s)`

// BenchmarkChannelsFunnel times the channels report of a WhatsApp → SMS campaign of
// HERALD_BENCH_CONTACTS contacts (default 200,000; about 3.6 events each) against the
// campaign's funnel (Funnel, the baseline) in the same run, and reports the ratio
// (channels/funnel). A fifth of the contacts fall back (half after a 131026 failure,
// half after the not-delivered-within timer), a twentieth get a late WhatsApp receipt.
func BenchmarkChannelsFunnel(b *testing.B) {
	n := 200_000
	if s := os.Getenv("HERALD_BENCH_CONTACTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 20 {
			b.Fatalf("HERALD_BENCH_CONTACTS %q: want a count ≥ 20", s)
		}
		n = v
	}
	ctx := context.Background()
	conn := migrated(b)
	base := baseTime.UnixMilli()
	for _, g := range []struct {
		kind, channel string
		offset        time.Duration
		reason        string
		code          int
		from, cond    string
	}{
		{"queued", "whatsapp", 0, "", 0, "", "1"},
		{"sent", "whatsapp", time.Second, "", 0, "", "1"},
		{"delivered", "whatsapp", 5 * time.Second, "", 0, "", "c % 5 != 0"},
		{"read", "whatsapp", time.Minute, "", 0, "", "c % 5 != 0 AND c % 2 = 0"},
		{"failed", "whatsapp", 3 * time.Second, "provider_failed", 131026, "", "c % 5 = 0 AND c % 10 != 0"},
		{"fallback", "sms", 3 * time.Second, FallbackPermanentFailure, 131026, "whatsapp", "c % 5 = 0 AND c % 10 != 0"},
		{"fallback", "sms", 10 * time.Minute, FallbackNotDeliveredWithin, 0, "whatsapp", "c % 10 = 0"},
		{"sent", "sms", 10*time.Minute + time.Second, "", 0, "", "c % 5 = 0"},
		{"delivered", "sms", 10*time.Minute + 5*time.Second, "", 0, "", "c % 5 = 0 AND c % 15 != 0"},
		{"delivered", "whatsapp", 15 * time.Minute, "", 0, "", "c % 20 = 0"},
	} {
		q := fmt.Sprintf(benchFailoverGenerate, g.kind, g.channel, base+g.offset.Milliseconds(), g.reason, g.code, g.from, n, g.cond)
		if err := conn.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	// The figures are known: check them once, so the timing is of a right answer.
	rep, err := ChannelsFunnel(ctx, conn, "fo")
	if err != nil {
		b.Fatal(err)
	}
	if rep.Contacts != uint64(n) || rep.FellBack != uint64(n/5) || rep.LateFirstChannel != uint64(n/20) || len(rep.Channels) != 2 {
		b.Fatalf("report %+v", rep)
	}
	var funnel, channels time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := Funnel(ctx, conn, "fo"); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := ChannelsFunnel(ctx, conn, "fo"); err != nil {
			b.Fatal(err)
		}
		funnel, channels = funnel+t1.Sub(t0), channels+time.Since(t1)
	}
	b.ReportMetric(float64(channels)/float64(funnel), "channels/funnel")
	b.ReportMetric(float64(funnel.Milliseconds())/float64(b.N), "funnel_ms/op")
}
