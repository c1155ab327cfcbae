package analytics

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Delivery is what became of one recipient of a campaign: "who got what, and why not".
type Delivery struct {
	ContactID uint32    `json:"contact_id"`
	Status    string    `json:"status"` // the furthest step (see DeliveryStatuses)
	Time      time.Time `json:"time"`   // of the recipient's latest event
	Channel   string    `json:"channel,omitempty"`
	SenderID  string    `json:"sender_id,omitempty"`
	Template  string    `json:"template,omitempty"`
	Variant   string    `json:"variant,omitempty"`
	Country   string    `json:"country,omitempty"`
	// Reason is the policy's code of the latest skip or deferral (opt_out, quiet_hours, …).
	Reason string `json:"reason,omitempty"`
	// ErrorCode is the provider's code of the latest failure.
	ErrorCode int32     `json:"error_code,omitempty"`
	SentAt    time.Time `json:"sent_at,omitzero"` // the first accepted send
}

// DeliveryStatuses are the statuses a delivery can have, lowest first: a recipient's
// status is the furthest its events reached in this order (a failure outranks the send
// it failed, a delivery outranks an earlier failed attempt).
var DeliveryStatuses = []string{"queued", "deferred", "skipped", "sent", "failed", "delivered", "read", "clicked", "replied", "converted"}

// DeliveryQuery picks a page of a campaign's recipients.
type DeliveryQuery struct {
	Campaign string
	// Status keeps recipients that have an event of this kind (one of
	// DeliveryStatuses); "" keeps every recipient (those with a queued event).
	Status string
	// After is the keyset cursor: the page starts after this contact id (0: at the
	// start; with Desc, before it).
	After uint32
	Desc  bool // contact ids descending
	Limit int
}

// deliveryRank orders kinds by how far a message got (DeliveryStatuses).
var deliveryRank = func() string {
	var b strings.Builder
	b.WriteString("multiIf(")
	for i, k := range DeliveryStatuses[1:] {
		fmt.Fprintf(&b, "kind = '%s', %d, ", k, i+2)
	}
	b.WriteString("1)")
	return b.String()
}()

var deliveryKinds = "'" + strings.Join(DeliveryStatuses, "', '") + "'"

// Deliveries returns a page of a campaign's recipients by contact id, and whether more
// follow. It pages by keyset (contact_id > After), never by offset: the first query
// reads the page's contact ids from the primary key range (campaign_id, kind,
// contact_id), the second only those contacts' events, so a deep page costs about what
// the first does.
func Deliveries(ctx context.Context, conn driver.Conn, q DeliveryQuery) ([]Delivery, bool, error) {
	kind := q.Status
	if kind == "" {
		kind = "queued"
	}
	if !slices.Contains(DeliveryStatuses, kind) {
		return nil, false, fmt.Errorf("deliveries: status %q: want one of %s", kind, strings.Join(DeliveryStatuses, ", "))
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	cmp, order := ">", "ASC"
	if q.Desc {
		cmp, order = "<", "DESC"
	}
	where := "campaign_id = ? AND kind = ?"
	args := []any{q.Campaign, kind}
	if q.After > 0 || q.Desc {
		after := uint64(q.After)
		if q.Desc && q.After == 0 {
			after = 1 << 32
		}
		where += " AND contact_id " + cmp + " ?"
		args = append(args, after)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT contact_id FROM events WHERE %s GROUP BY contact_id ORDER BY contact_id %s LIMIT %d",
		where, order, q.Limit+1), args...)
	if err != nil {
		return nil, false, fmt.Errorf("deliveries of %s: %w", q.Campaign, err)
	}
	var ids []uint32
	for rows.Next() {
		var id uint32
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, false, fmt.Errorf("deliveries of %s: %w", q.Campaign, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("deliveries of %s: %w", q.Campaign, err)
	}
	more := len(ids) > q.Limit
	if more {
		ids = ids[:q.Limit]
	}
	out := make([]Delivery, 0, len(ids))
	if len(ids) == 0 {
		return out, false, nil
	}
	lo, hi := slices.Min(ids), slices.Max(ids)
	var list strings.Builder
	for i, id := range ids {
		if i > 0 {
			list.WriteByte(',')
		}
		list.WriteString(strconv.FormatUint(uint64(id), 10))
	}
	// The range lets the primary key skip every granule outside the page, whatever
	// the kind; the IN list keeps only the page's contacts.
	sql := `SELECT contact_id,
    argMax(kind, (` + deliveryRank + `, ts_ms, event_id)) AS status,
    max(ts_ms) AS last_ms,
    anyIf(channel, channel != '') AS channel,
    anyIf(sender_id, sender_id != '') AS sender_id,
    anyIf(template, template != '') AS template,
    anyIf(variant, variant != '') AS variant,
    anyIf(country, country != '') AS country,
    argMaxIf(reason, (ts_ms, event_id), kind IN ('skipped', 'deferred')) AS reason,
    toInt32(argMaxIf(error_code, (ts_ms, event_id), kind = 'failed')) AS error_code,
    minIf(ts_ms, kind = 'sent') AS sent_ms
FROM events
WHERE campaign_id = ? AND contact_id >= ? AND contact_id <= ? AND contact_id IN (` + list.String() + `) AND kind IN (` + deliveryKinds + `)
GROUP BY contact_id
ORDER BY contact_id ` + order
	rows, err = conn.Query(ctx, sql, q.Campaign, lo, hi)
	if err != nil {
		return nil, false, fmt.Errorf("deliveries of %s: %w", q.Campaign, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d Delivery
		var lastMS, sentMS uint64
		if err := rows.Scan(&d.ContactID, &d.Status, &lastMS, &d.Channel, &d.SenderID, &d.Template, &d.Variant, &d.Country,
			&d.Reason, &d.ErrorCode, &sentMS); err != nil {
			return nil, false, fmt.Errorf("deliveries of %s: %w", q.Campaign, err)
		}
		d.Time = time.UnixMilli(int64(lastMS)).UTC()
		if sentMS > 0 {
			d.SentAt = time.UnixMilli(int64(sentMS)).UTC()
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("deliveries of %s: %w", q.Campaign, err)
	}
	return out, more, nil
}
