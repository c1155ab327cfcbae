package analytics

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// FunnelReport is a campaign's delivery funnel and where the rest went.
type FunnelReport struct {
	Campaign string        `json:"campaign_id"`
	Steps    []FunnelStep  `json:"steps"`   // queued, sent, delivered, read
	Skipped  []ReasonCount `json:"skipped"` // contacts skipped by policy, by reason; most frequent first
	Failed   []CodeCount   `json:"failed"`  // contacts with a failed send, by provider error code; most frequent first
}

// FunnelStep is the number of distinct contacts that reached a step or any later one.
type FunnelStep struct {
	Name       string  `json:"name"`
	Contacts   uint64  `json:"contacts"`
	OfPrevious float64 `json:"of_previous"` // Contacts / previous step's Contacts (1 for the first step); 0 when the divisor is 0
	OfFirst    float64 `json:"of_first"`    // Contacts / first step's Contacts; 0 when the divisor is 0
}

// ReasonCount is how many distinct contacts were skipped with a reason code.
type ReasonCount struct {
	Reason   string `json:"reason"`
	Contacts uint64 `json:"contacts"`
}

// CodeCount is how many distinct contacts failed with a provider error code.
type CodeCount struct {
	Code     int32  `json:"code"`
	Contacts uint64 `json:"contacts"`
}

// funnelSteps names the funnel's steps in order.
var funnelSteps = []string{"queued", "sent", "delivered", "read"}

// funnelQuery counts, per step, the contacts whose furthest step is that one or a later
// one. The furthest step is the maximum over a contact's events, so the order in which
// events arrived does not matter, a read without a delivered status (WhatsApp may send
// only the read) counts as delivered, and duplicated events change nothing.
const funnelQuery = `SELECT
    countIf(stage >= 1) AS queued,
    countIf(stage >= 2) AS sent,
    countIf(stage >= 3) AS delivered,
    countIf(stage >= 4) AS read
FROM (
    SELECT contact_id,
           max(multiIf(kind = 'read', 4, kind = 'delivered', 3, kind = 'sent', 2, 1)) AS stage
    FROM events
    WHERE campaign_id = ? AND kind IN ('queued', 'sent', 'delivered', 'read')
    GROUP BY contact_id
)`

// outcomesQuery counts skipped contacts by reason and failed contacts by error code.
// A contact counts once per kind, under the reason or code of its latest such event.
const outcomesQuery = `SELECT kind, last_reason, last_code, count() AS contacts
FROM (
    SELECT kind, contact_id,
           if(kind = 'skipped', argMax(reason, (ts_ms, event_id)), '') AS last_reason,
           toInt32(if(kind = 'failed', argMax(error_code, (ts_ms, event_id)), 0)) AS last_code
    FROM events
    WHERE campaign_id = ? AND kind IN ('skipped', 'failed')
    GROUP BY kind, contact_id
)
GROUP BY kind, last_reason, last_code
ORDER BY kind, contacts DESC, last_reason, last_code`

// Funnel computes the funnel of a campaign in ClickHouse: distinct contacts per step
// (see funnelQuery for the counting rule), skipped contacts by reason and failed
// contacts by provider error code. A campaign without events gives zero counts. It
// reads the campaign_words bitmaps (funnelwords.go), not the events: the figures are
// funnelFromEvents', at a cost that grows with the audience's 64-contact words, not
// its events.
func Funnel(ctx context.Context, conn driver.Conn, campaign string) (FunnelReport, error) {
	return funnelFromWords(ctx, conn, campaign)
}

// funnelFromEvents is Funnel computed from the events, grouped by contact: the
// definition the pre-aggregate must match (TestFunnelWordsEqualsEvents).
func funnelFromEvents(ctx context.Context, conn driver.Conn, campaign string) (FunnelReport, error) {
	rep := FunnelReport{Campaign: campaign}
	counts := make([]uint64, len(funnelSteps))
	row := conn.QueryRow(ctx, funnelQuery, campaign)
	if err := row.Scan(&counts[0], &counts[1], &counts[2], &counts[3]); err != nil {
		return rep, fmt.Errorf("funnel of %s: %w", campaign, err)
	}
	for i, name := range funnelSteps {
		st := FunnelStep{Name: name, Contacts: counts[i], OfFirst: ratio(counts[i], counts[0])}
		if i == 0 {
			st.OfPrevious = ratio(counts[0], counts[0])
		} else {
			st.OfPrevious = ratio(counts[i], counts[i-1])
		}
		rep.Steps = append(rep.Steps, st)
	}

	rows, err := conn.Query(ctx, outcomesQuery, campaign)
	if err != nil {
		return rep, fmt.Errorf("funnel of %s: outcomes: %w", campaign, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind, reason string
			code         int32
			n            uint64
		)
		if err := rows.Scan(&kind, &reason, &code, &n); err != nil {
			return rep, fmt.Errorf("funnel of %s: outcomes: %w", campaign, err)
		}
		switch kind {
		case "skipped":
			rep.Skipped = append(rep.Skipped, ReasonCount{Reason: reason, Contacts: n})
		case "failed":
			rep.Failed = append(rep.Failed, CodeCount{Code: code, Contacts: n})
		}
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("funnel of %s: outcomes: %w", campaign, err)
	}
	return rep, nil
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
