package analytics

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// benchGenerate fills events with generated events inside ClickHouse (INSERT …
// SELECT from system.numbers, far faster than sending rows): the events number from
// to number + count - 1 of one endless stream. Message q (= number / 5) goes to contact
// contactOf(q) in campaign "c<q / 200,000>", sent on day q / 200,000 after the base
// time; each message has queued, sent, delivered, read and clicked events, from one of
// three senders, in variant A or B. With bulkContact, 50M events are 50 campaigns of
// 200,000 contacts (1M events each) over 7 weeks, and every contact gets 5 campaigns.
// Arguments: the contact expression of q, the base time (ms), from, count.
const benchGenerate = `INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, variant, country)
SELECT toString(number), arrayElement(['queued', 'sent', 'delivered', 'read', 'clicked'], (number %% 5) + 1),
    toDateTime(intDiv(t, 1000)), t, concat('c', toString(intDiv(q, 200000))), toUInt32(%s),
    arrayElement(['s1', 's2', 's3'], (q %% 3) + 1), 'whatsapp', arrayElement(['A', 'B'], (q %% 2) + 1), 'TH'
FROM (
    SELECT number, intDiv(number, 5) AS q,
        toUInt64(%d + intDiv(q, 200000) * 86400000 + (q %% 1000) * 1000 + (number %% 5) * 60000) AS t
    FROM (SELECT m AS number FROM (SELECT number + %d AS m FROM system.numbers LIMIT %d))
)`

// bulkContact sends consecutive messages to consecutive contacts (ids 1 … 2,000,000);
// scatteredContact to contacts scattered over the same ids, 7,919 apart (a prime, so
// 2,000,000 consecutive messages still reach every contact once): a batch of them
// touches one 64-contact word per message, the worst case for the bitmaps (a campaign
// to a sparse segment; a dense audience is sent in id order and shares words).
const (
	bulkContact      = "q % 2000000 + 1"
	scatteredContact = "(q * 7919) % 2000000 + 1"
)

// Trickle: after the bulk load, this many batches of this many events (a new campaign's
// messages to scattered contacts), as the sink inserts them.
const (
	trickleBatches = 100
	trickleEvents  = 10000
)

