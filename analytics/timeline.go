package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
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

// Timeline computes a campaign's timeline at step (a whole number of minutes, at least
// one) from campaign_minutes: per step and kind, the contacts in the union of its
// minutes' sets. A campaign without events has no points; one that spans more than
// MaxTimelinePoints steps gives ErrTimelineTooLong.
func Timeline(ctx context.Context, conn driver.Conn, campaign string, step time.Duration) (TimelineReport, error) {
	return timelineOf(ctx, conn, campaign, step, MaxTimelinePoints)
}

// timelineOf is Timeline with at most maxPoints steps.
func timelineOf(ctx context.Context, conn driver.Conn, campaign string, step time.Duration, maxPoints int64) (TimelineReport, error) {
	secs := int64(step / time.Second)
	rep := TimelineReport{Campaign: campaign, StepSeconds: secs, Points: []TimelinePoint{}}
	if step < time.Minute || step%time.Minute != 0 {
		return rep, fmt.Errorf("timeline of %s: step %v: want whole minutes", campaign, step)
	}
	mins := uint32(step / time.Minute)
	// The rows as stored (no GROUP BY: see facetSets); a step's words are or-ed here.
	rows, err := conn.Query(ctx, `SELECT kind, intDiv(minute, ?) AS s, word, finalizeAggregation(bits)
FROM campaign_minutes WHERE campaign_id = ?`, mins, campaign)
	if err != nil {
		return rep, fmt.Errorf("timeline of %s: %w", campaign, err)
	}
	defer rows.Close()
	type key struct {
		kind string
		step uint32
		word uint32
	}
	words := map[key]uint64{}
	lo, hi := uint32(math.MaxUint32), uint32(0)
	for rows.Next() {
		var (
			k key
			b uint64
		)
		if err := rows.Scan(&k.kind, &k.step, &k.word, &b); err != nil {
			return rep, fmt.Errorf("timeline of %s: %w", campaign, err)
		}
		words[k] |= b
		lo, hi = min(lo, k.step), max(hi, k.step)
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("timeline of %s: %w", campaign, err)
	}
	if len(words) == 0 {
		return rep, nil
	}
	if n := int64(hi-lo) + 1; n > maxPoints {
		return rep, fmt.Errorf("timeline of %s: %d steps of %v: %w", campaign, n, step, ErrTimelineTooLong)
	}
	rep.Points = make([]TimelinePoint, hi-lo+1)
	for i := range rep.Points {
		rep.Points[i].Time = time.Unix((int64(lo)+int64(i))*secs, 0).UTC()
	}
	for k, b := range words {
		p := &rep.Points[k.step-lo]
		n := uint64(bits.OnesCount64(b))
		switch k.kind {
		case "sent":
			p.Sent += n
		case "delivered":
			p.Delivered += n
		case "read":
			p.Read += n
		case "clicked":
			p.Clicked += n
		case "failed":
			p.Failed += n
		case "skipped":
			p.Skipped += n
		}
	}
	return rep, nil
}
