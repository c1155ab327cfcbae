package analytics

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Cohort pre-aggregates (migration 0009). Contact ids are dense (allocated by INCR), so a
// set of contacts is a bitmap: contact c is bit c % 64 of word c / 64. These tables hold
// such bitmaps, sliced into 64-bit words and or-ed together by AggregatingMergeTree
// (groupBitOr), so a duplicated event, an insert retried, the backfill overlapping a view
// or events arriving in any order set the same bits and change nothing. A cohort report
// reads one row per (week, word) or (campaign, word) — 64 contacts each — and does the
// set algebra (first send, intersections, counts) word by word; it never groups by
// contact. Merged, the tables hold a row per word and week (or campaign): 50M events to
// 2M contacts over 7 weeks are 366k rows of week_contacts, against 2M of contact_weeks
// and 10M sends. Unmerged parts add at most a row per word an insert touched: about the
// same after a bulk load (a campaign is sent in contact-id order, so its messages share
// words), up to one per event when every event of a batch falls in a different word
// (a sparse segment; BenchmarkFunnel's trickle phase). The tables being small,
// background merges of them are quick.
//
//	week_contacts     (series, week, word, bits): series 0 the contacts sent to in that week,
//	                  series 1 those engaged (read, clicked, replied or converted) in it,
//	                  series 2 those sent to in a span of 16 weeks (week = span number), so
//	                  "sent to before week w" reads a span per 16 weeks of history.
//	                  Weeks are numbered as in contact_weeks (week 0 starts Monday
//	                  1970-01-05 UTC).
//	campaign_contacts (campaign_id, word, bits): the contacts each campaign was sent to.
//	campaign_starts   (campaign_id, first_sent): the time (ms) of its first sent event.
//	sent_times        (ts_ms, contact_id): every sent event, ordered by time; a report
//	                  whose range starts or ends inside a week reads the sends of that
//	                  partial week here to tell, to the millisecond, which contacts of the
//	                  week's cohort were first sent to inside the range.

// spanWeeks is the number of weeks in a span of week_contacts series 2.
const spanWeeks = 16

// Series of week_contacts rows.
const (
	seriesSent    = 0
	seriesEngaged = 1
	seriesSpan    = 2
)

// contactBit is the bit of contact_id in its word, as a UInt64.
const contactBit = `bitShiftLeft(toUInt64(1), toUInt8(modulo(contact_id, 64)))`

const createWeekContacts = `CREATE TABLE IF NOT EXISTS week_contacts (
    series UInt8,
    week   UInt32,
    word   UInt32,
    bits   AggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (series, week, word)`

// weekContactsSelect aggregates events into week_contacts rows; %s is an extra filter.
// A sent event gives a series 0 row for its week and a series 2 row for its span, an
// engagement a series 1 row. (A subquery in a materialized view fails on 18.16, hence
// the arrayJoin inside the first column.)
const weekContactsSelect = `SELECT tupleElement(arrayJoin(if(kind = 'sent',
        [(toUInt8(0), toUInt32(` + weekOf + `)), (toUInt8(2), toUInt32(intDiv(` + weekOf + `, 16)))],
        [(toUInt8(1), toUInt32(` + weekOf + `))])) AS sw, 1) AS series,
    tupleElement(sw, 2) AS week, intDiv(contact_id, 64) AS word, groupBitOrState(` + contactBit + `) AS bits
FROM events
WHERE kind IN ('sent', 'read', 'clicked', 'replied', 'converted')%s
GROUP BY series, week, word`

const createCampaignContacts = `CREATE TABLE IF NOT EXISTS campaign_contacts (
    campaign_id String,
    word        UInt32,
    bits        AggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (campaign_id, word)`

const campaignContactsSelect = `SELECT campaign_id, intDiv(contact_id, 64) AS word, groupBitOrState(` + contactBit + `) AS bits
FROM events
WHERE kind = 'sent' AND campaign_id != ''%s
GROUP BY campaign_id, word`

const createCampaignStarts = `CREATE TABLE IF NOT EXISTS campaign_starts (
    campaign_id String,
    first_sent  AggregateFunction(min, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY campaign_id`

const campaignStartsSelect = `SELECT campaign_id, minState(ts_ms) AS first_sent
FROM events
WHERE kind = 'sent' AND campaign_id != ''%s
GROUP BY campaign_id`

