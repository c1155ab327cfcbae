package segments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// The identity index: phone (E.164) → contact id and email → contact id, each split
// into identBuckets hashes, and the id counter. Linking (a WATCH/MULTI transaction, or
// its fallback script) reads and writes the counter and the buckets a batch uses
// atomically, so they share a Redis Cluster hash tag: {P ident} (P the store's
// prefix), one slot per store.

// identTag is P{P ident} (braces of P left out of the tag). A prefix whose first "{" is
// followed by "}" makes Redis Cluster hash whole keys: such prefixes cannot be used on
// a cluster.
func identTag(prefix string) string {
	return prefix + "{" + strings.NewReplacer("{", "", "}", "").Replace(prefix) + "ident}"
}

func (s *Store) kSeq() string { return s.ident + ":seq" }

// Kinds of identity, each with its own index buckets (P{P ident}:KIND:N).
const (
	idPhone    = iota // E.164
	idEmail           // lower case
	idTelegram        // a Telegram chat id in decimal
	idLine            // a LINE user id (U + 32 lower-case hex digits)
	idKinds
)

// identKindNames name each kind's index keys; identFields are its profile fields.
var (
	identKindNames = [idKinds]string{"phone", "email", "telegram", "line"}
	identFields    = [idKinds]string{hPhone, hEmail, hTelegram, hLine}
)

// kIdentBucket is index bucket b of an identity kind.
func (s *Store) kIdentBucket(kind int, b uint32) string {
	return s.ident + ":" + identKindNames[kind] + ":" + strconv.FormatUint(uint64(b), 10)
}

// kIdent is the index bucket holding an identity of a kind.
func (s *Store) kIdent(kind int, x string) string { return s.kIdentBucket(kind, identBucket(x)) }

// kIdentPhone and kIdentEmail are the index buckets holding a phone (E.164) or an
// email address.
func (s *Store) kIdentPhone(phone string) string   { return s.kIdent(idPhone, phone) }
func (s *Store) kIdentEmail(email string) string   { return s.kIdent(idEmail, email) }
func (s *Store) kIdentPhoneBucket(b uint32) string { return s.kIdentBucket(idPhone, b) }
func (s *Store) kIdentEmailBucket(b uint32) string { return s.kIdentBucket(idEmail, b) }

// kIdentOld is the old (unbucketed) index of a kind: phones and emails only; "" for
// the kinds that came after buckets.
func (s *Store) kIdentOld(kind int) string {
	switch kind {
	case idPhone:
		return s.kIdentPhoneOld()
	case idEmail:
		return s.kIdentEmailOld()
	}
	return ""
}

// The identity indexes of the layout before buckets: one hash each.
func (s *Store) kIdentPhoneOld() string { return s.ident + ":phone" }
func (s *Store) kIdentEmailOld() string { return s.ident + ":email" }

// Names of the counter and phone index before they had a hash tag.
func (s *Store) kSeqV1() string        { return s.prefix + "contact:seq" }
func (s *Store) kIdentPhoneV1() string { return s.prefix + "ident:phone" }

// keyLayout renames the keys of the layout before hash tags (contact:seq, ident:phone)
// to their names now, once per Store: a store written by an older Herald is read as it
// was. On Redis Cluster there is nothing to rename (the older layout could not import
// there: its id script used keys of two slots). It then notes whether the store still
// holds the layout before buckets (see migrate.go).
type keyLayout struct {
	mu        sync.Mutex
	done      bool
	legacy    atomic.Bool // the unbucketed identity indexes (and so maybe P contact:ID) exist
	migrating sync.Mutex  // held by UpgradeLayout
}

