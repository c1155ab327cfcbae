package segments

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned when no contact has the phone number looked up.
var ErrNotFound = errors.New("contact not found")

// Store is the contact store: profiles, the identity index and the bitmaps segments are
// evaluated on. It is safe for concurrent use, also by many processes sharing Redis.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
	ident  string // identTag(prefix)
	layout keyLayout
	// testHookTx, when set, runs inside exec's transaction after its check;
	// testHookTogether is told how many batches an import's resolver or writer takes
	// together, when more than one.
	testHookTx       func()
	testHookTogether func(stage string, batches int)
	tagHook          TagHook // told of tag flips (OnTagChange)
}

// NewStore returns a store keeping its keys under prefix (e.g. "herald:") in rdb.
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix, now: time.Now, ident: identTag(prefix)}
}

// Contact is one contact's profile. Empty fields are unknown. Attrs holds custom
// attributes by name; Tags is sorted.
type Contact struct {
	ID       uint32 `json:"id"`
	Phone    string `json:"phone,omitempty"` // E.164
	Email    string `json:"email,omitempty"`
	Name     string `json:"name,omitempty"`
	Country  string `json:"country,omitempty"`  // ISO 3166 region, from the phone number
	TimeZone string `json:"timezone,omitempty"` // IANA zone (the import's column name)
	Locale   string `json:"locale,omitempty"`   // language[-REGION], e.g. th, pt-BR
	// TelegramChatID is the contact's Telegram chat id in decimal (negative: a group).
	TelegramChatID string `json:"telegram_chat_id,omitempty"`
	// LineUserID is the contact's LINE user id: U and 32 lower-case hex digits.
	LineUserID string            `json:"line_user_id,omitempty"`
	Tags       []string          `json:"tags"`
	Attrs      map[string]string `json:"attributes"`
}

// TagCount is a tag of the tag library and how many contacts have it.
type TagCount struct {
	Name  string `json:"name"`
	Count uint64 `json:"contacts"`
}

// Profile fields (the names of the old layout's hash fields; a record stores them by
// kind, see record.go).
const (
	hPhone   = "phone"
	hName    = "name"
	hEmail   = "email"
	hCountry = "country"
	hTZ      = "tz"
	hLocale  = "locale"
	hTags    = "tags" // old layout, before tag fields: the tags, comma-separated
	hTag     = "t."   // old layout: t.NAME = 1, the contact has tag NAME
	hCreated = "created"
	hSource  = "source"
	hAttr    = "a."
	// Channel identities (a record stores them as recTelegram and recLine).
	hTelegram = "telegram"
	hLine     = "line"
)

// kProfiles is a profile bucket: the records of contacts b<<profileShift to
// (b+1)<<profileShift - 1, by contact id.
func (s *Store) kProfiles(b uint32) string {
	return s.prefix + "profiles:" + strconv.FormatUint(uint64(b), 10)
}

// kContactOld is a contact's profile hash in the layout before buckets.
func (s *Store) kContactOld(id uint32) string {
	return s.prefix + "contact:" + strconv.FormatUint(uint64(id), 10)
}
func (s *Store) kTag(name string) string      { return s.prefix + "tag:" + name }
func (s *Store) kTags() string                { return s.prefix + "tags" }
func (s *Store) kAttr(field, v string) string { return s.prefix + "attr:" + field + ":" + v }
func (s *Store) kAll() string                 { return s.prefix + "contacts:all" }

// key returns the bitmap key of one term value.
func (s *Store) key(field, v string) string {
	if field == FieldTag {
		return s.kTag(v)
	}
	return s.kAttr(field, v)
}

// Profiles loads contacts by id in one pipelined round trip (two in a store still
// holding profiles of the layout before buckets): the records of their buckets, and
// their tags from the tag bitmaps (one BITFIELD_RO per tag of the library). A contact
// that does not exist comes back as a Contact with ID 0, at its position.
func (s *Store) Profiles(ctx context.Context, ids []uint32) ([]Contact, error) {
	return s.profiles(ctx, ids, true)
}

