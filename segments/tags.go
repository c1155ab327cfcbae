package segments

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"
)

// tagBatch is how many contacts one pipeline of tag changes covers.
const tagBatch = 2000

// TagChange is what TagContacts did.
type TagChange struct {
	Tag     string `json:"tag"`
	Added   bool   `json:"added"`   // false: removed
	Matched uint64 `json:"matched"` // live contacts among those given
	Changed uint64 `json:"changed"` // of them, those whose membership changed
}

// TagContacts adds tag to (add true) or removes it from the live contacts among ids,
// in pipelines of 2,000 contacts: the bitmap holds a contact's tags, so each contact's
// change is one SETBIT, and a concurrent import or evaluation sees a contact either
// before or after; a run cut short is completed by running it again.
func (s *Store) TagContacts(ctx context.Context, tag string, ids *roaring.Bitmap, add bool) (TagChange, error) {
	return s.TagContactsProgress(ctx, tag, ids, add, nil)
}

// TagContactsProgress is TagContacts calling progress (when not nil) after each
// pipeline with the contacts done and the live contacts to do.
func (s *Store) TagContactsProgress(ctx context.Context, tag string, ids *roaring.Bitmap, add bool, progress func(done, total uint64)) (TagChange, error) {
	t, err := normTag(tag)
	if err != nil {
		return TagChange{}, err
	}
	ch := TagChange{Tag: t, Added: add}
	allBytes, err := s.rdb.Get(ctx, s.kAll()).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return ch, fmt.Errorf("tag contacts: read contacts: %w", err)
	}
	live := roaring.And(ids, bitmapFromRedis(allBytes))
	ch.Matched = live.GetCardinality()
	if ch.Matched == 0 {
		return ch, nil
	}
	if add {
		if err := s.rdb.SAdd(ctx, s.kTags(), t).Err(); err != nil {
			return ch, fmt.Errorf("tag contacts: %w", err)
		}
	}
	bit := 0
	if add {
		bit = 1
	}
	it := live.ManyIterator()
	buf := make([]uint32, tagBatch)
	var done uint64
	for {
		if err := ctx.Err(); err != nil {
			return ch, err
		}
		n := it.NextMany(buf)
		if n == 0 {
			return ch, nil
		}
		pipe := s.rdb.Pipeline()
		olds := make([]*redis.IntCmd, n)
		for i, id := range buf[:n] {
			olds[i] = pipe.SetBit(ctx, s.kTag(t), int64(id), bit)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return ch, fmt.Errorf("tag contacts: %w", err)
		}
		var flipped []uint32
		for i, o := range olds {
			if int(o.Val()) != bit {
				ch.Changed++
				if s.tagHook != nil {
					flipped = append(flipped, buf[i])
				}
			}
		}
		if len(flipped) > 0 {
			s.tagHook(ctx, t, add, flipped)
		}
		done += uint64(n)
		if progress != nil {
			progress(done, ch.Matched)
		}
	}
}