func (s *Store) upgradeKeys(ctx context.Context) error {
	s.layout.mu.Lock()
	defer s.layout.mu.Unlock()
	if s.layout.done {
		return nil
	}
	olds := []string{s.kSeqV1(), s.kIdentPhoneV1()}
	news := []string{s.kSeq(), s.kIdentPhoneOld()}
	pipe := s.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(olds))
	for i, k := range olds {
		exists[i] = pipe.Exists(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("check the key layout: %w", err)
	}
	for i, c := range exists {
		if c.Val() == 0 {
			continue
		}
		ok, err := s.rdb.RenameNX(ctx, olds[i], news[i]).Result()
		switch {
		case err != nil && strings.Contains(err.Error(), "no such key"):
			// Another process renamed it first.
		case err != nil:
			return fmt.Errorf("rename %s to %s (keys of an older Herald): %w", olds[i], news[i], err)
		case !ok:
			return fmt.Errorf("both %s (written by an older Herald) and %s exist: stop the older processes, then merge the first into the second (HGETALL/HSET; for the counter keep the larger value) and delete it", olds[i], news[i])
		}
	}
	n, err := s.rdb.Exists(ctx, s.kIdentPhoneOld()).Result()
	if err != nil {
		return fmt.Errorf("check the key layout: %w", err)
	}
	m, err := s.rdb.Exists(ctx, s.kIdentEmailOld()).Result()
	if err != nil {
		return fmt.Errorf("check the key layout: %w", err)
	}
	s.layout.legacy.Store(n+m > 0)
	s.layout.done = true
	return nil
}

// identity is what identifies a contact in a row: a phone (E.164), an email, a
// Telegram chat id, a LINE user id, or several of them.
type identity struct{ phone, email, telegram, line string }

// at is the identity's value of a kind ("" for none).
func (x identity) at(kind int) string {
	switch kind {
	case idPhone:
		return x.phone
	case idEmail:
		return x.email
	case idTelegram:
		return x.telegram
	}
	return x.line
}

// resolved is the contact an identity belongs to.
type resolved struct {
	id       uint32
	isNew    bool // allocated now: there is no stored profile to read
	conflict bool // its identities belong to different contacts
}