// ProfileFields is Profiles without the tags (Tags stays nil): only the records, so
// its cost does not grow with the tag library. The dispatcher reads contacts this way
// for every batch it sends.
func (s *Store) ProfileFields(ctx context.Context, ids []uint32) ([]Contact, error) {
	return s.profiles(ctx, ids, false)
}

func (s *Store) profiles(ctx context.Context, ids []uint32, withTags bool) ([]Contact, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if err := s.upgradeKeys(ctx); err != nil {
		return nil, err
	}
	var lib []string
	if withTags {
		var err error
		if lib, err = s.rdb.SMembers(ctx, s.kTags()).Result(); err != nil {
			return nil, fmt.Errorf("load %d profiles: list tags: %w", len(ids), err)
		}
		slices.Sort(lib)
	}
	cws := make([]contactWrite, len(ids))
	ptrs := make([]*contactWrite, len(ids))
	for i, id := range ids {
		cws[i].id = id
		ptrs[i] = &cws[i]
	}
	pipe := s.rdb.Pipeline()
	recs := s.queueRecords(ctx, pipe, ptrs, s.layout.legacy.Load())
	tags := s.queueTagBits(ctx, pipe, lib, ids)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load %d profiles: %w", len(ids), err)
	}
	if err := recs.read(); err != nil {
		return nil, fmt.Errorf("load %d profiles: %w", len(ids), err)
	}
	out := make([]Contact, len(ids))
	for i := range cws {
		out[i] = contactFromProfile(ids[i], &cws[i].before)
	}
	for t, cmd := range tags {
		bits, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("load %d profiles: tag %s: %w", len(ids), lib[t], err)
		}
		for i, b := range bits {
			if b == 1 && out[i].ID != 0 {
				out[i].Tags = append(out[i].Tags, lib[t]) // lib is sorted
			}
		}
	}
	return out, nil
}

// queueTagBits queues one BITFIELD_RO per tag reading the bits of ids.
func (s *Store) queueTagBits(ctx context.Context, pipe redis.Pipeliner, lib []string, ids []uint32) []*redis.IntSliceCmd {
	if len(lib) == 0 {
		return nil
	}
	gets := make([]any, 0, 3*len(ids))
	for _, id := range ids {
		gets = append(gets, "get", "u1", id)
	}
	cmds := make([]*redis.IntSliceCmd, len(lib))
	for t, name := range lib {
		cmds[t] = redis.NewIntSliceCmd(ctx, append([]any{"bitfield_ro", s.kTag(name)}, gets...)...)
		_ = pipe.Process(ctx, cmds[t])
	}
	return cmds
}

// contactFromProfile is the Contact of a stored profile (its tags aside); an empty
// Contact when there is no profile.
func contactFromProfile(id uint32, p *profile) Contact {
	if !p.exists() {
		return Contact{}
	}
	c := Contact{ID: id}
	for _, f := range p.f {
		switch f.k {
		case hPhone:
			c.Phone = f.v
		case hEmail:
			c.Email = f.v
		case hName:
			c.Name = f.v
		case hCountry:
			c.Country = f.v
		case hTZ:
			c.TimeZone = f.v
		case hLocale:
			c.Locale = f.v
		case hTelegram:
			c.TelegramChatID = f.v
		case hLine:
			c.LineUserID = f.v
		default:
			if name, ok := strings.CutPrefix(f.k, hAttr); ok {
				if c.Attrs == nil {
					c.Attrs = map[string]string{}
				}
				c.Attrs[name] = f.v
			}
		}
	}
	return c
}

