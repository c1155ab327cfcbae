package segments

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Channel identities: a Telegram chat id and a LINE user id link to a contact like
// its phone and email do (the same bucketed index, under the same hash tag), so an
// import, LinkIdentity or an inbound message finds one contact by any of them.

// ErrUnknownContact is returned (wrapped) when no contact has the identity looked up.
// It is ErrNotFound, under the name the channel adapters use.
var ErrUnknownContact = ErrNotFound

// ErrIdentityTaken is returned (wrapped) by LinkIdentity when the Telegram chat id or
// LINE user id already belongs to another contact.
var ErrIdentityTaken = errors.New("the identity belongs to another contact")

// Reasons of the rejects of bad channel identities (import rows).
var (
	errTelegramID = errors.New("invalid telegram chat id")
	errLineID     = errors.New("invalid LINE user id")
)

// identError is a bad channel identity: its reason (errTelegramID, errLineID), the
// value, and what to do.
type identError struct {
	reason      error
	value, hint string
}

func (e *identError) Error() string { return fmt.Sprintf("%v %q: %s", e.reason, e.value, e.hint) }
func (e *identError) Unwrap() error { return e.reason }

// normTelegram checks a Telegram chat id: a non-zero signed 64-bit integer in
// decimal, surrounding spaces trimmed. A private chat's id (a user's) is positive; a
// group's, supergroup's or channel's is negative (supergroups and channels -100…):
// both are accepted. Anything else is refused rather than guessed at: a leading "+"
// (a phone number in the wrong column), leading zeros, digit separators, decimals,
// and the scientific notation Excel shortens long numbers to (1.23457E+11), whose
// lost digits cannot be recovered.
func normTelegram(s string) (string, error) {
	s = strings.TrimSpace(s)
	if v, ok := canonicalInt(s); ok {
		return strconv.FormatInt(v, 10), nil
	}
	switch {
	case s == "":
		return "", &identError{errTelegramID, s, "empty"}
	case strings.ContainsAny(s, "eE") && strings.ContainsAny(s, ".+"):
		return "", &identError{errTelegramID, s, "a number in scientific notation (Excel shortens long numbers so and drops their last digits): format the column as Text and export the file again"}
	case s[0] == '+':
		return "", &identError{errTelegramID, s, "a chat id has no \"+\" (is it a phone number? put phone numbers in the phone column)"}
	}
	return "", &identError{errTelegramID, s, "write the chat id as its digits, such as 123456789 (a group's starts with -)"}
}

// normLine checks a LINE user id: "U" and 32 hex digits, surrounding spaces trimmed.
// LINE writes the digits in lower case, so an id a spreadsheet upper-cased has one
// original: it is lower-cased back ("UABC…" and "uabc…" are accepted as "Uabc…").
// Group (C…) and room (R…) ids are refused: they are not contacts.
func normLine(s string) (string, error) {
	s = strings.TrimSpace(s)
	if _, ok := lineHex(s); ok {
		return s, nil
	}
	if len(s) == 33 && (s[0] == 'U' || s[0] == 'u') {
		l := "U" + strings.ToLower(s[1:])
		if _, ok := lineHex(l); ok {
			return l, nil
		}
	}
	if len(s) == 33 && (s[0] == 'C' || s[0] == 'R') {
		return "", &identError{errLineID, s, "a group or room id, not a user's: a LINE user id starts with U"}
	}
	return "", &identError{errLineID, s, "a LINE user id is U and 32 hex digits, such as U4af4980629d8ef6e1cc5d5a27e6bf99c"}
}

// identityKind is the index kind of a channel: telegram, line; whatsapp and sms (the
// phone), email.
func identityKind(channel string) (int, error) {
	switch strings.ToLower(strings.TrimSpace(channel)) {
	case "telegram":
		return idTelegram, nil
	case "line":
		return idLine, nil
	case "whatsapp", "sms", "phone":
		return idPhone, nil
	case "email":
		return idEmail, nil
	}
	return 0, fmt.Errorf("channel %q: want telegram, line, whatsapp, sms or email", channel)
}

// normIdentity normalizes an identity of a kind.
func normIdentity(kind int, v string) (string, error) {
	switch kind {
	case idTelegram:
		return normTelegram(v)
	case idLine:
		return normLine(v)
	case idEmail:
		return normEmail(v)
	}
	cands, err := waPhone(v) // E.164, or digits as WhatsApp's wa_id
	if err != nil {
		return "", err
	}
	p, err := parsePhone(cands[0], "")
	return p.E164, err
}

