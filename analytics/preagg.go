package analytics

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// contact_weeks (migration 0007) was the cohort reports' pre-aggregate until migration
// 0009's bitmaps (cohorts.go) replaced it: a contact's rows are only combined by merges,
// so right after a bulk load a report grouped several rows per contact. It stays for
// analysts' SQL. It is fed by a materialized view on every insert into events, and holds only
// idempotent aggregates (min, bitwise or), so a duplicated event (at-least-once delivery,
// an insert retried, the backfill overlapping the view) changes nothing, and the order in
// which events arrive does not matter either.
//
// contact_weeks: per contact and block of 128 weeks (about 2.5 years), the time of its
// first sent event and the weeks in which it engaged (read, clicked, replied or
// converted), one bit per week. Weeks are numbered from Monday 1970-01-05 UTC (week 0),
// so week w starts on that Monday plus 7·w days; it lies in block w / 128, in
// engaged_lo when w % 128 < 64, else in engaged_hi, at bit w % 64. A contact has one row
// per block it has events in once merges are done; before, several, which the queries
// combine. Rows are small and few (one per contact, rarely two), so a cohort report
// reads one row per contact instead of every event.

// weekOf is the week number (see contact_weeks) of the DateTime ts: days since
// 1970-01-01 (a Thursday) minus 4, over 7.
const weekOf = `intDiv(greatest(intDiv(toUInt32(ts), 86400), 4) - 4, 7)`

// noSent is first_sent of a block without a sent event: greater than any time.
const noSent = `toUInt64(18446744073709551615)`

// blockWeeks is the number of weeks in a block of contact_weeks.
const blockWeeks = 128

const createContactWeeks = `CREATE TABLE IF NOT EXISTS contact_weeks (
    contact_id UInt32,
    block      UInt16,
    first_sent AggregateFunction(min, UInt64),
    engaged_lo AggregateFunction(groupBitOr, UInt64),
    engaged_hi AggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (contact_id, block)`

// contactWeeksSelect aggregates events into contact_weeks rows; %s is an extra filter.
// Plain min and groupBitOr states (no -If combinator, whose state type would name the
// condition's type) keep the column types the same on every server version.
const contactWeeksSelect = `SELECT contact_id,
    toUInt16(intDiv(` + weekOf + `, 128)) AS block,
    minState(if(kind = 'sent', ts_ms, ` + noSent + `)) AS first_sent,
    groupBitOrState(if(kind = 'sent' OR ` + weekOf + ` %% 128 >= 64, toUInt64(0), bitShiftLeft(toUInt64(1), toUInt8(` + weekOf + ` %% 64)))) AS engaged_lo,
    groupBitOrState(if(kind = 'sent' OR ` + weekOf + ` %% 128 < 64, toUInt64(0), bitShiftLeft(toUInt64(1), toUInt8(` + weekOf + ` %% 64)))) AS engaged_hi
FROM events
WHERE kind IN ('sent', 'read', 'clicked', 'replied', 'converted')%s
GROUP BY contact_id, block`

var createContactWeeksMV = `CREATE MATERIALIZED VIEW IF NOT EXISTS contact_weeks_mv TO contact_weeks AS
` + fmt.Sprintf(contactWeeksSelect, "")

// backfillContactWeeks aggregates the events stored before contact_weeks_mv existed, one
// monthly partition at a time (bounded memory). It runs after the view is created, so
// nothing falls between the two; what both see is aggregated twice, which min and or
// absorb.
func backfillContactWeeks(ctx context.Context, conn driver.Conn) error {
	rows, err := conn.Query(ctx, `SELECT DISTINCT partition FROM system.parts
WHERE database = currentDatabase() AND table = 'events' AND active ORDER BY partition`)
	if err != nil {
		return fmt.Errorf("list partitions of events: %w", err)
	}
	var parts []uint64
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return fmt.Errorf("list partitions of events: %w", err)
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			rows.Close()
			return fmt.Errorf("partition %q of events: want YYYYMM: %w", p, err)
		}
		parts = append(parts, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list partitions of events: %w", err)
	}
	for _, p := range parts {
		q := "INSERT INTO contact_weeks (contact_id, block, first_sent, engaged_lo, engaged_hi) " +
			fmt.Sprintf(contactWeeksSelect, " AND toYYYYMM(ts) = "+strconv.FormatUint(p, 10))
		if err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("backfill contact_weeks from partition %d: %w", p, err)
		}
	}
	return nil
}

// week0 is the Monday on which week 0 starts.
var week0 = time.Date(1970, 1, 5, 0, 0, 0, 0, time.UTC)

// weekNumber is the number of the week holding t (0 before 1970-01-12).
func weekNumber(t time.Time) int64 {
	days := t.Unix() / 86400
	return (max(days, 4) - 4) / 7
}

// weekMonday is the Monday on which week w starts.
func weekMonday(w int64) time.Time { return week0.AddDate(0, 0, int(7*w)) }