const createSentTimes = `CREATE TABLE IF NOT EXISTS sent_times (
    ts_ms      UInt64,
    contact_id UInt32
) ENGINE = ReplacingMergeTree()
ORDER BY (ts_ms, contact_id)`

const sentTimesSelect = `SELECT ts_ms, contact_id FROM events WHERE kind = 'sent'%s`

// cohortTables are the pre-aggregates of migration 0009: each table, the statement
// that creates it, the columns it is filled by and the SELECT (with a %s for an extra
// filter) that computes its rows from events.
var cohortTables = []struct {
	name, create, columns, sel string
}{
	{"week_contacts", createWeekContacts, "series, week, word, bits", weekContactsSelect},
	{"campaign_contacts", createCampaignContacts, "campaign_id, word, bits", campaignContactsSelect},
	{"campaign_starts", createCampaignStarts, "campaign_id, first_sent", campaignStartsSelect},
	{"sent_times", createSentTimes, "ts_ms, contact_id", sentTimesSelect},
}

// cohortDDL creates the tables of migration 0009 and the views that feed them.
func cohortDDL(schemaFeatures) []string {
	var out []string
	for _, t := range cohortTables {
		out = append(out, t.create,
			"CREATE MATERIALIZED VIEW IF NOT EXISTS "+t.name+"_mv TO "+t.name+" AS\n"+fmt.Sprintf(t.sel, ""))
	}
	return out
}

// backfillCohorts computes the tables of migration 0009 from the events stored before
// their views existed, one monthly partition of events at a time (bounded memory). It
// runs after the views are created, so nothing falls between the two; what both see is
// stored twice, which or, min and the reports' set semantics absorb.
func backfillCohorts(ctx context.Context, conn driver.Conn) error {
	parts, err := eventPartitions(ctx, conn)
	if err != nil {
		return err
	}
	for _, t := range cohortTables {
		for _, p := range parts {
			q := "INSERT INTO " + t.name + " (" + t.columns + ") " +
				fmt.Sprintf(t.sel, " AND toYYYYMM(ts) = "+strconv.FormatUint(p, 10))
			if err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("backfill %s from partition %d: %w", t.name, p, err)
			}
		}
	}
	return nil
}