// LookupIdentity returns the id of the contact a channel's identity belongs to:
// channel "telegram" takes a chat id, "line" a user id, "whatsapp" and "sms" a phone
// number (as LookupPhone takes it), "email" an address. It returns 0 and an error
// wrapping ErrUnknownContact when no contact has it, or when id is not a valid
// identity of the channel; an unknown channel is an error of its own.
func (s *Store) LookupIdentity(ctx context.Context, channel, id string) (uint32, error) {
	kind, err := identityKind(channel)
	if err != nil {
		return 0, fmt.Errorf("look up identity: %w", err)
	}
	switch kind {
	case idPhone:
		return s.LookupPhone(ctx, id)
	case idEmail:
		return s.LookupEmail(ctx, id)
	}
	v, err := normIdentity(kind, id)
	if err != nil {
		return 0, fmt.Errorf("look up %s %q: %v: %w", channel, id, err, ErrUnknownContact)
	}
	if err := s.upgradeKeys(ctx); err != nil {
		return 0, err
	}
	var x identity
	x.set(kind, v)
	known, err := s.lookupIdentities(ctx, []identity{x})
	if err != nil {
		return 0, fmt.Errorf("look up %s %q: %w", channel, id, err)
	}
	if c := known.by[kind][v]; c != 0 {
		return c, nil
	}
	return 0, fmt.Errorf("look up %s %q: %w", channel, id, ErrUnknownContact)
}

func (x *identity) set(kind int, v string) {
	switch kind {
	case idPhone:
		x.phone = v
	case idEmail:
		x.email = v
	case idTelegram:
		x.telegram = v
	default:
		x.line = v
	}
}

