package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Contact is a row of the contacts dimension table, a copy of the contact store kept for
// cohorts and joins in SQL. PhoneHash is whatever pseudonymous identifier the caller
// chooses (an unsalted hash of a phone number is easy to reverse; prefer a keyed one).
type Contact struct {
	ID        uint32
	PhoneHash string
	Country   string
	TZ        string
	Locale    string
	Tags      []string
	UpdatedAt time.Time // the newest row of a contact wins
}

var contactColumns = []string{"contact_id", "phone_hash", "country", "tz", "locale", "tags", "updated_at"}

// WriteContacts inserts contacts in one batch. Writing a contact again with a later
// UpdatedAt replaces it (ReplacingMergeTree(updated_at)); read with FINAL or argMax over
// updated_at to see only the newest row before merges happen.
func WriteContacts(ctx context.Context, conn driver.Conn, contacts []Contact) error {
	if len(contacts) == 0 {
		return nil
	}
	var (
		ids                    = make([]uint32, len(contacts))
		phone, country, tz, lc = make([]string, len(contacts)), make([]string, len(contacts)), make([]string, len(contacts)), make([]string, len(contacts))
		tags                   = make([][]string, len(contacts))
		updated                = make([]time.Time, len(contacts))
	)
	for i, c := range contacts {
		if err := checkTime(c.UpdatedAt); err != nil {
			return fmt.Errorf("write contacts: contact %d: updated_at: %w", c.ID, err)
		}
		ids[i], phone[i], country[i], tz[i], lc[i] = c.ID, c.PhoneHash, c.Country, c.TZ, c.Locale
		tags[i] = c.Tags
		if tags[i] == nil {
			tags[i] = []string{}
		}
		updated[i] = c.UpdatedAt.UTC()
	}
	if err := insertColumns(ctx, conn, "contacts", contactColumns, []any{ids, phone, country, tz, lc, tags, updated}); err != nil {
		return fmt.Errorf("write contacts: %w", err)
	}
	return nil
}
