package analytics

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkFunnelWords times a campaign's funnel, and its funnel by sender, from the
// events (grouped by contact: the definition) and from campaign_words (what Funnel and
// FunnelBy read) in the same run, at HERALD_BENCH_RECIPIENTS-like scale: 1M recipients,
// 2.9M events (queued, then sent or skipped; some failed, delivered or read), as
// internal/api's BenchmarkCampaignPage. Read words/events as the speed-up.
//
//	go test ./analytics -run '^$' -bench BenchmarkFunnelWords -benchtime 5x
func BenchmarkFunnelWords(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn := migrated(b)
	const n = 1_000_000
	if os.Getenv("SCRATCH_NO_MV") != "" {
		_ = conn.Exec(ctx, "DROP TABLE campaign_words_mv")
	}
	start := time.Now()
	q := fmt.Sprintf(`INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, reason, error_code)
SELECT concat(toString(c), '-', k), k, toDateTime(intDiv(ts, 1000)), ts, 'c1', toUInt32(c), if(c %% 2 = 0, 'S1', 'S2'), 'whatsapp',
    if(k = 'skipped', 'no_consent', ''), toInt32(if(k = 'failed', 131026, 0))
FROM (
    SELECT number + 1 AS c,
        arrayJoin(arrayFilter(x -> x != '', [
            'queued',
            if(c %% 10 = 0, 'skipped', 'sent'),
            if(c %% 10 != 0 AND c %% 7 = 0, 'failed', ''),
            if(c %% 10 != 0 AND c %% 7 != 0 AND c %% 3 = 0, 'delivered', ''),
            if(c %% 10 != 0 AND c %% 7 != 0 AND c %% 6 = 0, 'read', '')])) AS k,
        toUInt64(%d + c * 10 + indexOf(['queued', 'sent', 'skipped', 'failed', 'delivered', 'read'], k)) AS ts
    FROM numbers(%d)
)`, baseTime.UnixMilli(), n)
	if err := conn.Exec(ctx, q); err != nil {
		b.Fatal(err)
	}
	var rows, parts uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM campaign_words").Scan(&rows); err != nil {
		b.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'campaign_words' AND active").Scan(&parts); err != nil {
		b.Fatal(err)
	}
	b.Logf("inserted the events of %d recipients in %v; campaign_words: %d rows in %d parts", n, time.Since(start).Round(time.Millisecond), rows, parts)
	for _, bc := range []struct {
		name string
		run  func() error
	}{
		{"funnel_events", func() error { _, err := funnelFromEvents(ctx, conn, "c1"); return err }},
		{"funnel_words", func() error { _, err := Funnel(ctx, conn, "c1"); return err }},
		{"by_sender_events", func() error { _, err := funnelByFromEvents(ctx, conn, "c1", "sender"); return err }},
		{"by_sender_words", func() error { _, err := FunnelBy(ctx, conn, "c1", "sender"); return err }},
		{"ab_read_events", func() error {
			_, err := abTestWith(ctx, conn, "c1", "read", "", abFromEvents)
			return err
		}},
		{"ab_read_words", func() error { _, err := ABTest(ctx, conn, "c1", "read", ""); return err }},
		{"timeline_1m", func() error { _, err := Timeline(ctx, conn, "c1", time.Minute); return err }},
		{"read_words", func() error { _, err := facetSets(ctx, conn, "c1", "kind", "skipped", "failed"); return err }},
		{"count_words_server", func() error {
			var n uint64
			return conn.QueryRow(ctx, `SELECT count() FROM (SELECT facet, value, word, finalizeAggregation(bits) FROM campaign_words
WHERE campaign_id = 'c1' AND facet IN ('kind', 'skipped', 'failed')     )`).Scan(&n)
		}},
		{"scan_words_server", func() error {
			var n uint64
			return conn.QueryRow(ctx, `SELECT count() FROM campaign_words WHERE campaign_id = 'c1' AND facet IN ('kind', 'skipped', 'failed')`).Scan(&n)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := bc.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