// resolveScript finds or allocates the contacts of identities, atomically and in order,
// so concurrent importers of one person get one id and ids stay dense. KEYS: the
// counter, the old phone and email indexes (read only when ARGV[2] is 1: the store
// still has them, see migrate.go), then the index buckets the identities use. ARGV: n,
// legacy, then per kind (phone, email, telegram, line) a count (n when the kind is
// given, else 0), then per kind given n pairs of its value and its bucket's index in
// KEYS ("" and 0 for none). It reads each bucket with HMGET, gives rows whose
// identities are unknown provisional ids, takes the real ids with one INCRBY, links
// the unknown identities with HSET in their buckets, and returns each row's id:
// negated when allocated by this call, 0 when its identities belong to different
// contacts.
var resolveScript = redis.NewScript(`
local n, legacy = tonumber(ARGV[1]), ARGV[2] == '1'
local tags = {'p', 'e', 't', 'l'}
local olds = {KEYS[2], KEYS[3]}
local counts, offs = {}, {}
local off = 6
for k = 1, 4 do
  counts[k] = tonumber(ARGV[2 + k])
  offs[k] = off
  off = off + 2 * counts[k]
end
local known = {}
local function lookup(off, count, kind, old)
  local byKey, keys = {}, {}
  local all = {}
  for i = 1, count do
    local v, k = ARGV[off + 2 * i - 1], tonumber(ARGV[off + 2 * i])
    if v ~= '' then
      if not byKey[k] then byKey[k] = {}; keys[#keys + 1] = k end
      local names = byKey[k]
      names[#names + 1] = v
      all[#all + 1] = v
    end
  end
  if legacy and old then
    for s = 1, #all, 1000 do
      local e = math.min(s + 999, #all)
      local vals = redis.call('HMGET', old, unpack(all, s, e))
      for j = 1, #vals do
        if vals[j] then known[kind .. all[s + j - 1]] = tonumber(vals[j]) end
      end
    end
  end
  for _, k in ipairs(keys) do
    local names = byKey[k]
    for s = 1, #names, 1000 do
      local e = math.min(s + 999, #names)
      local vals = redis.call('HMGET', KEYS[k], unpack(names, s, e))
      for j = 1, #vals do
        if vals[j] then known[kind .. names[s + j - 1]] = tonumber(vals[j]) end
      end
    end
  end
end
for k = 1, 4 do lookup(offs[k], counts[k], tags[k], olds[k]) end
local out, fresh, sets, nsets = {}, 0, {{}, {}, {}, {}}, 0
for i = 1, n do
  local id, conflict = nil, false
  local vals, ks, have = {}, {}, {}
  for k = 1, 4 do
    if counts[k] > 0 then
      local v = ARGV[offs[k] + 2 * i - 1]
      if v ~= '' then
        vals[k], ks[k] = v, tonumber(ARGV[offs[k] + 2 * i])
        local h = known[tags[k] .. v]
        have[k] = h
        if h then
          if id and id ~= h then conflict = true end
          id = h
        end
      end
    end
  end
  if conflict then
    out[i] = 0
  else
    if not id then
      fresh = fresh + 1
      id = -fresh
    end
    for k = 1, 4 do
      if vals[k] and not have[k] then
        known[tags[k] .. vals[k]] = id
        local list = sets[k]
        list[#list + 1] = {ks[k], vals[k], id}
        nsets = nsets + 1
      end
    end
    out[i] = id
  end
end
if fresh == 0 and nsets == 0 then return out end
local base = 0
if fresh > 0 then
  local last = redis.call('INCRBY', KEYS[1], fresh)
  if last > 4294967295 then
    redis.call('DECRBY', KEYS[1], fresh)
    return redis.error_reply('contact id space (uint32) exhausted')
  end
  base = last - fresh
end
local function real(id)
  if id < 0 then return base - id end
  return id
end
local function link(list)
  local byKey, keys = {}, {}
  for _, x in ipairs(list) do
    local k = x[1]
    if not byKey[k] then byKey[k] = {}; keys[#keys + 1] = k end
    local args = byKey[k]
    args[#args + 1] = x[2]
    args[#args + 1] = real(x[3])
    if #args >= 1000 then
      redis.call('HSET', KEYS[k], unpack(args))
      byKey[k] = {}
    end
  end
  for _, k in ipairs(keys) do
    if #byKey[k] > 0 then redis.call('HSET', KEYS[k], unpack(byKey[k])) end
  end
end
for k = 1, 4 do link(sets[k]) end
for i = 1, n do
  if out[i] < 0 then out[i] = -real(out[i]) end
end
return out
`)