// BenchmarkFunnel times, over HERALD_BENCH_EVENTS generated events (default
// 50,000,000; generating them takes a minute or two and a few GB of disk), the funnel,
// funnel-by-variant and A/B queries of one campaign, then the cohort reports: retention
// of all contacts by first-contact week from the raw events (the baseline, and the
// truth the others must match), then Retention, the previous design's query over
// contact_weeks, and RetentionByCampaign of one and of all campaigns, first right after
// the bulk load (merges stopped, parts as the load left them), again after every
// pre-aggregate is merged, and once more after trickleBatches sink-sized inserts
// (merges stopped; the raw baseline is timed again on the grown events). The events are
// generated after migrating, so the materialized views see them as they would see the
// sink's inserts.
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
	if err := conn.Exec(ctx, fmt.Sprintf(benchGenerate, bulkContact, baseTime.UnixMilli(), 0, n)); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d events in %s", n, time.Since(start).Round(time.Millisecond))
	// The pre-aggregates stay as the bulk load left them until the "merged" phase.
	preaggs := []string{"week_contacts", "campaign_contacts", "campaign_starts", "sent_times", "contact_weeks"}
	merges := func(verb string) {
		for _, t := range preaggs {
			if err := conn.Exec(ctx, "SYSTEM "+verb+" MERGES "+t); err != nil {
				b.Fatal(err)
			}
		}
	}
	merges("STOP")
	defer merges("START")
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
	from, to := baseTime, baseTime.AddDate(0, 0, 70)
	// The baseline: the same report computed from the raw events. Compare it with the
	// others of the same run (benchstat, or the ratio of their ns/op): the machine is
	// shared. Its result is also the truth the pre-aggregates must reproduce.
	var truth RetentionReport
	rawBaseline := func(name string) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				r, err := rawRetention(ctx, conn, from, to, 8)
				if err != nil {
					b.Fatal(err)
				}
				truth = r
			}
		})
	}
	rawBaseline("retention-raw-events")
	var total uint64
	for _, c := range truth.Cohorts {
		total += c.Contacts
	}
	if total != contacts {
		b.Fatalf("raw cohorts hold %d contacts, want %d", total, contacts)
	}
	checkCohorts := func(b *testing.B, r RetentionReport) {
		if len(r.Cohorts) != len(truth.Cohorts) {
			b.Fatalf("%d cohorts, want %d", len(r.Cohorts), len(truth.Cohorts))
		}
		for i, c := range r.Cohorts {
			w := truth.Cohorts[i]
			if c.Week != w.Week || c.Contacts != w.Contacts || !slices.Equal(c.Active, w.Active) {
				b.Fatalf("cohort %d: %s %d %v, want %s %d %v", i, c.Week, c.Contacts, c.Active, w.Week, w.Contacts, w.Active)
			}
		}
	}
	// The campaigns and (campaign, contact) pairs sent to, from the raw events.
	var campaigns, members uint64
	countCampaigns := func() {
		if err := conn.QueryRow(ctx, `SELECT uniqExact(campaign_id), uniqExact(campaign_id, contact_id)
			FROM events WHERE kind = 'sent'`).Scan(&campaigns, &members); err != nil {
			b.Fatal(err)
		}
	}
	countCampaigns()
	checkCampaigns := func(b *testing.B, r CampaignRetentionReport, campaigns, members uint64) {
		var total uint64
		for _, c := range r.Cohorts {
			total += c.Contacts
		}
		if uint64(len(r.Cohorts)) != campaigns || total != members {
			b.Fatalf("%d campaign cohorts holding %d members, want %d holding %d", len(r.Cohorts), total, campaigns, members)
		}
	}
	logParts := func(b *testing.B) {
		for _, t := range preaggs {
			b.Logf("%s: %s", t, partsOf(b, conn, t))
		}
	}
	// Each query in three states of the pre-aggregates: right after the bulk load, as
	// its parts are (merges stopped since, so every query of the phase sees the same
	// parts); after OPTIMIZE … FINAL; then merged but for trickleBatches small
	// inserts since (merges stopped again), as a sink leaves the tables between two
	// background merges.
	for _, phase := range []string{"unmerged", "merged", "trickle"} {
		switch phase {
		case "merged":
			merges("START")
			for _, t := range preaggs {
				if err := conn.Exec(ctx, "OPTIMIZE TABLE "+t+" FINAL"); err != nil {
					b.Fatal(err)
				}
			}
		case "trickle":
			merges("STOP")
			start := time.Now()
			for i := range trickleBatches {
				q := fmt.Sprintf(benchGenerate, scatteredContact, baseTime.UnixMilli(), n+i*trickleEvents, trickleEvents)
				if err := conn.Exec(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("inserted %d batches of %d events in %s", trickleBatches, trickleEvents, time.Since(start).Round(time.Millisecond))
			rawBaseline("retention-raw-events-trickle")
			countCampaigns()
		}
		b.Run("retention-"+phase, func(b *testing.B) {
			logParts(b)
			for b.Loop() {
				r, err := Retention(ctx, conn, from, to, 8)
				if err != nil {
					b.Fatal(err)
				}
				checkCohorts(b, r)
			}
		})
		// The previous design: per-contact rows of contact_weeks, grouped by contact.
		b.Run("retention-contact-weeks-"+phase, func(b *testing.B) {
			for b.Loop() {
				r, err := contactWeeksRetention(ctx, conn, from, to, 8)
				if err != nil {
					b.Fatal(err)
				}
				checkCohorts(b, r)
			}
		})
		b.Run("retention-by-campaign-one-"+phase, func(b *testing.B) {
			for b.Loop() {
				r, err := RetentionByCampaign(ctx, conn, from, to, 8, "c0")
				if err != nil {
					b.Fatal(err)
				}
				checkCampaigns(b, r, 1, perCampaign)
			}
		})
		var all CampaignRetentionReport
		b.Run("retention-by-campaign-all-"+phase, func(b *testing.B) {
			for b.Loop() {
				r, err := RetentionByCampaign(ctx, conn, from, to, 8)
				if err != nil {
					b.Fatal(err)
				}
				checkCampaigns(b, r, campaigns, members)
				all = r
			}
		})
		if phase != "unmerged" {
			continue // the old design's all-campaign query takes half a minute: once is enough
		}
		b.Run("retention-by-campaign-all-contact-weeks-"+phase, func(b *testing.B) {
			for b.Loop() {
				r, err := contactWeeksRetentionByCampaign(ctx, conn, from, to, 8)
				if err != nil {
					b.Fatal(err)
				}
				checkCampaigns(b, r, campaigns, members)
				for i, c := range r.Cohorts {
					w := all.Cohorts[i]
					if c.Campaign != w.Campaign || c.Week != w.Week || c.Contacts != w.Contacts || !slices.Equal(c.Active, w.Active) {
						b.Fatalf("campaign cohort %d: %+v, bitmaps give %+v", i, c, w)
					}
				}
			}
		})
	}
}

// partsOf describes the active parts of a table.
func partsOf(b *testing.B, conn driver.Conn, table string) string {
	var parts, rows uint64
	if err := conn.QueryRow(context.Background(), `SELECT count(), sum(rows) FROM system.parts
		WHERE database = currentDatabase() AND table = ? AND active`, table).Scan(&parts, &rows); err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("%d rows in %d parts", rows, parts)
}

// rawRetention is Retention as it was before the contact_weeks pre-aggregate: straight
// from the events table (two queries: cohort sizes, then engaged contacts per cohort and
// week). The benchmark's baseline.
func rawRetention(ctx context.Context, conn driver.Conn, from, to time.Time, weeks int) (RetentionReport, error) {
	const sizes = `SELECT cohort, count() FROM (
    SELECT contact_id, toMonday(min(ts)) AS cohort FROM events
    WHERE kind = 'sent' GROUP BY contact_id HAVING min(ts_ms) >= ? AND min(ts_ms) < ?
) GROUP BY cohort ORDER BY cohort`
	const active = `SELECT cohort, toUInt32(intDiv(toUInt32(week) - toUInt32(cohort), 7)) AS k, uniqExact(contact_id)
FROM (
    SELECT DISTINCT contact_id, toMonday(ts) AS week FROM events
    WHERE kind IN ('read', 'clicked', 'replied', 'converted') AND ts_ms >= ?
)
ALL INNER JOIN (
    SELECT contact_id, toMonday(min(ts)) AS cohort FROM events
    WHERE kind = 'sent' GROUP BY contact_id HAVING min(ts_ms) >= ? AND min(ts_ms) < ?
) USING contact_id
WHERE week >= cohort
GROUP BY cohort, k
ORDER BY cohort, k`
	rep := RetentionReport{Weeks: weeks}
	f, t := uint64(from.UnixMilli()), uint64(to.UnixMilli())
	rows, err := conn.Query(ctx, sizes, f, t)
	if err != nil {
		return rep, err
	}
	idx := map[string]int{}
	for rows.Next() {
		var (
			week time.Time
			n    uint64
		)
		if err := rows.Scan(&week, &n); err != nil {
			rows.Close()
			return rep, err
		}
		idx[week.Format(time.DateOnly)] = len(rep.Cohorts)
		rep.Cohorts = append(rep.Cohorts, Cohort{Week: week.Format(time.DateOnly), Contacts: n, Active: make([]uint64, weeks)})
	}
	rows.Close()
	if rows, err = conn.Query(ctx, active, f, f, t); err != nil {
		return rep, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			week time.Time
			k    uint32
			n    uint64
		)
		if err := rows.Scan(&week, &k, &n); err != nil {
			return rep, err
		}
		if i, ok := idx[week.Format(time.DateOnly)]; ok && int(k) < weeks {
			rep.Cohorts[i].Active[k] = n
		}
	}
	return rep, rows.Err()
}
