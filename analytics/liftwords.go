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

// liftOrdersOf lists the distinct orders (see liftOrders) of the contacts of a campaign
// sent to or skipped. Parameter: campaign.
const liftOrdersOf = `SELECT contact_id, if(order_id = '', event_id, order_id) AS order_key,
    min(ts_ms), any(value), any(currency)
FROM events
WHERE kind = 'converted' AND contact_id IN (SELECT contact_id FROM events WHERE campaign_id = ? AND kind IN ('sent', 'skipped'))
GROUP BY contact_id, order_key`

// maxLiftConverters is how many converters liftFromWords reads the reference times of
// by id; past it, it groups the whole campaign's sends and hold-outs.
var maxLiftConverters = 50_000

// liftFromWords is Lift with the groups' sizes from campaign_words (treated: the contacts
// sent to; holdout: those skipped as HoldoutReason and never sent to) and the reference
// times (first send, or first hold-out) read only for the contacts with orders, which
// are few next to the audience.
func liftFromWords(ctx context.Context, conn driver.Conn, campaign string, window time.Duration) (LiftReport, error) {
	if window <= 0 {
		window = DefaultLiftWindow
	}
	rep := LiftReport{Campaign: campaign, WindowMS: float64(window.Milliseconds()),
		Treated: LiftGroup{Revenue: []Amount{}}, Holdout: LiftGroup{Revenue: []Amount{}}}
	sets, err := facetSets(ctx, conn, campaign, "kind", "skipped")
	if err != nil {
		return rep, fmt.Errorf("lift of %s: %w", campaign, err)
	}
	sent := union(sets["kind"]["sent"])
	held := wordSet{}
	for w, b := range sets["skipped"][HoldoutReason] {
		held.or(w, b&^sent[w])
	}
	rep.Treated.Contacts, rep.Holdout.Contacts = sent.count(), held.count()
	in := func(s wordSet, c uint32) bool { return s[c/64]&(1<<(c%64)) != 0 }

	type order struct {
		ts       uint64
		value    float64
		currency string
	}
	orders := map[uint32][]order{}
	rows, err := conn.Query(ctx, liftOrdersOf, campaign)
	if err != nil {
		return rep, fmt.Errorf("lift of %s: orders: %w", campaign, err)
	}
	for rows.Next() {
		var (
			c   uint32
			key string
			o   order
		)
		if err := rows.Scan(&c, &key, &o.ts, &o.value, &o.currency); err != nil {
			rows.Close()
			return rep, fmt.Errorf("lift of %s: orders: %w", campaign, err)
		}
		if in(sent, c) || in(held, c) {
			orders[c] = append(orders[c], o)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("lift of %s: orders: %w", campaign, err)
	}

	refs := map[uint32]uint64{}
	if len(orders) > 0 {
		filter := ""
		if len(orders) <= maxLiftConverters {
			ids := make([]string, 0, len(orders))
			for c := range orders {
				ids = append(ids, strconv.FormatUint(uint64(c), 10))
			}
			filter = " AND contact_id IN (" + strings.Join(ids, ",") + ")"
		}
		rows, err := conn.Query(ctx, `SELECT contact_id, if(max(kind = 'sent'), minIf(ts_ms, kind = 'sent'), min(ts_ms))
FROM events
WHERE campaign_id = ? AND (kind = 'sent' OR (kind = 'skipped' AND reason = '`+HoldoutReason+`'))`+filter+`
GROUP BY contact_id`, campaign)
		if err != nil {
			return rep, fmt.Errorf("lift of %s: %w", campaign, err)
		}
		for rows.Next() {
			var (
				c   uint32
				ref uint64
			)
			if err := rows.Scan(&c, &ref); err != nil {
				rows.Close()
				return rep, fmt.Errorf("lift of %s: %w", campaign, err)
			}
			refs[c] = ref
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return rep, fmt.Errorf("lift of %s: %w", campaign, err)
		}
	}

	w := uint64(window.Milliseconds())
	revenue := map[*LiftGroup]map[string]*Amount{&rep.Treated: {}, &rep.Holdout: {}}
	for c, os := range orders {
		g := &rep.Holdout
		if in(sent, c) {
			g = &rep.Treated
		}
		ref, ok := refs[c]
		if !ok {
			continue
		}
		converted := false
		for _, o := range os {
			if o.ts >= ref && o.ts < ref+w {
				converted = true
				a := revenue[g][o.currency]
				if a == nil {
					a = &Amount{Currency: o.currency}
					revenue[g][o.currency] = a
				}
				a.Orders++
				a.Value += o.value
			}
		}
		if converted {
			g.Converted++
		}
	}
	for g, byCur := range revenue {
		for _, a := range byCur {
			g.Revenue = append(g.Revenue, *a)
		}
		slices.SortFunc(g.Revenue, func(a, b Amount) int { return strings.Compare(a.Currency, b.Currency) })
	}
	for _, g := range []*LiftGroup{&rep.Treated, &rep.Holdout} {
		g.Rate = ratio(g.Converted, g.Contacts)
	}
	rep.compare()
	return rep, nil
}