// resolve finds or allocates the contacts of identities, in order. With lookFirst, an
// HMGET of each index answers the identities already known (a re-import needs nothing
// else); the others, or all of them without lookFirst (an import whose rows are
// mostly new), are resolved by link.
func (s *Store) resolve(ctx context.Context, ids []identity, lookFirst bool) ([]resolved, error) {
	if err := s.upgradeKeys(ctx); err != nil {
		return nil, err
	}
	out := make([]resolved, len(ids))
	todo := make([]int, 0, len(ids))
	if lookFirst {
		known, err := s.lookupIdentities(ctx, ids)
		if err != nil {
			return nil, err
		}
	next:
		for i, x := range ids {
			var id uint32
			for k := range idKinds {
				v := x.at(k)
				if v == "" {
					continue
				}
				h := known.by[k][v]
				switch {
				case h == 0:
					todo = append(todo, i)
					continue next
				case id != 0 && h != id:
					out[i].conflict = true
					continue next
				}
				id = h
			}
			out[i].id = id
		}
	} else {
		for i := range ids {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return out, nil
	}
	rest := make([]identity, len(todo))
	for j, i := range todo {
		rest[j] = ids[i]
	}
	raw, err := s.link(ctx, rest)
	if err != nil {
		return nil, err
	}
	for j, i := range todo {
		v := raw[j]
		switch {
		case v == 0:
			out[i].conflict = true
			continue
		case v < 0:
			v, out[i].isNew = -v, true
		}
		if v > math.MaxUint32 {
			return nil, fmt.Errorf("corrupt id %d for %+v", raw[j], ids[i])
		}
		out[i].id = uint32(v)
	}
	return out, nil
}

// linkAttempts is how many optimistic transactions link tries before the script.
const linkAttempts = 3

// link finds or allocates the contacts of identities atomically and in order, so
// concurrent importers of one person get one id and ids stay dense. It returns each
// identity's id, negated when allocated now, 0 when its identities belong to
// different contacts. An optimistic transaction does it with the least work for
// Redis: WATCH the counter and the index buckets the identities use, read them (GET,
// HMGET), assign ids in Go (assign), then INCRBY and HSET in MULTI/EXEC. When other
// writers of those buckets make it fail linkAttempts times, resolveScript does the
// same inside Redis (at about twice the Redis CPU: HSET from Lua converts every
// argument).
func (s *Store) link(ctx context.Context, ids []identity) ([]int64, error) {
	legacy := s.layout.legacy.Load()
	keys := []string{s.kSeq()}
	if legacy {
		keys = append(keys, s.kIdentPhoneOld(), s.kIdentEmailOld())
	}
	for k, bs := range identBucketsOf(ids) {
		for _, b := range bs {
			keys = append(keys, s.kIdentBucket(k, b))
		}
	}
	for range linkAttempts {
		var out []int64
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			var seq *redis.StringCmd
			var known knownIdentities
			_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
				seq = p.Get(ctx, keys[0])
				known = s.queueLookup(ctx, p, ids, legacy)
				return nil
			})
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if err := known.read(); err != nil {
				return err
			}
			last, err := seq.Uint64()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("read %s: %w", keys[0], err)
			}
			var a assignment
			out, a = assign(ids, known, last)
			if a.fresh == 0 && a.empty() {
				return nil
			}
			if last+uint64(a.fresh) > math.MaxUint32 {
				return errors.New("contact id space (uint32) exhausted")
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if a.fresh > 0 {
					p.IncrBy(ctx, keys[0], int64(a.fresh))
				}
				for k := range idKinds {
					for _, g := range groupLinks(a.links[k]) {
						p.HSet(ctx, s.kIdentBucket(k, g.bucket), g.args...)
					}
				}
				return nil
			})
			return err
		}, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return out, err
		}
	}
	return s.linkScript(ctx, ids)
}

// identBucketsOf returns the index buckets of identities' values, per kind, sorted.
func identBucketsOf(ids []identity) (out [idKinds][]uint32) {
	var used [idKinds][identBuckets]bool
	var seen [idKinds]bool
	for _, x := range ids {
		for k := range idKinds {
			if v := x.at(k); v != "" {
				used[k][identBucket(v)] = true
				seen[k] = true
			}
		}
	}
	for k := range idKinds {
		if !seen[k] {
			continue
		}
		for b := range uint32(identBuckets) {
			if used[k][b] {
				out[k] = append(out[k], b)
			}
		}
	}
	return out
}

// linkEntry is an identity index entry to write.
type linkEntry struct {
	x  string
	id int64
}

type linkGroup struct {
	bucket uint32
	args   []any // field, id, …
}

// groupLinks groups entries by index bucket, in bucket order.
func groupLinks(es []linkEntry) []linkGroup {
	if len(es) == 0 {
		return nil
	}
	var at [identBuckets]int32
	var gs []linkGroup
	for _, e := range es {
		b := identBucket(e.x)
		if at[b] == 0 {
			gs = append(gs, linkGroup{bucket: b})
			at[b] = int32(len(gs))
		}
		g := &gs[at[b]-1]
		g.args = append(g.args, e.x, e.id)
	}
	slices.SortFunc(gs, func(a, b linkGroup) int { return int(a.bucket) - int(b.bucket) })
	return gs
}

// assignment is what assign links: new ids and identity index entries, per kind.
type assignment struct {
	fresh int
	links [idKinds][]linkEntry
}

func (a *assignment) empty() bool {
	for _, l := range a.links {
		if len(l) > 0 {
			return false
		}
	}
	return true
}