// LookupPhone returns the id of the contact with a phone number, given in E.164
// (+66812345678) or as WhatsApp reports it in wa_id (66812345678). It returns an error
// wrapping ErrNotFound when no contact has it, or when phone is not a phone number.
func (s *Store) LookupPhone(ctx context.Context, phone string) (uint32, error) {
	cands, err := waPhone(phone)
	if err != nil {
		return 0, fmt.Errorf("look up phone %q: not a phone number (%v): %w", phone, err, ErrNotFound)
	}
	if err := s.upgradeKeys(ctx); err != nil {
		return 0, err
	}
	idents := make([]identity, len(cands))
	for i, c := range cands {
		idents[i].phone = c
	}
	known, err := s.lookupIdentities(ctx, idents)
	if err != nil {
		return 0, fmt.Errorf("look up phone %q: %w", phone, err)
	}
	for _, c := range cands {
		if id := known.by[idPhone][c]; id != 0 {
			return id, nil
		}
	}
	return 0, fmt.Errorf("look up phone %q: %w", phone, ErrNotFound)
}

// Upsert creates or updates contacts identified by phone number, email address,
// Telegram chat id, LINE user id or several of them, in batches of 4,000 with a few round trips each, and returns their ids in
// order. Phone must be E.164, or national with Country naming its region. Empty fields
// leave the stored value alone; Tags are added to the contact's tags; Attrs are set;
// ID is ignored. A phone or email the contact did not have replaces the one it had
// (which stops finding it). Every contact is checked before anything is written: one
// invalid contact fails the call and changes nothing. A contact whose identities
// belong to two different contacts is found only when its batch is written: it is
// skipped (id 0) and the call returns an error wrapping ErrIdentityConflict after
// writing the others.
func (s *Store) Upsert(ctx context.Context, cs []Contact) ([]uint32, error) {
	return s.upsert(ctx, cs, "api")
}

// upsert is Upsert, naming source on the contacts it creates.
func (s *Store) upsert(ctx context.Context, cs []Contact, source string) ([]uint32, error) {
	rows := make([]row, len(cs))
	zones := &zoneCache{}
	for i, c := range cs {
		r, err := rowFromContact(c, zones)
		if err != nil {
			return nil, fmt.Errorf("upsert contact %d (%s): %w", i+1, c.idents(), err)
		}
		r.line = i + 1
		rows[i] = r
	}
	if _, err := s.UpgradeLayout(ctx); err != nil {
		return nil, fmt.Errorf("upsert: %w", err)
	}
	ids := make([]uint32, 0, len(cs))
	var conflicts []string
	for start := 0; start < len(rows); start += defaultBatch {
		end := min(start+defaultBatch, len(rows))
		res, err := s.apply(ctx, rows[start:end], applyOpts{source: source})
		if err != nil {
			return ids, fmt.Errorf("upsert contacts %d–%d: %w", start+1, end, err)
		}
		for j, oc := range res.outcomes {
			if oc == outConflict {
				conflicts = append(conflicts, fmt.Sprintf("contact %d (%s)", start+j+1, cs[start+j].idents()))
			}
		}
		ids = append(ids, res.ids...)
	}
	if len(conflicts) > 0 {
		return ids, fmt.Errorf("upsert: %s: %w", strings.Join(conflicts, ", "), ErrIdentityConflict)
	}
	return ids, nil
}

// idents describes a contact's identities for an error message.
func (c Contact) idents() string {
	var parts []string
	for _, x := range [][2]string{{"phone", c.Phone}, {"email", c.Email}, {"telegram_chat_id", c.TelegramChatID}, {"line_user_id", c.LineUserID}} {
		if x[1] != "" {
			parts = append(parts, fmt.Sprintf("%s %q", x[0], x[1]))
		}
	}
	if len(parts) == 0 {
		return `phone ""`
	}
	return strings.Join(parts, ", ")
}

// ErrIdentityConflict is returned for a contact whose identities (phone number, email
// address, Telegram chat id, LINE user id) belong to two different contacts.
var ErrIdentityConflict = errors.New("the identities belong to two different contacts")

