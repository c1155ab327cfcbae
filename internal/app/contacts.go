package app

import (
	"context"
	"fmt"
	"io"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// ImportOptions configure a contacts import.
type ImportOptions struct {
	DefaultRegion string   // for national numbers without +CC
	Purpose       string   // consent purpose the opted_in column speaks for (marketing)
	Source        string   // file name, recorded as the consent proof with the line
	AddTags       []string // tags added to every row
	Progress      func(rows, bytes int64)
}

// ImportContacts imports a CSV into the contact store and hands its opted_in column to
// the consent ledger (herald.consent first, then Redis).
func ImportContacts(ctx context.Context, d *Deps, r io.Reader, o ImportOptions) (segments.ImportReport, error) {
	comp, err := d.Components()
	if err != nil {
		return segments.ImportReport{}, err
	}
	if o.Purpose == "" {
		o.Purpose = "marketing"
	}
	return comp.Contacts.ImportCSV(ctx, r, segments.ImportOptions{
		DefaultRegion: o.DefaultRegion, Source: o.Source, AddTags: o.AddTags, Progress: o.Progress,
		Consent: importConsent{ledger: comp.Ledger, purpose: o.Purpose, source: o.Source},
	})
}

// importConsent turns an import's opted_in values into ledger changes.
type importConsent struct {
	ledger  *throttle.Ledger
	purpose string
	source  string
}

func (c importConsent) ImportConsent(ctx context.Context, rows []segments.ConsentRow) error {
	changes := make([]throttle.Change, 0, len(rows))
	for _, r := range rows {
		a := events.Revoke
		if r.OptedIn {
			a = events.Grant
		}
		changes = append(changes, throttle.Change{ContactID: r.ContactID, Channel: "whatsapp", Purpose: c.purpose, Action: a,
			Source: "import", Proof: fmt.Sprintf("%s:%d", c.source, r.Line), Actor: "herald contacts import"})
	}
	_, err := c.ledger.Apply(ctx, changes, false)
	return err
}
