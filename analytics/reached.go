package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/RoaringBitmap/roaring/v2"
)

// Reached answers who campaigns sent a message to, from the sent events: the
// exclude-reached-within option of recurring campaigns asks it which contacts a
// schedule's earlier runs reached in a window. Each send's own time decides (ts_ms),
// duplicates change nothing (distinct contacts), and the scan reads only the runs'
// campaigns (events are ordered by campaign_id, kind, contact_id).
type Reached struct{ Conn driver.Conn }

// SentSince returns the contacts with a sent event of one of campaigns at or after since.
func (r Reached) SentSince(ctx context.Context, campaigns []string, since time.Time) (*roaring.Bitmap, error) {
	out := roaring.New()
	if len(campaigns) == 0 {
		return out, nil
	}
	rows, err := r.Conn.Query(ctx, `SELECT DISTINCT contact_id FROM events
WHERE campaign_id IN ? AND kind = 'sent' AND ts_ms >= ?`, inSet(campaigns), uint64(max(since.UnixMilli(), 0)))
	if err != nil {
		return nil, fmt.Errorf("contacts reached: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uint32
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("contacts reached: %w", err)
		}
		out.Add(id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("contacts reached: %w", err)
	}
	return out, nil
}

// SentCounts returns, per campaign, how many distinct contacts have a sent event
// (campaigns without any are absent).
func (r Reached) SentCounts(ctx context.Context, campaigns []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	if len(campaigns) == 0 {
		return out, nil
	}
	rows, err := r.Conn.Query(ctx, `SELECT campaign_id, uniqExact(contact_id) FROM events
WHERE campaign_id IN ? AND kind = 'sent' GROUP BY campaign_id`, inSet(campaigns))
	if err != nil {
		return nil, fmt.Errorf("sends per campaign: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("sends per campaign: %w", err)
		}
		out[id] = n
	}
	return out, rows.Err()
}

// inSet binds a list of strings to "IN ?".
func inSet(ss []string) clickhouse.GroupSet {
	set := clickhouse.GroupSet{Value: make([]any, len(ss))}
	for i, s := range ss {
		set.Value[i] = s
	}
	return set
}
