package analytics

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The cohort queries of the previous design, kept as the benchmark's baseline: they
// read contact_weeks (one row per contact and 128-week block, more before merges) and
// group by contact, where Retention and RetentionByCampaign now read the bitmaps of
// cohorts.go.

// contactWeeksRetention is Retention over contact_weeks.
func contactWeeksRetention(ctx context.Context, conn driver.Conn, from, to time.Time, weeks int) (RetentionReport, error) {
	rep := RetentionReport{Weeks: weeks}
	first := weekNumber(from) / blockWeeks
	last := (weekNumber(to.Add(-time.Millisecond)) + int64(weeks) - 1) / blockWeeks
	rows, err := conn.Query(ctx, oldRetentionQuery(weeks, first, last), uint64(max(from.UnixMilli(), 0)), uint64(max(to.UnixMilli(), 0)))
	if err != nil {
		return rep, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			cw   int64
			c    = Cohort{Active: make([]uint64, weeks)}
			dest = []any{&cw, &c.Contacts}
		)
		for k := range c.Active {
			dest = append(dest, &c.Active[k])
		}
		if err := rows.Scan(dest...); err != nil {
			return rep, err
		}
		c.Week = weekMonday(cw).Format(time.DateOnly)
		rep.Cohorts = append(rep.Cohorts, c)
	}
	return rep, rows.Err()
}

// contactWeeksRetentionByCampaign is RetentionByCampaign of all campaigns over
// contact_weeks and the (campaign, contact) pairs of the sent events.
func contactWeeksRetentionByCampaign(ctx context.Context, conn driver.Conn, from, to time.Time, weeks int) (CampaignRetentionReport, error) {
	rep := CampaignRetentionReport{Weeks: weeks}
	first := weekNumber(from) / blockWeeks
	last := (weekNumber(to.Add(-time.Millisecond)) + int64(weeks) - 1) / blockWeeks
	rows, err := conn.Query(ctx, oldCampaignRetentionQuery(weeks, first, last), uint64(max(from.UnixMilli(), 0)), uint64(max(to.UnixMilli(), 0)))
	if err != nil {
		return rep, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			w0   int64
			c    = CampaignCohort{Active: make([]uint64, weeks)}
			dest = []any{&c.Campaign, &w0, &c.Contacts}
		)
		for k := range c.Active {
			dest = append(dest, &c.Active[k])
		}
		if err := rows.Scan(dest...); err != nil {
			return rep, err
		}
		c.Week = weekMonday(w0).Format(time.DateOnly)
		rep.Cohorts = append(rep.Cohorts, c)
	}
	return rep, rows.Err()
}

// oldRetentionQuery builds the cohort retention query over contact_weeks for cohorts whose
// first sent event lies in [?, ?) (ms) and weeks 0 … weeks-1 after each, when the weeks
// that matter lie in blocks first … last. It gives one row per cohort: its week number,
// its size, then the contacts engaged in each week. A contact's rows (one per block,
// more before merges) are combined by GROUP BY contact_id: the first sent is the least
// over all of its blocks, and only the blocks holding the weeks asked for are read into
// masks l<block> (weeks 0-63 of the block) and h<block> (64-127).
func oldRetentionQuery(weeks int, first, last int64) string {
	return `SELECT cw, count()` + weekSums("cw", weeks, first, last) + `
FROM (
    SELECT intDiv(greatest(intDiv(fs, 86400000), 4) - 4, 7) AS cw` + maskColumns(first, last) + `
    FROM (
        SELECT contact_id, min(f) AS fs` + maskAggregates(first, last) + `
        FROM (
            SELECT contact_id, block, finalizeAggregation(first_sent) AS f,
                finalizeAggregation(engaged_lo) AS lo, finalizeAggregation(engaged_hi) AS hi
            FROM contact_weeks WHERE block <= ` + strconv.FormatInt(last, 10) + `
        )
        GROUP BY contact_id
        HAVING fs >= ? AND fs < ?
    )
)
GROUP BY cw
ORDER BY cw`
}

// maskAggregates gives, grouped by contact, its engaged weeks of blocks first … last:
// l<block> (weeks 0-63 of the block) and h<block> (64-127).
func maskAggregates(first, last int64) string {
	var b strings.Builder
	for k := first; k <= last; k++ {
		fmt.Fprintf(&b, ",\n            groupBitOrIf(lo, block = %d) AS l%d, groupBitOrIf(hi, block = %d) AS h%d", k, k, k, k)
	}
	return b.String()
}

func maskColumns(first, last int64) string {
	var b strings.Builder
	for k := first; k <= last; k++ {
		fmt.Fprintf(&b, ", l%d, h%d", k, k)
	}
	return b.String()
}

// weekSums counts, for k in 0 … weeks-1, the rows whose masks have week col + k.
func weekSums(col string, weeks int, first, last int64) string {
	var sums strings.Builder
	for k := range weeks {
		// The word holding week col + k, then its bit.
		word := "toUInt64(0)"
		for b := last; b >= first; b-- {
			word = fmt.Sprintf("if(intDiv(%[1]s + %[2]d, %[3]d) = %[4]d, if((%[1]s + %[2]d) %% %[3]d < 64, l%[4]d, h%[4]d), %[5]s)",
				col, k, blockWeeks, b, word)
		}
		fmt.Fprintf(&sums, ",\n    sum(bitTest(%s, toUInt8((%s + %d) %% 64)))", word, col, k)
	}
	return sums.String()
}

// oldCampaignRetentionQuery: per campaign first sent in [?, ?) (ms), its week, its
// distinct contacts sent to, and those engaged in each following week (masks of
// contact_weeks, blocks first … last).
func oldCampaignRetentionQuery(weeks int, first, last int64) string {
	in, contacts := "", ""
	return `SELECT campaign_id, w0, count()` + weekSums("w0", weeks, first, last) + `
FROM (
    SELECT campaign_id, contact_id, w0
    FROM (SELECT DISTINCT campaign_id, contact_id FROM events WHERE kind = 'sent'` + in + `)
    ALL INNER JOIN (
        SELECT campaign_id, intDiv(greatest(intDiv(min(ts_ms), 86400000), 4) - 4, 7) AS w0
        FROM events WHERE kind = 'sent' AND campaign_id != ''` + in + `
        GROUP BY campaign_id
        HAVING min(ts_ms) >= ? AND min(ts_ms) < ?
    ) USING campaign_id
)
ANY LEFT JOIN (
    SELECT contact_id` + maskAggregates(first, last) + `
    FROM (
        SELECT contact_id, block, finalizeAggregation(engaged_lo) AS lo, finalizeAggregation(engaged_hi) AS hi
        FROM contact_weeks WHERE block >= ` + strconv.FormatInt(first, 10) + ` AND block <= ` + strconv.FormatInt(last, 10) + contacts + `
    )
    GROUP BY contact_id
) USING contact_id
GROUP BY campaign_id, w0
ORDER BY w0, campaign_id`
}
