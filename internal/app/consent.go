package app

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// ContactRef names a contact by id, phone or email (the first one set, in that order).
type ContactRef struct {
	ID    uint32
	Phone string
	Email string
}

// ResolveContact returns the id of the contact ref names. An unknown contact is a
// *FieldError (contact_id, phone or email) wrapping segments.ErrNotFound.
func ResolveContact(ctx context.Context, comp *Components, ref ContactRef) (uint32, error) {
	switch {
	case ref.ID != 0:
		ps, err := comp.Contacts.ProfileFields(ctx, []uint32{ref.ID})
		if err != nil {
			return 0, err
		}
		if len(ps) != 1 || ps[0].ID == 0 {
			return 0, &FieldError{Field: "contact_id", Err: fmt.Errorf("contact %d: %w", ref.ID, segments.ErrNotFound)}
		}
		return ref.ID, nil
	case ref.Phone != "":
		id, err := comp.Contacts.LookupPhone(ctx, ref.Phone)
		if errors.Is(err, segments.ErrNotFound) {
			return 0, &FieldError{Field: "phone", Err: fmt.Errorf("%w (import the contact first)", err)}
		}
		return id, err
	case ref.Email != "":
		id, err := comp.Contacts.LookupEmail(ctx, ref.Email)
		if errors.Is(err, segments.ErrNotFound) {
			return 0, &FieldError{Field: "email", Err: fmt.Errorf("%w (import the contact first)", err)}
		}
		return id, err
	}
	return 0, fieldErr("contact_id", "name the contact: contact_id, phone or email")
}

var purposeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// ChangeConsent records a grant or revoke for the contact ref names: in the ledger
// topic first, then in the Redis state the workers read. A change that changes nothing
// (a grant to a contact who has it) records nothing and returns no record. ch's
// ContactID is filled in from ref; refused input is a *FieldError.
func ChangeConsent(ctx context.Context, comp *Components, ref ContactRef, ch throttle.Change) ([]events.ConsentRecord, error) {
	if comp.Ledger == nil {
		return nil, errors.New("the consent ledger is a Kafka topic: set --kafka-brokers or HERALD_KAFKA_BROKERS")
	}
	if !slices.Contains(Channels, ch.Channel) {
		return nil, fieldErr("channel", "channel %q: want one of %s", ch.Channel, strings.Join(Channels, ", "))
	}
	if !purposeRE.MatchString(ch.Purpose) {
		return nil, fieldErr("purpose", "purpose %q: want a lower-case word such as marketing or utility", ch.Purpose)
	}
	if ch.Action != events.Grant && ch.Action != events.Revoke {
		return nil, fieldErr("action", "action %q: want grant or revoke", ch.Action)
	}
	if ch.Source == "" {
		return nil, fieldErr("source", "source is required: where the consent was collected (web_form, keyword, import, api, paper…)")
	}
	if !ch.Time.IsZero() && ch.Time.After(time.Now().Add(time.Minute)) {
		return nil, fieldErr("at", "at %s is in the future", ch.Time.UTC().Format(time.RFC3339))
	}
	id, err := ResolveContact(ctx, comp, ref)
	if err != nil {
		return nil, err
	}
	ch.ContactID = id
	recs, err := comp.Ledger.Apply(ctx, []throttle.Change{ch}, false)
	if err != nil {
		return nil, err
	}
	if recs == nil {
		recs = []events.ConsentRecord{}
	}
	return recs, nil
}

// ConsentRow is a contact's consent for a channel and purpose, and the ledger record it
// rests on (none: never granted nor revoked).
type ConsentRow struct {
	ContactID uint32 `json:"contact_id"`
	Channel   string `json:"channel"`
	Purpose   string `json:"purpose"`
	Granted   bool   `json:"granted"`
	RecordID  string `json:"record_id,omitempty"`
	// Suppression keeps the contact off the channel for a while whatever its consent
	// (the provider could not reach it: undeliverable); absent when none is in force.
	Suppression *throttle.Suppression `json:"suppression,omitempty"`
}

// ContactConsent returns a contact's consent on each channel for each purpose, with
// the channel's suppression when one is in force.
func ContactConsent(ctx context.Context, comp *Components, id uint32, channels, purposes []string) ([]ConsentRow, error) {
	rows := []ConsentRow{}
	for _, ch := range channels {
		if !slices.Contains(Channels, ch) {
			return nil, fieldErr("channel", "channel %q: want one of %s", ch, strings.Join(Channels, ", "))
		}
		sups, err := comp.Policy.Suppressions(ctx, ch, []uint32{id})
		if err != nil {
			return nil, err
		}
		var sup *throttle.Suppression
		if sups[0].Active(time.Now()) {
			sup = &sups[0]
		}
		for _, p := range purposes {
			if !purposeRE.MatchString(p) {
				return nil, fieldErr("purpose", "purpose %q: want a lower-case word such as marketing or utility", p)
			}
			st, err := comp.Policy.Consent(ctx, ch, p, []uint32{id})
			if err != nil {
				return nil, err
			}
			rows = append(rows, ConsentRow{ContactID: id, Channel: ch, Purpose: p, Granted: st[0].Granted, RecordID: st[0].RecordID, Suppression: sup})
		}
	}
	return rows, nil
}

