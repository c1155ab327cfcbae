package segments

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
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
}

// NewStore returns a store keeping its keys under prefix (e.g. "herald:") in rdb.
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix, now: time.Now}
}

// Contact is one contact's profile. Empty fields are unknown. Attrs holds custom
// attributes by name; Tags is sorted.
type Contact struct {
	ID       uint32
	Phone    string // E.164
	Email    string
	Name     string
	Country  string // ISO 3166 region, from the phone number
	TimeZone string // IANA zone
	Locale   string // language[-REGION], e.g. th, pt-BR
	Tags     []string
	Attrs    map[string]string
}

// TagCount is a tag of the tag library and how many contacts have it.
type TagCount struct {
	Name  string
	Count uint64
}

// Profile hash fields.
const (
	hPhone   = "phone"
	hName    = "name"
	hEmail   = "email"
	hCountry = "country"
	hTZ      = "tz"
	hLocale  = "locale"
	hTags    = "tags" // before tag fields: the tags, sorted and comma-separated
	hTag     = "t."   // t.NAME = 1: the contact has tag NAME (mirrors the bitmap)
	hCreated = "created"
	hSource  = "source"
	hAttr    = "a."
)

func (s *Store) kSeq() string        { return s.prefix + "contact:seq" }
func (s *Store) kIdentPhone() string { return s.prefix + "ident:phone" }
func (s *Store) kContact(id uint32) string {
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

// Profiles loads contacts by id in one pipelined round trip. A contact that does not
// exist comes back as a Contact with ID 0, at its position.
func (s *Store) Profiles(ctx context.Context, ids []uint32) ([]Contact, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.kContact(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("load %d profiles: %w", len(ids), err)
	}
	out := make([]Contact, len(ids))
	for i, c := range cmds {
		out[i] = contactFromHash(ids[i], c.Val())
	}
	return out, nil
}

func contactFromHash(id uint32, h map[string]string) Contact {
	if h[hPhone] == "" {
		return Contact{}
	}
	c := Contact{ID: id, Phone: h[hPhone], Email: h[hEmail], Name: h[hName], Country: h[hCountry],
		TimeZone: h[hTZ], Locale: h[hLocale]}
	if t := h[hTags]; t != "" {
		c.Tags = strings.Split(t, ",")
	}
	for k, v := range h {
		if name, ok := strings.CutPrefix(k, hAttr); ok {
			if c.Attrs == nil {
				c.Attrs = map[string]string{}
			}
			c.Attrs[name] = v
		} else if name, ok := strings.CutPrefix(k, hTag); ok {
			c.Tags = append(c.Tags, name)
		}
	}
	slices.Sort(c.Tags)
	c.Tags = slices.Compact(c.Tags)
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
	vals, err := s.rdb.HMGet(ctx, s.kIdentPhone(), cands...).Result()
	if err != nil {
		return 0, fmt.Errorf("look up phone %q: %w", phone, err)
	}
	for _, v := range vals {
		if str, ok := v.(string); ok {
			id, err := strconv.ParseUint(str, 10, 32)
			if err != nil {
				return 0, fmt.Errorf("look up phone %q: corrupt identity index entry %q", phone, str)
			}
			return uint32(id), nil
		}
	}
	return 0, fmt.Errorf("look up phone %q: %w", phone, ErrNotFound)
}

// Upsert creates or updates contacts identified by phone number, in batches of 1,000
// with a few round trips each, and returns their ids in order. Phone must be E.164, or
// national with Country naming its region. Empty fields leave the stored value alone;
// Tags are added to the contact's tags; Attrs are set; ID is ignored. Every contact is
// checked before anything is written: one invalid contact fails the call and changes
// nothing.
func (s *Store) Upsert(ctx context.Context, cs []Contact) ([]uint32, error) {
	rows := make([]row, len(cs))
	zones := &zoneCache{}
	for i, c := range cs {
		r, err := rowFromContact(c, zones)
		if err != nil {
			return nil, fmt.Errorf("upsert contact %d (phone %q): %w", i+1, c.Phone, err)
		}
		r.line = i + 1
		rows[i] = r
	}
	ids := make([]uint32, 0, len(cs))
	for start := 0; start < len(rows); start += defaultBatch {
		end := min(start+defaultBatch, len(rows))
		res, err := s.apply(ctx, rows[start:end], applyOpts{source: "api"})
		if err != nil {
			return ids, fmt.Errorf("upsert contacts %d–%d: %w", start+1, end, err)
		}
		ids = append(ids, res.ids...)
	}
	return ids, nil
}

func rowFromContact(c Contact, zones *zoneCache) (row, error) {
	r := row{optIn: -1, name: strings.TrimSpace(c.Name)}
	region := strings.ToUpper(strings.TrimSpace(c.Country))
	if region != "" && !knownRegion(region) {
		return r, fmt.Errorf("country %q is not a two-letter ISO 3166 code such as TH", c.Country)
	}
	if strings.TrimSpace(c.Phone) == "" {
		return r, errors.New("phone is missing: contacts are identified by phone number")
	}
	p, err := parsePhone(c.Phone, region)
	if err != nil {
		return r, fmt.Errorf("invalid phone: %s", phoneHint(err, region))
	}
	r.phone, r.country = p, p.Region
	if r.country == "" {
		r.country = region
	}
	if c.Email != "" {
		if r.email, err = normEmail(c.Email); err != nil {
			return r, err
		}
	}
	if c.Locale != "" {
		if r.locale, r.lang, err = normLocale(c.Locale); err != nil {
			return r, err
		}
	}
	if c.TimeZone != "" {
		if !zones.valid(strings.TrimSpace(c.TimeZone)) {
			return r, fmt.Errorf("unknown time zone %q: use an IANA name such as Asia/Bangkok", c.TimeZone)
		}
		r.tz = strings.TrimSpace(c.TimeZone)
	}
	for _, t := range c.Tags {
		n, err := normTag(t)
		if err != nil {
			return r, err
		}
		r.tags = append(r.tags, n)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Attrs)) {
		n := normName(k)
		if !validAttrName(n) {
			return r, fmt.Errorf("attribute name %q: use letters a-z, digits and _", k)
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

// row is one contact update: an import row or an upserted Contact, normalized.
// Empty strings are "not given".
type row struct {
	line                                   int
	phone                                  phone
	country, name, email, locale, lang, tz string
	tags                                   []string
	attrs                                  [][2]string
	optIn                                  int8 // -1 not given, 0 no, 1 yes
}

// Outcomes of one row.
const (
	outUnchanged = iota
	outCreated
	outUpdated
)

type applyOpts struct {
	source string
	remove map[string]bool // tags to take off every contact in the batch
}

type applyResult struct {
	ids      []uint32 // per row
	outcomes []int8   // per row
}

// profile is a contact's hash as read before the batch, and then as the batch leaves it.
type profile struct {
	f      map[string]string // fields other than tags
	tags   map[string]bool
	legacy bool // the stored hash has the comma-separated tags field
}

func newProfile(h map[string]string) *profile {
	p := &profile{f: h, tags: map[string]bool{}}
	if p.f == nil {
		p.f = map[string]string{}
	}
	if t, ok := p.f[hTags]; ok {
		p.legacy = true
		delete(p.f, hTags)
		for _, x := range strings.Split(t, ",") {
			if x != "" {
				p.tags[x] = true
			}
		}
	}
	for k := range p.f {
		if name, ok := strings.CutPrefix(k, hTag); ok {
			p.tags[name] = true
			delete(p.f, k)
		}
	}
	return p
}

func (p *profile) clone() *profile {
	return &profile{f: maps.Clone(p.f), tags: maps.Clone(p.tags), legacy: p.legacy}
}

// set changes field k to v when v is given and differs.
func (p *profile) set(k, v string) bool {
	if v == "" || p.f[k] == v {
		return false
	}
	p.f[k] = v
	return true
}

// merge applies a row to the profile and reports whether anything changed.
func (p *profile) merge(r *row, remove map[string]bool) bool {
	ch := p.set(hPhone, r.phone.E164)
	ch = p.set(hCountry, r.country) || ch
	ch = p.set(hName, r.name) || ch
	ch = p.set(hEmail, r.email) || ch
	ch = p.set(hLocale, r.locale) || ch
	tz := r.tz
	if tz == "" && p.f[hTZ] == "" {
		tz = r.phone.Zone
	}
	ch = p.set(hTZ, tz) || ch
	for _, a := range r.attrs {
		ch = p.set(hAttr+a[0], a[1]) || ch
	}
	for _, t := range r.tags {
		if !remove[t] && !p.tags[t] {
			p.tags[t] = true
			ch = true
		}
	}
	for t := range remove {
		if p.tags[t] {
			delete(p.tags, t)
			ch = true
		}
	}
	return ch
}

// apply writes a batch of rows: ids for their phones (one script call), the stored
// profiles of existing contacts (one pipeline), then the bitmap changes (one pipeline)
// and last the profile changes (one pipeline). Bitmaps are written before profiles, so
// a batch cut short leaves profiles that still differ from the file, and importing it
// again completes the indexes.
func (s *Store) apply(ctx context.Context, rows []row, o applyOpts) (applyResult, error) {
	res := applyResult{ids: make([]uint32, len(rows)), outcomes: make([]int8, len(rows))}
	if len(rows) == 0 {
		return res, nil
	}
	// 1. Ids.
	index := map[string]int{}
	var phones []string
	for _, r := range rows {
		if _, ok := index[r.phone.E164]; !ok {
			index[r.phone.E164] = len(phones)
			phones = append(phones, r.phone.E164)
		}
	}
	ids, isNew, err := s.resolveIDs(ctx, phones)
	if err != nil {
		return res, fmt.Errorf("resolve contact ids: %w", err)
	}
	// 2. Stored profiles of contacts that existed.
	before := make([]*profile, len(ids))
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		if !isNew[i] {
			cmds[i] = pipe.HGetAll(ctx, s.kContact(id))
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return res, fmt.Errorf("read profiles: %w", err)
		}
	}
	after := make([]*profile, len(ids))
	for i := range ids {
		var h map[string]string
		if cmds[i] != nil {
			h = cmds[i].Val()
		}
		before[i] = newProfile(h)
		after[i] = before[i].clone()
	}
	// 3. Rows in file order, each against the profile the rows before it left.
	for j := range rows {
		i := index[rows[j].phone.E164]
		res.ids[j] = ids[i]
		existed := after[i].f[hPhone] != ""
		switch changed := after[i].merge(&rows[j], o.remove); {
		case !existed:
			res.outcomes[j] = outCreated
		case changed:
			res.outcomes[j] = outUpdated
		}
	}
	// 4. Bitmaps, then profiles, in one pipeline: Redis runs it in order.
	pipe = s.rdb.Pipeline()
	now := strconv.FormatInt(s.now().UnixMilli(), 10)
	w := batchWriter{s: s, pipe: pipe, keys: map[string]string{}, added: map[string]bool{}}
	for i, id := range ids {
		w.diff(ctx, id, before[i], after[i], o.source, now)
	}
	if len(w.added) > 0 {
		// The library after the bitmaps: a tag is listed once it has members.
		lib := make([]any, 0, len(w.added))
		for _, t := range slices.Sorted(maps.Keys(w.added)) {
			lib = append(lib, t)
		}
		pipe.SAdd(ctx, s.kTags(), lib...)
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return res, fmt.Errorf("write indexes and profiles: %w", err)
		}
	}
	return res, nil
}

// batchWriter queues a batch's writes, building each bitmap key once.
type batchWriter struct {
	s     *Store
	pipe  redis.Pipeliner
	keys  map[string]string // tag → bitmap key
	added map[string]bool   // tags some contact got
}

func (w *batchWriter) tagKey(t string) string {
	k, ok := w.keys[t]
	if !ok {
		k = w.s.kTag(t)
		w.keys[t] = k
	}
	return k
}

// diff queues the writes that turn before into after: bitmaps first, then the profile.
// Each tag is its own profile field, so adding and removing tags needs no
// read-modify-write and concurrent importers keep each other's tags.
func (w *batchWriter) diff(ctx context.Context, id uint32, before, after *profile, source, now string) {
	s, pipe := w.s, w.pipe
	off := int64(id)
	created := before.f[hPhone] == ""
	if created {
		pipe.SetBit(ctx, s.kAll(), off, 1)
	}
	var add, rm []string
	for t := range after.tags {
		if !before.tags[t] {
			add = append(add, t)
		}
	}
	for t := range before.tags {
		if !after.tags[t] {
			rm = append(rm, t)
		}
	}
	sort.Strings(add)
	sort.Strings(rm)
	for _, t := range add {
		pipe.SetBit(ctx, w.tagKey(t), off, 1)
		w.added[t] = true
	}
	for _, t := range rm {
		pipe.SetBit(ctx, w.tagKey(t), off, 0)
	}
	s.moveBit(ctx, pipe, FieldCountry, before.f[hCountry], after.f[hCountry], off)
	s.moveBit(ctx, pipe, FieldLocale, langOf(before.f[hLocale]), langOf(after.f[hLocale]), off)

	set := make([]any, 0, 2*(len(after.f)+len(add)+2))
	for k, v := range after.f {
		if before.f[k] != v {
			set = append(set, k, v)
		}
	}
	if created {
		set = append(set, hCreated, now)
		if source != "" {
			set = append(set, hSource, source)
		}
	}
	tagFields := add
	if before.legacy {
		tagFields = slices.Sorted(maps.Keys(after.tags)) // moving to one field per tag
	}
	for _, t := range tagFields {
		set = append(set, hTag+t, "1")
	}
	if len(set) > 0 {
		pipe.HSet(ctx, s.kContact(id), set...)
	}
	var del []string
	for _, t := range rm {
		del = append(del, hTag+t)
	}
	if before.legacy {
		del = append(del, hTags)
	}
	if len(del) > 0 {
		pipe.HDel(ctx, s.kContact(id), del...)
	}
}

// moveBit moves a contact's bit from the bitmap of an attribute's old value to the new.
func (s *Store) moveBit(ctx context.Context, bits redis.Pipeliner, field, old, cur string, off int64) {
	if old == cur {
		return
	}
	if old != "" {
		bits.SetBit(ctx, s.kAttr(field, old), off, 0)
	}
	if cur != "" {
		bits.SetBit(ctx, s.kAttr(field, cur), off, 1)
	}
}

func langOf(locale string) string {
	lang, _, _ := strings.Cut(locale, "-")
	return lang
}

// allocScript finds or allocates the ids of distinct phones (ARGV), atomically, so
// concurrent importers of one number get one id and ids stay dense: one HGET per
// phone, one INCRBY for all the new ones, and HSETs of many fields at once. It returns
// each phone's id, negated when this call allocated it.
var allocScript = redis.NewScript(`
local out, miss = {}, {}
for i, p in ipairs(ARGV) do
  local id = redis.call('HGET', KEYS[1], p)
  if id then out[i] = tonumber(id) else miss[#miss + 1] = i end
end
if #miss == 0 then return out end
local last = redis.call('INCRBY', KEYS[2], #miss)
if last > 4294967295 then
  redis.call('DECRBY', KEYS[2], #miss)
  return redis.error_reply('contact id space (uint32) exhausted')
end
local first, args = last - #miss + 1, {}
for j, i in ipairs(miss) do
  local id = first + j - 1
  out[i] = -id
  args[#args + 1] = ARGV[i]
  args[#args + 1] = id
  if #args >= 1000 then
    redis.call('HSET', KEYS[1], unpack(args))
    args = {}
  end
end
if #args > 0 then redis.call('HSET', KEYS[1], unpack(args)) end
return out
`)

// resolveIDs finds or allocates the ids of distinct phones (E.164): HMGET finds the
// known ones without a script (a re-import needs nothing else), and allocScript
// handles the rest.
func (s *Store) resolveIDs(ctx context.Context, phones []string) (ids []uint32, isNew []bool, err error) {
	ids, isNew = make([]uint32, len(phones)), make([]bool, len(phones))
	vals, err := s.rdb.HMGet(ctx, s.kIdentPhone(), phones...).Result()
	if err != nil {
		return nil, nil, err
	}
	var missing []int
	var args []any
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			missing = append(missing, i)
			args = append(args, phones[i])
			continue
		}
		if ids[i], err = parseID(str); err != nil {
			return nil, nil, err
		}
	}
	if len(missing) == 0 {
		return ids, isNew, nil
	}
	raw, err := allocScript.Run(ctx, s.rdb, []string{s.kIdentPhone(), s.kSeq()}, args...).Int64Slice()
	if err != nil {
		return nil, nil, err
	}
	if len(raw) != len(missing) {
		return nil, nil, fmt.Errorf("got %d ids for %d phones", len(raw), len(missing))
	}
	for j, i := range missing {
		v := raw[j]
		if v < 0 {
			v, isNew[i] = -v, true
		}
		if v <= 0 || v > math.MaxUint32 {
			return nil, nil, fmt.Errorf("corrupt id %d for %s", raw[j], phones[i])
		}
		ids[i] = uint32(v)
	}
	return ids, isNew, nil
}

func parseID(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("corrupt identity index entry %q", s)
	}
	return uint32(id), nil
}
