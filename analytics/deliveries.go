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
// follow. It pages by keyset (contact_id > After), never by offset: pageIDs reads the
// page's contact ids from a window of the primary key (campaign_id, kind, contact_id),
// the second query only those contacts' events, so any page costs about what the first
// does, whatever the campaign's size.
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
	order := "ASC"
	if q.Desc {
		order = "DESC"
	}
	ids, err := pageIDs(ctx, conn, q, kind)
	if err != nil {
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
	rows, err := conn.Query(ctx, sql, q.Campaign, lo, hi)
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

// maxContactID bounds contact ids (UInt32).
const maxContactID = 1<<32 - 1

// pageIDs finds the contact ids of a page: up to Limit+1 distinct ids of recipients with
// an event of kind, after (or, with Desc, before) the cursor. It reads growing windows
// of ids from the cursor on, a few granules of the primary key each, rather than every
// id after the cursor: with dense ids (as Herald assigns them) the first window fills
// the page. The campaign's lowest or highest id, read once when a window comes back
// short, says when the list has ended.
func pageIDs(ctx context.Context, conn driver.Conn, q DeliveryQuery, kind string) ([]uint32, error) {
	want := q.Limit + 1
	var ids []uint32
	var edge *uint64 // the campaign's last id in the order of the page
	readEdge := func() (uint64, error) {
		if edge == nil {
			var v uint32
			f := "max"
			if q.Desc {
				f = "min"
			}
			if err := conn.QueryRow(ctx, "SELECT "+f+"(contact_id) FROM events WHERE campaign_id = ? AND kind = ?", q.Campaign, kind).Scan(&v); err != nil {
				return 0, err
			}
			e := uint64(v)
			edge = &e
		}
		return *edge, nil
	}
	// pos is the cursor: ids strictly after it (before it with Desc) are wanted.
	pos := uint64(q.After)
	if q.Desc && q.After == 0 {
		// From the top: the campaign's highest id.
		var top uint32
		if err := conn.QueryRow(ctx, "SELECT max(contact_id) FROM events WHERE campaign_id = ? AND kind = ?", q.Campaign, kind).Scan(&top); err != nil {
			return nil, err
		}
		pos = uint64(top) + 1
	}
	w := uint64(want) * 2
	for len(ids) < want {
		var lo, hi uint64 // inclusive
		if q.Desc {
			if pos == 0 {
				break
			}
			hi = pos - 1
			lo = hi - min(hi, w-1)
		} else {
			if pos >= maxContactID {
				break
			}
			lo = pos + 1
			hi = min(pos+w, maxContactID)
		}
		order := "ASC"
		if q.Desc {
			order = "DESC"
		}
		rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT contact_id FROM events
WHERE campaign_id = ? AND kind = ? AND contact_id >= ? AND contact_id <= ?
GROUP BY contact_id ORDER BY contact_id %s LIMIT %d`, order, want-len(ids)), q.Campaign, kind, uint32(lo), uint32(hi))
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id uint32
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if len(ids) >= want {
			break
		}
		e, err := readEdge()
		if err != nil {
			return nil, err
		}
		if q.Desc {
			if lo <= e {
				break
			}
			pos = lo
		} else {
			if hi >= e {
				break
			}
			pos = hi
		}
		w *= 4
	}
	return ids, nil
}