// PhoneIDs returns the ids of the contacts with the given phone numbers (E.164, or
// national in region), email addresses (an entry with "@"), Telegram chat ids
// ("telegram:<chat id>") or LINE user ids ("line:<user id>"), and the entries that are
// invalid or belong to no contact, as Rejects with Line the position in phones
// (1-based).
func (s *Store) PhoneIDs(ctx context.Context, phones []string, region string) (*roaring.Bitmap, []Reject, error) {
	region = strings.ToUpper(strings.TrimSpace(region))
	if region != "" && !knownRegion(region) {
		return nil, nil, fmt.Errorf("region %q is not a two-letter ISO 3166 code such as TH", region)
	}
	if err := s.upgradeKeys(ctx); err != nil {
		return nil, nil, err
	}
	ids := roaring.New()
	var rejects []Reject
	for start := 0; start < len(phones); start += tagBatch {
		part := phones[start:min(start+tagBatch, len(phones))]
		var idents []identity
		var lines []int
		for i, ph := range part {
			if kind, v, ok := prefixedIdentity(ph); ok {
				if v == "" {
					reason := map[int]string{idTelegram: "invalid telegram chat id", idLine: "invalid LINE user id"}[kind]
					rejects = append(rejects, Reject{Line: start + i + 1, Reason: reason, Value: clip(ph), Hint: "write telegram:<chat id> or line:<user id>"})
					continue
				}
				var x identity
				x.set(kind, v)
				idents = append(idents, x)
			} else if strings.Contains(ph, "@") {
				e, err := normEmail(ph)
				if err != nil {
					rejects = append(rejects, Reject{Line: start + i + 1, Reason: "invalid email", Value: clip(ph), Hint: "write a bare address such as name@example.com"})
					continue
				}
				idents = append(idents, identity{email: e})
			} else {
				p, err := parsePhone(ph, region)
				if err != nil {
					rejects = append(rejects, Reject{Line: start + i + 1, Reason: "invalid phone", Value: clip(ph), Hint: phoneHint(err, region)})
					continue
				}
				idents = append(idents, identity{phone: p.E164})
			}
			lines = append(lines, start+i+1)
		}
		if len(idents) == 0 {
			continue
		}
		known, err := s.lookupIdentities(ctx, idents)
		if err != nil {
			return nil, nil, err
		}
		for i, x := range idents {
			var id uint32
			for k := range idKinds {
				if v := x.at(k); v != "" {
					id = known.by[k][v]
				}
			}
			if id == 0 {
				rejects = append(rejects, Reject{Line: lines[i], Reason: "no such contact", Value: x.phone + x.email + x.telegram + x.line, Hint: "import the contact first"})
				continue
			}
			ids.Add(id)
		}
	}
	slices.SortFunc(rejects, func(a, b Reject) int { return a.Line - b.Line })
	return ids, rejects, nil
}

// ReadPhoneList reads a list of phone numbers or email addresses, one per line; blank
// lines and lines starting with "#" are skipped, and a first line "phone" or "email"
// (a header) too. It returns the entries with their line numbers.
func ReadPhoneList(r io.Reader) (phones []string, lines []int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if n == 1 {
			l = strings.TrimPrefix(l, "\uFEFF")
		}
		if l == "" || strings.HasPrefix(l, "#") || len(phones) == 0 && (strings.EqualFold(strings.Trim(l, `"`), "phone") || strings.EqualFold(strings.Trim(l, `"`), "email")) {
			continue
		}
		phones = append(phones, l)
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read phone list at line %d: %w", n+1, err)
	}
	return phones, lines, nil
}

// prefixedIdentity reads "telegram:<chat id>" or "line:<user id>": the kind and the
// normalized id ("" when invalid); ok is false for neither prefix.
func prefixedIdentity(x string) (kind int, v string, ok bool) {
	for _, k := range []int{idTelegram, idLine} {
		if rest, found := cutPrefixFold(strings.TrimSpace(x), identKindNames[k]+":"); found {
			v, _ := normIdentity(k, rest)
			return k, v, true
		}
	}
	return 0, "", false
}

// erasureKey is the identity EraseContact is asked to erase by: its kind and the
// index entries it may have.
func erasureKey(x string) (int, []string, bool) {
	for _, k := range []int{idTelegram, idLine} {
		if v, ok := cutPrefixFold(strings.TrimSpace(x), identKindNames[k]+":"); ok {
			n, err := normIdentity(k, v)
			return k, []string{n}, err == nil
		}
	}
	if strings.Contains(x, "@") {
		e, err := normEmail(x)
		return idEmail, []string{e}, err == nil
	}
	cands, err := waPhone(x)
	return idPhone, cands, err == nil
}

// Erasure records that a contact was erased, for the consent ledger: it keeps a
// tombstone (the contact id, a revoke, the time) and never the phone number.
type Erasure interface {
	RecordErasure(ctx context.Context, contactID uint32) error
}

// Erased is what EraseContact removed.
type Erased struct {
	ContactID uint32 `json:"contact_id"`
	Tags      int    `json:"tags"` // tag bits cleared
}