// eventPartitions lists the monthly partitions (YYYYMM) of events holding data.
func eventPartitions(ctx context.Context, conn driver.Conn) ([]uint64, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT partition FROM system.parts
WHERE database = currentDatabase() AND table = 'events' AND active ORDER BY partition`)
	if err != nil {
		return nil, fmt.Errorf("list partitions of events: %w", err)
	}
	defer rows.Close()
	var parts []uint64
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("list partitions of events: %w", err)
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("partition %q of events: want YYYYMM: %w", p, err)
		}
		parts = append(parts, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list partitions of events: %w", err)
	}
	return parts, nil
}

// popcount is the number of bits set in the UInt64 expression x (ClickHouse 18.16 has
// no bitCount): the classic SWAR sum, with the final multiplication wrapping as UInt64
// arithmetic does. ClickHouse computes the repeated subexpressions once.
func popcount(x string) string {
	a := fmt.Sprintf("toUInt64(%[1]s - bitAnd(bitShiftRight(%[1]s, 1), toUInt64(6148914691236517205)))", x)
	b := fmt.Sprintf("toUInt64(bitAnd(%[1]s, toUInt64(3689348814741910323)) + bitAnd(bitShiftRight(%[1]s, 2), toUInt64(3689348814741910323)))", a)
	c := fmt.Sprintf("bitAnd(toUInt64(%[1]s + bitShiftRight(%[1]s, 4)), toUInt64(1085102592571150095))", b)
	return fmt.Sprintf("bitShiftRight(%s * toUInt64(72340172838076673), 56)", c)
}

// weekStartMs is the first millisecond of week w: its Monday, or the epoch for week 0,
// which holds every earlier time too (see weekOf).
func weekStartMs(w int64) int64 {
	if w <= 0 {
		return 0
	}
	return weekMonday(w).UnixMilli()
}

// engagedWord is the word of week_contacts series 1 for week expression w, from the
// arrays ew (weeks) and eb (their words) of the row's word; 0 when the week has none.
func engagedWord(w string) string { return "eb[indexOf(ew, toUInt32(" + w + "))]" }

// engagedArrays gives, per word, the weeks lo … hi in which some of its contacts engaged
// (ew) and those contacts (eb), from week_contacts series 1.
func engagedArrays(lo, hi int64) string {
	return `SELECT word, groupArray(week) AS ew, groupArray(b) AS eb
    FROM (
        SELECT week, word, groupBitOrMerge(bits) AS b FROM week_contacts
        WHERE series = ` + strconv.Itoa(seriesEngaged) + ` AND week >= ` + strconv.FormatInt(lo, 10) + ` AND week <= ` + strconv.FormatInt(hi, 10) + `
        GROUP BY week, word
    )
    GROUP BY word`
}

// retentionBitsQuery is cohort retention by first-contact week for cohorts of weeks
// wf … wt and weeks weeks after each, over week_contacts, read once. Per word, it
// gathers the contacts sent to in each week from the start of wf's span to wt (sw, sb),
// those sent to in earlier spans (old) and those engaged in weeks wf … wt+weeks-1 (ew,
// eb). Week
// cw's cohort of the word is then its contacts sent to in cw and never before:
// sb[cw] & ~(old | sb[every earlier week]). lower and upper, when set, are joined in
// from sent_times per word: the contacts sent to in wf before the range starts (they
// leave wf's cohort: their first send is before it) and those sent to in wt before the
// range ends (only they stay in wt's cohort). One row per cohort: week, size, then the
// contacts engaged in each week k after it.
func retentionBitsQuery(wf, wt int64, weeks int, lower, upper bool) string {
	span0 := wf / spanWeeks * spanWeeks
	cohort := "bitAnd(sb[indexOf(sw, cw)], bitNot(bitOr(old, arrayReduce('groupBitOr', arrayFilter((x, w) -> w < cw, sb, sw)))))"
	if lower {
		cohort = fmt.Sprintf("if(cw = %d, bitAnd(%s, bitNot(lo)), %s)", wf, cohort, cohort)
	}
	if upper {
		cohort = fmt.Sprintf("if(cw = %d, bitAnd(%s, hi), %s)", wt, cohort, cohort)
	}
	var engaged, sums strings.Builder
	for k := range weeks {
		fmt.Fprintf(&engaged, ", bitAnd(c, %s) AS a%d", engagedWord("cw + "+strconv.Itoa(k)), k)
		fmt.Fprintf(&sums, ", sum(%s)", popcount("a"+strconv.Itoa(k)))
	}
	edges := ""
	if lower || upper {
		edges = `
    ANY LEFT JOIN (
        SELECT intDiv(contact_id, 64) AS word, groupBitOrIf(` + contactBit + `, ts_ms < ?) AS lo,
            groupBitOrIf(` + contactBit + `, ts_ms >= ?) AS hi
        FROM sent_times
        WHERE (ts_ms >= ? AND ts_ms < ?) OR (ts_ms >= ? AND ts_ms < ?)
        GROUP BY word
    ) AS edges USING word`
	}
	return `SELECT toInt64(cw), sum(` + popcount("c") + `) AS n` + sums.String() + `
FROM (
    SELECT cw, c` + engaged.String() + `
    FROM (
        SELECT cw, ` + cohort + ` AS c, ew, eb
        FROM (
            SELECT word, old, sw, sb, ew, eb, arrayJoin(arrayFilter(w -> w >= ` + strconv.FormatInt(wf, 10) + `, sw)) AS cw
            FROM (
                SELECT word, groupBitOrIf(b, series = ` + strconv.Itoa(seriesSpan) + `) AS old,
                    groupArrayIf(week, series = ` + strconv.Itoa(seriesSent) + `) AS sw,
                    groupArrayIf(b, series = ` + strconv.Itoa(seriesSent) + `) AS sb,
                    groupArrayIf(week, series = ` + strconv.Itoa(seriesEngaged) + `) AS ew,
                    groupArrayIf(b, series = ` + strconv.Itoa(seriesEngaged) + `) AS eb
                FROM (
                    SELECT series, week, word, groupBitOrMerge(bits) AS b FROM week_contacts
                    WHERE (series = ` + strconv.Itoa(seriesSent) + ` AND week >= ` + strconv.FormatInt(span0, 10) + ` AND week <= ` + strconv.FormatInt(wt, 10) + `)
                        OR (series = ` + strconv.Itoa(seriesSpan) + ` AND week < ` + strconv.FormatInt(span0/spanWeeks, 10) + `)
                        OR (series = ` + strconv.Itoa(seriesEngaged) + ` AND week >= ` + strconv.FormatInt(wf, 10) + ` AND week <= ` + strconv.FormatInt(wt+int64(weeks)-1, 10) + `)
                    GROUP BY series, week, word
                )
                GROUP BY word
                HAVING notEmpty(arrayFilter(w -> w >= ` + strconv.FormatInt(wf, 10) + `, sw))
            )
        )` + edges + `
    )
    WHERE c != 0
)
GROUP BY cw
HAVING n > 0
ORDER BY cw`
}

// retentionBits runs retentionBitsQuery for contacts first sent to in [from, to).
func retentionBits(ctx context.Context, conn driver.Conn, from, to time.Time, weeks int) (driver.Rows, error) {
	f, t := max(from.UnixMilli(), 0), max(to.UnixMilli(), 0)
	wf, wt := weekNumber(time.UnixMilli(f)), weekNumber(time.UnixMilli(t-1))
	lower, upper := f > weekStartMs(wf), t < weekStartMs(wt+1)
	var args []any
	if lower || upper {
		// lo: sent in [start of wf, f); hi: sent in [start of wt, t).
		lf, lt := uint64(weekStartMs(wf)), uint64(f)
		if !lower {
			lt = lf
		}
		hf, ht := uint64(weekStartMs(wt)), uint64(t)
		if !upper {
			ht = hf
		}
		args = []any{uint64(f), hf, lf, lt, hf, ht}
	}
	return conn.Query(ctx, retentionBitsQuery(wf, wt, weeks, lower, upper), args...)
}

// campaignRetentionBitsQuery is cohort retention by campaign, for the campaigns of
// campaign_starts first sent in [?, ?) (ms) — and, with only, in the set bound to
// "IN ?" — whose weeks lie in wf … wt: per campaign, its week w0, its contacts (the
// popcount of its words in campaign_contacts) and those engaged in each week w0 + k.
func campaignRetentionBitsQuery(wf, wt int64, weeks int, only bool) string {
	var engaged, sums strings.Builder
	for k := range weeks {
		fmt.Fprintf(&engaged, ", bitAnd(cb, %s) AS a%d", engagedWord("w0 + "+strconv.Itoa(k)), k)
		fmt.Fprintf(&sums, ", sum(%s)", popcount("a"+strconv.Itoa(k)))
	}
	starts := campaignStartsQuery(only)
	return `SELECT campaign_id, w0, sum(` + popcount("cb") + `)` + sums.String() + `
FROM (
    SELECT campaign_id, w0, cb` + engaged.String() + `
    FROM (
        SELECT campaign_id, w0, word, cb
        FROM (
            SELECT campaign_id, word, groupBitOrMerge(bits) AS cb
            FROM campaign_contacts
            WHERE campaign_id IN (SELECT campaign_id FROM ` + starts + `)
            GROUP BY campaign_id, word
        )
        ALL INNER JOIN ` + starts + ` AS starts USING campaign_id
    )
    ANY LEFT JOIN (` + engagedArrays(wf, wt+int64(weeks)-1) + `) AS engaged USING word
)
GROUP BY campaign_id, w0
ORDER BY w0, campaign_id`
}

// campaignStartsQuery gives the campaigns first sent in [?, ?) (ms), with only those
// of the set bound to "IN ?" before, and the week w0 of that first send. It appears
// twice in campaignRetentionBitsQuery (18.16 has no WITH for subqueries).
func campaignStartsQuery(only bool) string {
	in := ""
	if only {
		in = " WHERE campaign_id IN ?"
	}
	return `(SELECT campaign_id, toInt64(intDiv(greatest(intDiv(f, 86400000), 4) - 4, 7)) AS w0
        FROM (SELECT campaign_id, minMerge(first_sent) AS f FROM campaign_starts` + in + ` GROUP BY campaign_id)
        WHERE f >= ? AND f < ?)`
}