// GetContact returns a contact's profile, or an error wrapping segments.ErrNotFound.
func GetContact(ctx context.Context, comp *Components, id uint32) (segments.Contact, error) {
	ps, err := comp.Contacts.Profiles(ctx, []uint32{id})
	if err != nil {
		return segments.Contact{}, err
	}
	if len(ps) != 1 || ps[0].ID == 0 {
		return segments.Contact{}, fmt.Errorf("contact %d: %w", id, segments.ErrNotFound)
	}
	return ps[0], nil
}

// contactFieldErr turns what segments refuses in a contact into a *FieldError whose
// Field is the path of the offending value (phone, tags/2, attributes/plan).
func contactFieldErr(err error) error {
	var ce *segments.ContactError
	if !errors.As(err, &ce) {
		return err
	}
	f := ce.Field
	switch {
	case ce.Index >= 0:
		f += "/" + strconv.Itoa(ce.Index)
	case ce.Key != "":
		f += "/" + ce.Key
	}
	return &FieldError{Field: f, Err: ce.Err}
}

// UpsertContact creates or updates one contact found by its phone or email (as an
// import row does: empty fields leave stored values alone, tags are added) and returns
// it as stored, and whether it was created. Refused input is a *FieldError; a phone and
// email of two different contacts an error wrapping segments.ErrIdentityConflict.
func UpsertContact(ctx context.Context, comp *Components, c segments.Contact) (segments.Contact, bool, error) {
	c.ID = 0
	if err := c.Validate(); err != nil {
		return segments.Contact{}, false, contactFieldErr(err)
	}
	existed := false
	if c.Phone != "" {
		if _, err := comp.Contacts.LookupPhone(ctx, c.Phone); err == nil {
			existed = true
		}
	}
	if !existed && c.Email != "" {
		if _, err := comp.Contacts.LookupEmail(ctx, c.Email); err == nil {
			existed = true
		}
	}
	for _, x := range [][2]string{{"telegram", c.TelegramChatID}, {"line", c.LineUserID}} {
		if !existed && x[1] != "" {
			if _, err := comp.Contacts.LookupIdentity(ctx, x[0], x[1]); err == nil {
				existed = true
			}
		}
	}
	ids, err := comp.Contacts.Upsert(ctx, []segments.Contact{c})
	if errors.Is(err, segments.ErrIdentityConflict) {
		f, _ := conflictField(c)
		return segments.Contact{}, false, &FieldError{Field: f, Err: err}
	}
	if err != nil {
		return segments.Contact{}, false, err
	}
	got, err := GetContact(ctx, comp, ids[0])
	return got, !existed, err
}

// UpdateContact updates the contact with id (an error wrapping segments.ErrNotFound
// when there is none) as UpsertContact would. The body may give a new phone or email
// only while the contact keeps the other, which still finds it; a phone or email of
// another contact is an error wrapping segments.ErrIdentityConflict, and nothing is
// written.
func UpdateContact(ctx context.Context, comp *Components, id uint32, c segments.Contact) (segments.Contact, error) {
	stored, err := GetContact(ctx, comp, id)
	if err != nil {
		return segments.Contact{}, err
	}
	c.ID = 0
	if err := c.Validate(); err != nil && !(c.Phone == "" && c.Email == "" && c.TelegramChatID == "" && c.LineUserID == "") {
		return segments.Contact{}, contactFieldErr(err)
	}
	samePhone, sameEmail := c.Phone == "", c.Email == ""
	if c.Phone != "" {
		other, err := comp.Contacts.LookupPhone(ctx, c.Phone)
		switch {
		case err == nil && other != id:
			return segments.Contact{}, &FieldError{Field: "phone", Err: fmt.Errorf("phone %s is contact %d's: %w", c.Phone, other, segments.ErrIdentityConflict)}
		case err == nil:
			samePhone = true
		case !errors.Is(err, segments.ErrNotFound):
			return segments.Contact{}, err
		}
	}
	if c.Email != "" {
		other, err := comp.Contacts.LookupEmail(ctx, c.Email)
		switch {
		case err == nil && other != id:
			return segments.Contact{}, &FieldError{Field: "email", Err: fmt.Errorf("email %s is contact %d's: %w", c.Email, other, segments.ErrIdentityConflict)}
		case err == nil:
			sameEmail = true
		case !errors.Is(err, segments.ErrNotFound):
			return segments.Contact{}, err
		}
	}
	// Telegram chat ids and LINE user ids, likewise.
	sameTelegram, sameLine := c.TelegramChatID == "", c.LineUserID == ""
	for _, x := range []struct {
		channel, field, v string
		same              *bool
	}{{"telegram", "telegram_chat_id", c.TelegramChatID, &sameTelegram}, {"line", "line_user_id", c.LineUserID, &sameLine}} {
		if x.v == "" {
			continue
		}
		other, err := comp.Contacts.LookupIdentity(ctx, x.channel, x.v)
		switch {
		case err == nil && other != id:
			return segments.Contact{}, &FieldError{Field: x.field, Err: fmt.Errorf("%s %s is contact %d's: %w", x.field, x.v, other, segments.ErrIdentityConflict)}
		case err == nil:
			*x.same = true
		case !errors.Is(err, segments.ErrNotFound):
			return segments.Contact{}, err
		}
	}
	// The row must still find this contact by an identity it keeps.
	anchored := (samePhone && stored.Phone != "") || (sameEmail && stored.Email != "") ||
		(sameTelegram && stored.TelegramChatID != "") || (sameLine && stored.LineUserID != "")
	if !anchored {
		field := "phone"
		if c.Phone == "" {
			field, _ = conflictField(c)
		}
		return segments.Contact{}, fieldErr(field, "contact %d would keep none of its identities (phone, email, telegram_chat_id, line_user_id): change one at a time", id)
	}
	if c.Phone == "" {
		c.Phone = stored.Phone
	}
	if c.Email == "" {
		c.Email = stored.Email
	}
	if c.TelegramChatID == "" {
		c.TelegramChatID = stored.TelegramChatID
	}
	if c.LineUserID == "" {
		c.LineUserID = stored.LineUserID
	}
	if err := c.Validate(); err != nil {
		return segments.Contact{}, contactFieldErr(err)
	}
	ids, err := comp.Contacts.Upsert(ctx, []segments.Contact{c})
	if err != nil {
		if errors.Is(err, segments.ErrIdentityConflict) {
			f, _ := conflictField(c)
			return segments.Contact{}, &FieldError{Field: f, Err: err}
		}
		return segments.Contact{}, err
	}
	if ids[0] != id {
		return segments.Contact{}, fmt.Errorf("update contact %d: the write went to contact %d", id, ids[0])
	}
	return GetContact(ctx, comp, id)
}

