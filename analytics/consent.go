package analytics

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

// consentRecordColumns are the consent_log columns scanConsentRecord reads, in order.
const consentRecordColumns = `id, contact_id, channel, purpose, action, source, wording,
    wording_version, ip, user_agent, actor, proof, ts_ms, prev_hash, hash`

const consentLedgerQuery = `SELECT DISTINCT ` + consentRecordColumns + `
FROM consent_log
WHERE contact_id = ?`

// scanConsentRecord reads a row of consentRecordColumns.
func scanConsentRecord(rows driver.Rows) (events.ConsentRecord, error) {
	var (
		r      events.ConsentRecord
		action string
		tsMS   uint64
	)
	if err := rows.Scan(&r.ID, &r.ContactID, &r.Channel, &r.Purpose, &action, &r.Source, &r.Wording,
		&r.WordingVersion, &r.IP, &r.UserAgent, &r.Actor, &r.Proof, &tsMS, &r.PrevHash, &r.Hash); err != nil {
		return r, err
	}
	r.Action = events.ConsentAction(action)
	r.Time = time.UnixMilli(int64(tsMS)).UTC()
	return r, nil
}

// ConsentLedger returns a contact's consent records from consent_log in ledger order,
// ready for events.VerifyChain. Rows stored twice (redelivery) are returned once; rows
// that differ in any field are all returned, so an edited copy of a record cannot hide
// behind the original. Order follows the hash chain from its first record (empty
// PrevHash); records the chain does not reach (a fork, a gap, an edited row) come after
// it in time order, where VerifyChain reports the first of them.
func ConsentLedger(ctx context.Context, conn driver.Conn, contact uint32) ([]events.ConsentRecord, error) {
	rows, err := conn.Query(ctx, consentLedgerQuery, contact)
	if err != nil {
		return nil, fmt.Errorf("consent ledger of %d: %w", contact, err)
	}
	defer rows.Close()
	var recs []events.ConsentRecord
	for rows.Next() {
		r, err := scanConsentRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("consent ledger of %d: %w", contact, err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("consent ledger of %d: %w", contact, err)
	}
	return chainOrder(recs), nil
}

// chainOrder orders records along their hash chain, then the unreached ones by time.
func chainOrder(recs []events.ConsentRecord) []events.ConsentRecord {
	sort.SliceStable(recs, func(i, j int) bool {
		if !recs[i].Time.Equal(recs[j].Time) {
			return recs[i].Time.Before(recs[j].Time)
		}
		return recs[i].ID < recs[j].ID
	})
	next := map[string][]int{} // prev_hash -> records linking to it, in time order
	for i, r := range recs {
		next[r.PrevHash] = append(next[r.PrevHash], i)
	}
	out := make([]events.ConsentRecord, 0, len(recs))
	used := make([]bool, len(recs))
	for head := ""; ; {
		cands := next[head]
		if len(cands) == 0 {
			break
		}
		i := cands[0]
		next[head] = cands[1:]
		if used[i] {
			break
		}
		used[i] = true
		out = append(out, recs[i])
		head = recs[i].Hash
	}
	for i, r := range recs {
		if !used[i] {
			out = append(out, r)
		}
	}
	return out
}