// claimScript links an identity to a contact in place of the contact's previous one
// of that kind, atomically: KEYS[1] is the new identity's index bucket, KEYS[2] the
// previous one's (any bucket of the kind when there is none); ARGV the identity, the
// contact id and the previous identity ("" for none). It returns the id of the
// contact that already has the identity (nothing is changed), or 0 once the identity
// names the contact and the previous one, if it still named the contact, is removed.
const claimScript = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cur ~= ARGV[2] then return tonumber(cur) end
if not cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
if ARGV[3] ~= '' and ARGV[3] ~= ARGV[1] and redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[3])
end
return 0
`

// maxLinkAttempts bounds how often LinkIdentity writes a profile record another
// writer changed meanwhile.
const maxLinkAttempts = 20

// LinkIdentity attaches a Telegram chat id (channel "telegram") or a LINE user id
// ("line") to an existing contact, as when a Telegram /start payload or a LINE follow
// names the contact. It replaces the contact's previous id on that channel: in one
// script on the identity index, the new id is linked and the previous one stops
// finding the contact; then the profile record takes the new id (a compare-and-set,
// merged again if another writer changed the record meanwhile). A run cut short
// between the two leaves the index ahead of the record; linking again completes it.
// It is idempotent when the id already belongs to the contact, refuses with an error
// wrapping ErrIdentityTaken when the id belongs to another contact, and with one
// wrapping ErrUnknownContact when the contact does not exist. Phones and emails are
// changed by Upsert or an import, not here.
func (s *Store) LinkIdentity(ctx context.Context, contact uint32, channel, id string) error {
	kind, err := identityKind(channel)
	if err != nil {
		return fmt.Errorf("link identity: %w", err)
	}
	if kind != idTelegram && kind != idLine {
		return fmt.Errorf("link identity: channel %q: LinkIdentity takes telegram or line; change a phone or email with Upsert", channel)
	}
	v, err := normIdentity(kind, id)
	if err != nil {
		return fmt.Errorf("link %s to contact %d: %w", channel, contact, err)
	}
	if err := s.upgradeKeys(ctx); err != nil {
		return err
	}
	field := identFields[kind]
	cw := &contactWrite{id: contact}
	read := func() error {
		pipe := s.rdb.Pipeline()
		recs := s.queueRecords(ctx, pipe, []*contactWrite{cw}, s.layout.legacy.Load())
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("link %s to contact %d: read the profile: %w", channel, contact, err)
		}
		return recs.read()
	}
	if err := read(); err != nil {
		return err
	}
	if !cw.before.exists() {
		return fmt.Errorf("link %s to contact %d: %w", channel, contact, ErrUnknownContact)
	}
	prev := cw.before.get(field)
	owner, err := s.rdb.Eval(ctx, claimScript, []string{s.kIdent(kind, v), s.kIdent(kind, prev)}, v, contact, prev).Int64()
	if err != nil {
		return fmt.Errorf("link %s to contact %d: %w", channel, contact, err)
	}
	if owner != 0 {
		return fmt.Errorf("link %s %s to contact %d: contact %d has it: %w", channel, v, contact, owner, ErrIdentityTaken)
	}
	for range maxLinkAttempts {
		if !cw.before.exists() {
			// Erased meanwhile: the new entry must not find a contact that is gone.
			if err := s.rdb.Eval(ctx, unlinkScript, []string{s.kIdent(kind, v)}, v, contact).Err(); err != nil {
				return fmt.Errorf("link %s to contact %d (erased meanwhile): unlink %s: %w", channel, contact, v, err)
			}
			return fmt.Errorf("link %s to contact %d: %w", channel, contact, ErrUnknownContact)
		}
		cur := cw.before.get(field)
		if cur == v && !cw.old {
			return nil
		}
		after := cw.before.clone()
		after.set(field, v)
		rec := encodeRecord(&after)
		failed, err := s.rdb.Eval(ctx, putScript, []string{s.kProfiles(profileBucketOf(contact))}, contact, cw.stored, rec).Int64Slice()
		if err != nil {
			return fmt.Errorf("link %s to contact %d: write the profile: %w", channel, contact, err)
		}
		if len(failed) == 0 {
			if cw.old {
				if err := s.rdb.Del(ctx, s.kContactOld(contact)).Err(); err != nil {
					return fmt.Errorf("link %s to contact %d: %w", channel, contact, err)
				}
			}
			if cur != "" && cur != v && cur != prev {
				// Another writer gave the contact an id meanwhile, replaced now.
				if err := s.rdb.Eval(ctx, unlinkScript, []string{s.kIdent(kind, cur)}, cur, contact).Err(); err != nil {
					return fmt.Errorf("link %s to contact %d: unlink %s: %w", channel, contact, cur, err)
				}
			}
			return nil
		}
		if err := read(); err != nil {
			return err
		}
	}
	return fmt.Errorf("link %s to contact %d: the profile kept changing under %d attempts", channel, contact, maxLinkAttempts)
}

// CreateWithIdentity returns the contact a channel's identity belongs to, creating it
// when there is none: an inbound Telegram /start or LINE follow from someone unknown
// makes a contact known by that id only. It is Upsert of c with the identity set
// (channel "telegram", "line", "whatsapp", "sms" or "email", as LookupIdentity takes
// them), so a contact that already has the identity is updated with c's non-empty
// fields instead, and calling it twice creates one contact. c's other identities, if
// any, must not belong to another contact (ErrIdentityConflict). The contact's
// source, when created, is the channel's name.
func (s *Store) CreateWithIdentity(ctx context.Context, channel, id string, c Contact) (uint32, error) {
	kind, err := identityKind(channel)
	if err != nil {
		return 0, fmt.Errorf("create contact: %w", err)
	}
	v, err := normIdentity(kind, id)
	if err != nil {
		return 0, fmt.Errorf("create contact by %s: %w", channel, err)
	}
	dst := [idKinds]*string{&c.Phone, &c.Email, &c.TelegramChatID, &c.LineUserID}[kind]
	if cur := strings.TrimSpace(*dst); cur != "" {
		if w, err := normIdentity(kind, cur); err != nil || w != v {
			return 0, fmt.Errorf("create contact by %s %s: the contact given has another %s, %q", channel, v, channel, cur)
		}
	}
	*dst = v
	source := strings.ToLower(strings.TrimSpace(channel))
	ids, err := s.upsert(ctx, []Contact{c}, source)
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// lookupPrefixed finds a contact by "telegram:<chat id>" or "line:<user id>"; ok is
// false when s has neither prefix.
func (s *Store) lookupPrefixed(ctx context.Context, x string) (id uint32, ok bool, err error) {
	for _, ch := range []string{"telegram", "line"} {
		if v, found := cutPrefixFold(strings.TrimSpace(x), ch+":"); found {
			id, err := s.LookupIdentity(ctx, ch, v)
			return id, true, err
		}
	}
	return 0, false, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && bytes.EqualFold([]byte(s[:len(prefix)]), []byte(prefix)) {
		return s[len(prefix):], true
	}
	return s, false
}
