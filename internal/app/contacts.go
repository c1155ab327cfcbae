package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// ImportOptions configure a contacts import.
type ImportOptions struct {
	Format        string            // csv (default) or jsonl
	DefaultRegion string            // for national numbers without +CC
	Purpose       string            // consent purpose the opted_in column speaks for (marketing)
	Source        string            // file name, recorded as the consent proof with the line
	AddTags       []string          // tags added to every row
	RemoveTags    []string          // tags taken off every row's contact
	Columns       map[string]string // file column → field (segments.ImportOptions.Columns)
	Progress      func(rows, bytes int64)
}

// ImportContacts imports a CSV or JSON Lines file into the contact store and hands its
// opted_in values to the consent ledger (herald.consent first, then Redis).
func ImportContacts(ctx context.Context, d *Deps, r io.Reader, o ImportOptions) (segments.ImportReport, error) {
	comp, err := d.Components()
	if err != nil {
		return segments.ImportReport{}, err
	}
	if o.Purpose == "" {
		o.Purpose = "marketing"
	}
	if comp.Ledger == nil {
		return segments.ImportReport{}, errors.New("contacts import: the consent ledger is a Kafka topic: set HERALD_KAFKA_BROKERS")
	}
	so := segments.ImportOptions{
		DefaultRegion: o.DefaultRegion, Source: o.Source, AddTags: o.AddTags, RemoveTags: o.RemoveTags, Columns: o.Columns, Progress: o.Progress,
		Consent: importConsent{ledger: comp.Ledger, purpose: o.Purpose, source: o.Source},
	}
	switch o.Format {
	case "", "csv":
		return comp.Contacts.ImportCSV(ctx, r, so)
	case "jsonl":
		return comp.Contacts.ImportJSONL(ctx, r, so)
	default:
		return segments.ImportReport{}, fmt.Errorf("contacts import: format %q: want csv or jsonl", o.Format)
	}
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

// Channels are the channels consent and suppression are kept for.
var Channels = []string{"whatsapp", "sms", "email", "telegram", "line"}

// EraseContact erases a contact found by phone or email: its tombstone goes to the
// consent ledger first (a revoke of each purpose on every channel, by contact id),
// then the contact leaves Redis (profile, identities, bits) and its suppressions are
// lifted. It returns an error wrapping segments.ErrNotFound for an unknown contact.
func EraseContact(ctx context.Context, comp *Components, phoneOrEmail string, purposes []string) (segments.Erased, error) {
	er, err := comp.Contacts.EraseContact(ctx, phoneOrEmail, ledgerErasure{ledger: comp.Ledger, purposes: purposes})
	if err != nil {
		return er, err
	}
	return er, unsuppressErased(ctx, comp, er)
}

// EraseContactID erases the contact with id as EraseContact does (the API's
// DELETE /v1/contacts/{id}); an unknown id is an error wrapping segments.ErrNotFound,
// and nothing is recorded.
func EraseContactID(ctx context.Context, comp *Components, id uint32, purposes []string) (segments.Erased, error) {
	if len(purposes) == 0 {
		purposes = ErasePurposes
	}
	for i, p := range purposes {
		if p != "marketing" && p != "utility" {
			return segments.Erased{}, fieldErr(fmt.Sprintf("purpose/%d", i), "purpose %q: want marketing or utility", p)
		}
	}
	er, err := comp.Contacts.EraseContactID(ctx, id, ledgerErasure{ledger: comp.Ledger, purposes: purposes})
	if err != nil {
		return er, err
	}
	return er, unsuppressErased(ctx, comp, er)
}

// ErasePurposes are the consent purposes an erasure revokes unless told otherwise.
var ErasePurposes = []string{"marketing", "utility"}

// FindContact returns the id of the contact with an identity: a phone number, an email
// address, telegram:<chat id> or line:<user id> (an error wrapping segments.ErrNotFound
// when none has it).
func FindContact(ctx context.Context, comp *Components, identity string) (uint32, error) {
	return comp.Contacts.Lookup(ctx, identity)
}

// unsuppressErased lifts an erased contact's suppressions on every channel.
func unsuppressErased(ctx context.Context, comp *Components, er segments.Erased) error {
	for _, ch := range Channels {
		if err := comp.Policy.Unsuppress(ctx, ch, []uint32{er.ContactID}); err != nil {
			return err
		}
	}
	return nil
}

// ledgerErasure writes an erased contact's tombstone to the consent ledger: a revoke of
// each purpose on every channel, by contact id.
type ledgerErasure struct {
	ledger   *throttle.Ledger
	purposes []string
}

func (l ledgerErasure) RecordErasure(ctx context.Context, id uint32) error {
	if l.ledger == nil {
		return errors.New("no consent ledger (Kafka is not configured)")
	}
	var ch []throttle.Change
	for _, channel := range Channels {
		for _, p := range l.purposes {
			ch = append(ch, throttle.Change{ContactID: id, Channel: channel, Purpose: p, Action: events.Revoke,
				Source: "erasure", Actor: "herald contacts erase", Proof: "contact erased"})
		}
	}
	_, err := l.ledger.Apply(ctx, ch, true)
	return err
}