// EraseContact removes a contact, found by phone number (as LookupPhone takes it),
// email address, "telegram:<chat id>" or "line:<user id>": the ledger's tombstone first (through ledger, which may be nil only
// when the caller records it otherwise), then every bitmap bit (each tag of the
// library, the attribute bitmaps, contacts:all), the profile record and the identity
// entries (phone, email, Telegram chat id, LINE user id) last, in one pipeline (keys in different Redis Cluster
// slots, so not a transaction): a run cut short leaves an identity, and erasing again
// completes it. The id is not reused: importing the number again creates a new
// contact. It returns an error wrapping ErrNotFound when no contact has the identity.
func (s *Store) EraseContact(ctx context.Context, phoneOrEmail string, ledger Erasure) (Erased, error) {
	id, err := s.Lookup(ctx, phoneOrEmail)
	if err != nil {
		return Erased{}, err
	}
	return s.eraseContact(ctx, id, phoneOrEmail, ledger)
}

// EraseContactID erases the contact with id as EraseContact does. It returns an error
// wrapping ErrNotFound, and records nothing, when no profile of that id is stored.
func (s *Store) EraseContactID(ctx context.Context, id uint32, ledger Erasure) (Erased, error) {
	return s.eraseContact(ctx, id, "", ledger)
}

// eraseContact erases contact id; ref, when not "", is the identity the erasure was
// asked by, whose index entry goes too even if the profile does not name it.
func (s *Store) eraseContact(ctx context.Context, id uint32, ref string, ledger Erasure) (Erased, error) {
	er := Erased{ContactID: id}
	cw := &contactWrite{id: id}
	legacy := s.layout.legacy.Load()
	pipe := s.rdb.Pipeline()
	recs := s.queueRecords(ctx, pipe, []*contactWrite{cw}, legacy)
	libCmd := pipe.SMembers(ctx, s.kTags())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return er, fmt.Errorf("erase contact %d: %w", id, err)
	}
	if err := recs.read(); err != nil {
		return er, fmt.Errorf("erase contact %d: %w", id, err)
	}
	lib, err := libCmd.Result()
	if err != nil {
		return er, fmt.Errorf("erase contact %d: %w", id, err)
	}
	if ref == "" && len(cw.stored) == 0 && !cw.old {
		return er, fmt.Errorf("erase contact %d: %w", id, ErrNotFound)
	}
	if ledger != nil {
		if err := ledger.RecordErasure(ctx, id); err != nil {
			return er, fmt.Errorf("erase contact %d: record the erasure in the consent ledger (nothing was erased): %w", id, err)
		}
	}
	p := &cw.before
	off := int64(id)
	tx := s.rdb.Pipeline()
	cleared := make([]*redis.IntCmd, 0, len(lib))
	for _, t := range lib {
		cleared = append(cleared, tx.SetBit(ctx, s.kTag(t), off, 0))
	}
	if c := p.get(hCountry); c != "" {
		tx.SetBit(ctx, s.kAttr(FieldCountry, c), off, 0)
	}
	if l := langOf(p.get(hLocale)); l != "" {
		tx.SetBit(ctx, s.kAttr(FieldLocale, l), off, 0)
	}
	tx.SetBit(ctx, s.kAll(), off, 0)
	tx.HDel(ctx, s.kProfiles(profileBucketOf(id)), strconv.FormatUint(uint64(id), 10))
	if legacy {
		tx.Del(ctx, s.kContactOld(id))
	}
	// The entry erasure was asked by, and the profile's, if they name this contact.
	var named [idKinds][]string
	for k := range idKinds {
		named[k] = []string{p.get(identFields[k])}
	}
	if kind, v, ok := erasureKey(ref); ok {
		named[kind] = append(named[kind], v...)
	}
	for k := range idKinds {
		for _, x := range slices.Compact(slices.Sorted(slices.Values(named[k]))) {
			if x != "" {
				tx.Eval(ctx, unlinkScript, []string{s.kIdent(k, x)}, x, id)
				if old := s.kIdentOld(k); legacy && old != "" {
					tx.Eval(ctx, unlinkScript, []string{old}, x, id)
				}
			}
		}
	}
	if _, err := tx.Exec(ctx); err != nil {
		return er, fmt.Errorf("erase contact %d (the ledger has its tombstone; erasing again completes it): %w", id, err)
	}
	for _, c := range cleared {
		if c.Val() == 1 {
			er.Tags++
		}
	}
	return er, nil
}
