package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// TimelinePoint is one step of a campaign's timeline: per kind, the distinct contacts
// with such an event in [Time, Time + step).
type TimelinePoint struct {
	Time      time.Time `json:"t"`
	Sent      uint64    `json:"sent"`
	Delivered uint64    `json:"delivered"`
	Read      uint64    `json:"read"`
	Clicked   uint64    `json:"clicked"`
	Failed    uint64    `json:"failed"`
	Skipped   uint64    `json:"skipped"`
}

// TimelineReport is a campaign's sends and statuses over time, every step from its first
// event's to its last's (steps without events hold zeros).
type TimelineReport struct {
	Campaign    string          `json:"campaign_id"`
	StepSeconds int64           `json:"step_seconds"`
	Points      []TimelinePoint `json:"points"`
}

// MaxTimelinePoints bounds a timeline: a campaign spanning more steps needs a longer step.
const MaxTimelinePoints = 2000

// ErrTimelineTooLong: the campaign spans more than MaxTimelinePoints steps.
var ErrTimelineTooLong = errors.New("the campaign spans too many steps")

// timelineQuery counts, per step and kind, the distinct contacts with such an event
// (a redelivered event has its original's time, so duplicates change nothing). It reads
// the campaign's range of events (ordered by campaign, kind) and groups by two numbers;
// the span is checked first so a long campaign at a short step costs one pass.
const timelineQuery = `SELECT toUInt32(intDiv(toUInt32(ts), ?) * ?) AS t, kind, uniqExact(contact_id)
FROM events
WHERE campaign_id = ? AND kind IN ('sent', 'delivered', 'read', 'clicked', 'failed', 'skipped')
GROUP BY t, kind
ORDER BY t`

// Timeline computes a campaign's timeline at step (a whole number of seconds, at least
// one). A campaign without events has no points; one that spans more than
// MaxTimelinePoints steps gives ErrTimelineTooLong.
func Timeline(ctx context.Context, conn driver.Conn, campaign string, step time.Duration) (TimelineReport, error) {
	secs := int64(step / time.Second)
	rep := TimelineReport{Campaign: campaign, StepSeconds: secs, Points: []TimelinePoint{}}
	if secs < 1 || step%time.Second != 0 {
		return rep, fmt.Errorf("timeline of %s: step %v: want whole seconds", campaign, step)
	}
	var lo, hi uint32
	var n uint64
	err := conn.QueryRow(ctx, `SELECT min(toUInt32(ts)), max(toUInt32(ts)), count() FROM events
WHERE campaign_id = ? AND kind IN ('sent', 'delivered', 'read', 'clicked', 'failed', 'skipped')`, campaign).Scan(&lo, &hi, &n)
	if err != nil {
		return rep, fmt.Errorf("timeline of %s: %w", campaign, err)
	}
	if n == 0 {
		return rep, nil
	}
	first, last := int64(lo)/secs*secs, int64(hi)/secs*secs
	if (last-first)/secs+1 > MaxTimelinePoints {
		return rep, fmt.Errorf("timeline of %s: %d steps of %v: %w", campaign, (last-first)/secs+1, step, ErrTimelineTooLong)
	}
	rep.Points = make([]TimelinePoint, (last-first)/secs+1)
	for i := range rep.Points {
		rep.Points[i].Time = time.Unix(first+int64(i)*secs, 0).UTC()
	}
	rows, err := conn.Query(ctx, timelineQuery, uint32(secs), uint32(secs), campaign)
	if err != nil {
		return rep, fmt.Errorf("timeline of %s: %w", campaign, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			t    uint32
			kind string
			c    uint64
		)
		if err := rows.Scan(&t, &kind, &c); err != nil {
			return rep, fmt.Errorf("timeline of %s: %w", campaign, err)
		}
		i := (int64(t) - first) / secs
		if i < 0 || i >= int64(len(rep.Points)) {
			continue // an event inserted since the span was read
		}
		p := &rep.Points[i]
		switch kind {
		case "sent":
			p.Sent = c
		case "delivered":
			p.Delivered = c
		case "read":
			p.Read = c
		case "clicked":
			p.Clicked = c
		case "failed":
			p.Failed = c
		case "skipped":
			p.Skipped = c
		}
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("timeline of %s: %w", campaign, err)
	}
	return rep, nil
}