// ContactError is a contact field that Upsert (or Validate) refuses: Field names it as
// the JSON does (phone, email, telegram_chat_id, line_user_id, country, locale,
// timezone, tags, attributes), Index is
// its position in a list field (tags), -1 otherwise, and Key the attribute's name.
type ContactError struct {
	Field string
	Index int
	Key   string
	Err   error
}

func (e *ContactError) Error() string { return e.Err.Error() }
func (e *ContactError) Unwrap() error { return e.Err }

func contactErr(field string, err error) error {
	return &ContactError{Field: field, Index: -1, Err: err}
}

// Validate reports what Upsert would refuse in c, as a *ContactError, without writing.
func (c Contact) Validate() error {
	_, err := rowFromContact(c, &zoneCache{})
	return err
}

func rowFromContact(c Contact, zones *zoneCache) (row, error) {
	r := row{optIn: -1, name: strings.TrimSpace(c.Name)}
	region := strings.ToUpper(strings.TrimSpace(c.Country))
	if region != "" && !knownRegion(region) {
		return r, contactErr("country", fmt.Errorf("country %q is not a two-letter ISO 3166 code such as TH", c.Country))
	}
	r.country = region
	var err error
	if strings.TrimSpace(c.Phone) != "" {
		p, err := parsePhone(c.Phone, region)
		if err != nil {
			return r, contactErr("phone", fmt.Errorf("invalid phone: %s", phoneHint(err, region)))
		}
		r.phone = p
		if p.Region != "" {
			r.country = p.Region
		}
	}
	if strings.TrimSpace(c.Email) != "" {
		if r.email, err = normEmail(c.Email); err != nil {
			return r, contactErr("email", err)
		}
	}
	if strings.TrimSpace(c.TelegramChatID) != "" {
		if r.telegram, err = normTelegram(c.TelegramChatID); err != nil {
			return r, contactErr("telegram_chat_id", err)
		}
	}
	if strings.TrimSpace(c.LineUserID) != "" {
		if r.lineUser, err = normLine(c.LineUserID); err != nil {
			return r, contactErr("line_user_id", err)
		}
	}
	if r.phone.E164 == "" && r.email == "" && r.telegram == "" && r.lineUser == "" {
		return r, contactErr("phone", errors.New("phone is missing: contacts are identified by phone number, email address, Telegram chat id or LINE user id"))
	}
	if c.Locale != "" {
		if r.locale, r.lang, err = normLocale(c.Locale); err != nil {
			return r, contactErr("locale", err)
		}
	}
	if c.TimeZone != "" {
		if !zones.valid(strings.TrimSpace(c.TimeZone)) {
			return r, contactErr("timezone", fmt.Errorf("unknown time zone %q: use an IANA name such as Asia/Bangkok", c.TimeZone))
		}
		r.tz = strings.TrimSpace(c.TimeZone)
	}
	for i, t := range c.Tags {
		n, err := normTag(t)
		if err != nil {
			return r, &ContactError{Field: "tags", Index: i, Err: err}
		}
		r.tags = append(r.tags, n)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Attrs)) {
		n := normName(k)
		if !validAttrName(n) {
			return r, &ContactError{Field: "attributes", Index: -1, Key: k, Err: fmt.Errorf("attribute name %q: use letters a-z, digits and _", k)}
		}
		if v := strings.TrimSpace(c.Attrs[k]); v != "" {
			r.attrs = append(r.attrs, [2]string{n, v})
		}
	}
	return r, nil
}

// TagCounts returns the tag library, sorted by name, with each tag's member count.
func (s *Store) TagCounts(ctx context.Context) ([]TagCount, error) {
	names, err := s.rdb.SMembers(ctx, s.kTags()).Result()
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	sort.Strings(names)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.BitCount(ctx, s.kTag(n), nil)
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("count tag members: %w", err)
		}
	}
	out := make([]TagCount, len(names))
	for i, n := range names {
		out[i] = TagCount{Name: n, Count: uint64(cmds[i].Val())}
	}
	return out, nil
}