// BulkReject is a contact of a bulk upsert that was not written.
type BulkReject struct {
	Index  int    `json:"index"`           // its position in the request's list, from 0
	Field  string `json:"field"`           // the offending field's path within it (phone, tags/2)
	Reason string `json:"reason"`          // what was wrong
	Value  string `json:"value,omitempty"` // the offending value, when it is a string
}

// BulkUpsertResult tells what a bulk upsert did with each contact: ContactIDs[i] is
// the id of contact i, 0 when it was rejected.
type BulkUpsertResult struct {
	Received   int          `json:"received"`
	Upserted   int          `json:"upserted"`
	Rejected   int          `json:"rejected"`
	ContactIDs []uint32     `json:"contact_ids"`
	Rejects    []BulkReject `json:"rejects"`
}

// UpsertContacts upserts many contacts as UpsertContact does, each on its own: an
// invalid contact, or one whose phone and email belong to two different contacts, is
// rejected with its index and changes nothing, and the others are written.
func UpsertContacts(ctx context.Context, comp *Components, cs []segments.Contact) (BulkUpsertResult, error) {
	res := BulkUpsertResult{Received: len(cs), ContactIDs: make([]uint32, len(cs)), Rejects: []BulkReject{}}
	valid := make([]segments.Contact, 0, len(cs))
	index := make([]int, 0, len(cs))
	for i, c := range cs {
		c.ID = 0
		if err := c.Validate(); err != nil {
			var fe *FieldError
			if errors.As(contactFieldErr(err), &fe) {
				res.Rejects = append(res.Rejects, BulkReject{Index: i, Field: fe.Field, Reason: fe.Err.Error(), Value: contactValue(c, fe.Field)})
				continue
			}
			return res, err
		}
		valid = append(valid, c)
		index = append(index, i)
	}
	ids, err := comp.Contacts.Upsert(ctx, valid)
	if err != nil && !errors.Is(err, segments.ErrIdentityConflict) {
		return res, err
	}
	for j, id := range ids {
		i := index[j]
		if id == 0 {
			f, v := conflictField(cs[i])
			res.Rejects = append(res.Rejects, BulkReject{Index: i, Field: f, Reason: segments.ErrIdentityConflict.Error(), Value: v})
			continue
		}
		res.ContactIDs[i] = id
		res.Upserted++
	}
	slices.SortFunc(res.Rejects, func(a, b BulkReject) int { return a.Index - b.Index })
	res.Rejected = len(res.Rejects)
	return res, nil
}

// conflictField is the field a conflict of a contact's identities is reported on: its
// email when it has one (the phone's owner being the usual anchor), else its
// Telegram chat id or LINE user id.
func conflictField(c segments.Contact) (field, value string) {
	switch {
	case c.Email != "" || c.TelegramChatID == "" && c.LineUserID == "":
		return "email", c.Email
	case c.TelegramChatID != "":
		return "telegram_chat_id", c.TelegramChatID
	}
	return "line_user_id", c.LineUserID
}

func contactValue(c segments.Contact, field string) string {
	switch field {
	case "telegram_chat_id":
		return c.TelegramChatID
	case "line_user_id":
		return c.LineUserID
	case "phone":
		return c.Phone
	case "email":
		return c.Email
	case "country":
		return c.Country
	case "locale":
		return c.Locale
	case "timezone":
		return c.TimeZone
	}
	return ""
}