// assign is resolveScript's algorithm in Go, given the indexes' entries for ids and
// the counter's value: each identity gets the contact its values name, or the next
// new id; the values it brings that the index lacks are linked to it.
func assign(ids []identity, known knownIdentities, last uint64) ([]int64, assignment) {
	out := make([]int64, len(ids))
	var a assignment
	a.links[idPhone] = make([]linkEntry, 0, len(ids))
	// Linked now. When every identity is one phone, the identities are distinct
	// phones: no phone is linked twice, and no map is needed.
	var linked [idKinds]map[string]int64
	for _, x := range ids {
		if x.email != "" || x.telegram != "" || x.line != "" {
			for k := range linked {
				linked[k] = map[string]int64{}
			}
			break
		}
	}
	for i, x := range ids {
		var have [idKinds]int64
		var id int64
		conflict := false
		for k := range idKinds {
			v := x.at(k)
			if v == "" {
				continue
			}
			h := int64(known.by[k][v])
			if h == 0 {
				h = linked[k][v]
			}
			if h != 0 {
				conflict = conflict || id != 0 && id != h
				id = h
			}
			have[k] = h
		}
		if conflict {
			continue // 0: conflict
		}
		if id == 0 {
			a.fresh++
			id = -int64(last + uint64(a.fresh))
		}
		for k := range idKinds {
			if v := x.at(k); v != "" && have[k] == 0 {
				if linked[k] != nil {
					linked[k][v] = id
				}
				a.links[k] = append(a.links[k], linkEntry{v, abs(id)})
			}
		}
		out[i] = id
	}
	return out, a
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// linkScript is link in one call of resolveScript.
func (s *Store) linkScript(ctx context.Context, ids []identity) ([]int64, error) {
	var given [idKinds]bool
	for _, x := range ids {
		for k := range idKinds {
			given[k] = given[k] || x.at(k) != ""
		}
	}
	legacy := s.layout.legacy.Load()
	keys := []string{s.kSeq(), s.kIdentPhoneOld(), s.kIdentEmailOld()}
	var at [idKinds][identBuckets]int
	for k, bs := range identBucketsOf(ids) {
		for _, b := range bs {
			keys = append(keys, s.kIdentBucket(k, b))
			at[k][b] = len(keys)
		}
	}
	args := make([]any, 0, 6+2*len(ids)*idKinds)
	args = append(args, len(ids), map[bool]int{true: 1}[legacy])
	for k := range idKinds {
		args = append(args, map[bool]int{true: len(ids)}[given[k]])
	}
	for k := range idKinds {
		if !given[k] {
			continue
		}
		for _, x := range ids {
			v, b := x.at(k), 0
			if v != "" {
				b = at[k][identBucket(v)]
			}
			args = append(args, v, b)
		}
	}
	raw, err := resolveScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(raw) != len(ids) {
		return nil, fmt.Errorf("got %d ids for %d identities", len(raw), len(ids))
	}
	return raw, nil
}

// knownIdentities are the ids the indexes hold for some identities, by kind.
type knownIdentities struct {
	by    [idKinds]map[string]uint32
	reads []identRead // the old indexes' first, then the buckets'
}

// identRead is one HMGET of an index.
type identRead struct {
	names []string
	kind  int
	cmd   *redis.SliceCmd
}

// lookupIdentities reads the ids of the identities' values: one HMGET of each index
// bucket they use, in one round trip.
func (s *Store) lookupIdentities(ctx context.Context, ids []identity) (knownIdentities, error) {
	pipe := s.rdb.Pipeline()
	k := s.queueLookup(ctx, pipe, ids, s.layout.legacy.Load())
	if pipe.Len() == 0 {
		return k, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return k, fmt.Errorf("look up identities: %w", err)
	}
	return k, k.read()
}

// queueLookup queues the HMGETs of lookupIdentities; read fills in their answers.
// With legacy, the old indexes (phones and emails) are read first: a migration moves
// an entry into its bucket before removing it from the old index, so one of the two
// reads sees it.
func (s *Store) queueLookup(ctx context.Context, pipe redis.Pipeliner, ids []identity, legacy bool) knownIdentities {
	var k knownIdentities
	k.by[idPhone] = make(map[string]uint32, len(ids))
	for kind := idEmail; kind < idKinds; kind++ {
		k.by[kind] = map[string]uint32{}
	}
	var names [idKinds]*[identBuckets][]string
	var all [idKinds][]string
	for _, x := range ids {
		for kind := range idKinds {
			v := x.at(kind)
			if v == "" {
				continue
			}
			if names[kind] == nil {
				names[kind] = new([identBuckets][]string)
			}
			b := identBucket(v)
			names[kind][b] = append(names[kind][b], v)
			if legacy && kind <= idEmail {
				all[kind] = append(all[kind], v)
			}
		}
	}
	for kind := idPhone; kind <= idEmail; kind++ {
		if len(all[kind]) > 0 {
			k.reads = append(k.reads, identRead{names: all[kind], kind: kind, cmd: pipe.HMGet(ctx, s.kIdentOld(kind), all[kind]...)})
		}
	}
	for b := range uint32(identBuckets) {
		for kind := range idKinds {
			if names[kind] != nil && len(names[kind][b]) > 0 {
				k.reads = append(k.reads, identRead{names: names[kind][b], kind: kind, cmd: pipe.HMGet(ctx, s.kIdentBucket(kind, b), names[kind][b]...)})
			}
		}
	}
	return k
}

func (k *knownIdentities) read() error {
	for _, r := range k.reads {
		vals, err := r.cmd.Result()
		if err != nil {
			return fmt.Errorf("look up identities: %w", err)
		}
		into := k.by[r.kind]
		for i, v := range vals {
			if str, ok := v.(string); ok {
				id, err := parseID(str)
				if err != nil {
					return fmt.Errorf("look up %s: %w", r.names[i], err)
				}
				into[r.names[i]] = id
			}
		}
	}
	return nil
}

// unlinkScript removes an index entry if it still names the contact (KEYS[1] the
// index, ARGV the phone or email and the id): when a contact's phone or email changes,
// the old one stops finding it, unless another contact took it meanwhile.
var unlinkScript = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0`

// LookupEmail returns the id of the contact with an email address (any case). It
// returns an error wrapping ErrNotFound when no contact has it, or when email is not
// an address.
func (s *Store) LookupEmail(ctx context.Context, email string) (uint32, error) {
	e, err := normEmail(email)
	if err != nil {
		return 0, fmt.Errorf("look up email %q: %v: %w", email, err, ErrNotFound)
	}
	if err := s.upgradeKeys(ctx); err != nil {
		return 0, err
	}
	known, err := s.lookupIdentities(ctx, []identity{{email: e}})
	if err != nil {
		return 0, fmt.Errorf("look up email %q: %w", email, err)
	}
	if id := known.by[idEmail][e]; id != 0 {
		return id, nil
	}
	return 0, fmt.Errorf("look up email %q: %w", email, ErrNotFound)
}

// Lookup returns the id of the contact with a phone number (as LookupPhone takes it),
// an email address (when s contains "@"), "telegram:<chat id>" or "line:<user id>".
func (s *Store) Lookup(ctx context.Context, phoneOrEmail string) (uint32, error) {
	if id, ok, err := s.lookupPrefixed(ctx, phoneOrEmail); ok {
		return id, err
	}
	if strings.Contains(phoneOrEmail, "@") {
		return s.LookupEmail(ctx, phoneOrEmail)
	}
	return s.LookupPhone(ctx, phoneOrEmail)
}

func parseID(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("corrupt identity index entry %q", s)
	}
	return uint32(id), nil
}

// String lists the identity's values, for a reject.
func (x identity) String() string {
	var parts []string
	for k := range idKinds {
		if v := x.at(k); v != "" {
			parts = append(parts, identKindNames[k]+" "+v)
		}
	}
	return strings.Join(parts, ", ")
}
