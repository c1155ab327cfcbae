package analytics

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// explainOtherChannel rewrites the detail of the RuleConsentRefInvalid violations whose
// record is a consent of the contact on another channel than the one the message went
// on: the consent audit joins a send's record on (contact, channel), so a fallback send
// on SMS that names the contact's WhatsApp grant proves nothing, and the auditor is told
// so in those words. One query for all of them.
func explainOtherChannel(ctx context.Context, conn driver.Conn, vs []Violation) error {
	var refs []string
	seen := map[string]bool{}
	for _, v := range vs {
		if v.Rule == RuleConsentRefInvalid && v.ConsentRef != "" && !seen[v.ConsentRef] {
			seen[v.ConsentRef] = true
			refs = append(refs, v.ConsentRef)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	type rec struct {
		contact                  uint32
		channel, purpose, action string
	}
	byID := map[string][]rec{}
	rows, err := conn.Query(ctx, `SELECT DISTINCT id, contact_id, channel, purpose, action FROM consent_log WHERE id IN ?`, inSet(refs))
	if err != nil {
		return fmt.Errorf("records named by sends: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var r rec
		if err := rows.Scan(&id, &r.contact, &r.channel, &r.purpose, &r.action); err != nil {
			return fmt.Errorf("records named by sends: %w", err)
		}
		byID[id] = append(byID[id], r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("records named by sends: %w", err)
	}
	for i, v := range vs {
		if v.Rule != RuleConsentRefInvalid {
			continue
		}
		for _, r := range byID[v.ConsentRef] {
			if r.contact == v.ContactID && r.channel != v.Channel {
				vs[i].Detail = fmt.Sprintf("record %s is a %s/%s %s of contact %d: the message went on %s, and consent on another channel does not cover it",
					v.ConsentRef, r.channel, r.purpose, r.action, v.ContactID, v.Channel)
				break
			}
		}
	}
	return nil
}
