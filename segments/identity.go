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

// kIdentPhone and kIdentEmail are the index buckets holding a phone (E.164) or an
// email address.
func (s *Store) kIdentPhone(phone string) string { return s.kIdentPhoneBucket(identBucket(phone)) }
func (s *Store) kIdentEmail(email string) string { return s.kIdentEmailBucket(identBucket(email)) }
func (s *Store) kIdentPhoneBucket(b uint32) string {
	return s.ident + ":phone:" + strconv.FormatUint(uint64(b), 10)
}
func (s *Store) kIdentEmailBucket(b uint32) string {
	return s.ident + ":email:" + strconv.FormatUint(uint64(b), 10)
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

// identity is what identifies a contact in a row: a phone (E.164), an email, or both.
type identity struct{ phone, email string }

// resolved is the contact an identity belongs to.
type resolved struct {
	id       uint32
	isNew    bool // allocated now: there is no stored profile to read
	conflict bool // the phone and the email belong to different contacts
}

// resolveScript finds or allocates the contacts of identities, atomically and in order,
// so concurrent importers of one person get one id and ids stay dense. KEYS: the
// counter, the old phone and email indexes (read only when ARGV[3] is 1: the store
// still has them, see migrate.go), then the index buckets the identities use. ARGV: n,
// m (n when emails are given, else 0), legacy, n pairs of phone and its bucket's index
// in KEYS, then m pairs of email and bucket ("" and 0 for none). It reads each bucket
// with HMGET, gives rows whose identities are unknown provisional ids, takes the real
// ids with one INCRBY, links the unknown identities with HSET in their buckets, and
// returns each row's id: negated when allocated by this call, 0 when the phone and
// the email belong to different contacts.
var resolveScript = redis.NewScript(`
local n, m, legacy = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
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
  if legacy then
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
lookup(3, n, 'p', KEYS[2])
lookup(3 + 2 * n, m, 'e', KEYS[3])
local out, fresh, setp, sete = {}, 0, {}, {}
for i = 1, n do
  local p, e, kp, ke = ARGV[2 + 2 * i], '', tonumber(ARGV[3 + 2 * i]), 0
  if m > 0 then e, ke = ARGV[2 + 2 * n + 2 * i], tonumber(ARGV[3 + 2 * n + 2 * i]) end
  local ip, ie
  if p ~= '' then ip = known['p' .. p] end
  if e ~= '' then ie = known['e' .. e] end
  if ip and ie and ip ~= ie then
    out[i] = 0
  else
    local id = ip or ie
    if not id then
      fresh = fresh + 1
      id = -fresh
    end
    if p ~= '' and not ip then
      known['p' .. p] = id
      setp[#setp + 1] = {kp, p, id}
    end
    if e ~= '' and not ie then
      known['e' .. e] = id
      sete[#sete + 1] = {ke, e, id}
    end
    out[i] = id
  end
end
if fresh == 0 and #setp == 0 and #sete == 0 then return out end
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
link(setp)
link(sete)
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
		for i, x := range ids {
			ip, ie := known.phones[x.phone], known.emails[x.email]
			switch {
			case ip != 0 && ie != 0 && ip != ie:
				out[i].conflict = true
			case (x.phone == "" || ip != 0) && (x.email == "" || ie != 0):
				out[i].id = max(ip, ie)
			default:
				todo = append(todo, i)
			}
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
// identity's id, negated when allocated now, 0 when its phone and email belong to
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
	pb, eb := identBucketsOf(ids)
	for _, b := range pb {
		keys = append(keys, s.kIdentPhoneBucket(b))
	}
	for _, b := range eb {
		keys = append(keys, s.kIdentEmailBucket(b))
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
			if a.fresh == 0 && len(a.phones) == 0 && len(a.emails) == 0 {
				return nil
			}
			if last+uint64(a.fresh) > math.MaxUint32 {
				return errors.New("contact id space (uint32) exhausted")
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if a.fresh > 0 {
					p.IncrBy(ctx, keys[0], int64(a.fresh))
				}
				for _, g := range groupLinks(a.phones) {
					p.HSet(ctx, s.kIdentPhoneBucket(g.bucket), g.args...)
				}
				for _, g := range groupLinks(a.emails) {
					p.HSet(ctx, s.kIdentEmailBucket(g.bucket), g.args...)
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

// identBucketsOf returns the index buckets of identities' phones and emails, sorted.
func identBucketsOf(ids []identity) (phones, emails []uint32) {
	var p, e [identBuckets]bool
	for _, x := range ids {
		if x.phone != "" {
			p[identBucket(x.phone)] = true
		}
		if x.email != "" {
			e[identBucket(x.email)] = true
		}
	}
	for b := range uint32(identBuckets) {
		if p[b] {
			phones = append(phones, b)
		}
		if e[b] {
			emails = append(emails, b)
		}
	}
	return phones, emails
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

// assignment is what assign links: new ids and identity index entries.
type assignment struct {
	fresh          int
	phones, emails []linkEntry
}

// assign is resolveScript's algorithm in Go, given the indexes' entries for ids and
// the counter's value: each identity gets the contact its phone or email names, or
// the next new id; the phone or email it brings that the index lacks is linked to it.
func assign(ids []identity, known knownIdentities, last uint64) ([]int64, assignment) {
	out := make([]int64, len(ids))
	var a assignment
	a.phones = make([]linkEntry, 0, len(ids))
	// Linked now. Without emails the identities are distinct phones: no phone is
	// linked twice.
	var lp, le map[string]int64
	for _, x := range ids {
		if x.email != "" {
			lp, le = map[string]int64{}, map[string]int64{}
			break
		}
	}
	for i, x := range ids {
		var ip, ie int64
		if x.phone != "" {
			if ip = int64(known.phones[x.phone]); ip == 0 {
				ip = lp[x.phone]
			}
		}
		if x.email != "" {
			if ie = int64(known.emails[x.email]); ie == 0 {
				ie = le[x.email]
			}
		}
		if ip != 0 && ie != 0 && ip != ie {
			continue // 0: conflict
		}
		id := ip
		if id == 0 {
			id = ie
		}
		if id == 0 {
			a.fresh++
			id = -int64(last + uint64(a.fresh))
		}
		if x.phone != "" && ip == 0 {
			if lp != nil {
				lp[x.phone] = id
			}
			a.phones = append(a.phones, linkEntry{x.phone, abs(id)})
		}
		if x.email != "" && ie == 0 {
			le[x.email] = id
			a.emails = append(a.emails, linkEntry{x.email, abs(id)})
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
	withEmail := false
	for _, x := range ids {
		withEmail = withEmail || x.email != ""
	}
	m := 0
	if withEmail {
		m = len(ids)
	}
	legacy := s.layout.legacy.Load()
	keys := []string{s.kSeq(), s.kIdentPhoneOld(), s.kIdentEmailOld()}
	var pk, ek [identBuckets]int
	pb, eb := identBucketsOf(ids)
	for _, b := range pb {
		keys = append(keys, s.kIdentPhoneBucket(b))
		pk[b] = len(keys)
	}
	for _, b := range eb {
		keys = append(keys, s.kIdentEmailBucket(b))
		ek[b] = len(keys)
	}
	args := make([]any, 0, 3+2*len(ids)+2*m)
	args = append(args, len(ids), m, map[bool]int{true: 1}[legacy])
	for _, x := range ids {
		k := 0
		if x.phone != "" {
			k = pk[identBucket(x.phone)]
		}
		args = append(args, x.phone, k)
	}
	if withEmail {
		for _, x := range ids {
			k := 0
			if x.email != "" {
				k = ek[identBucket(x.email)]
			}
			args = append(args, x.email, k)
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

// knownIdentities are the ids the indexes hold for some phones and emails.
type knownIdentities struct {
	phones, emails map[string]uint32
	reads          []identRead // the old indexes' first, then the buckets'
}

// identRead is one HMGET of an index.
type identRead struct {
	names []string
	email bool
	cmd   *redis.SliceCmd
}

// lookupIdentities reads the ids of the identities' phones and emails: one HMGET of
// each index bucket they use, in one round trip.
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
// With legacy, the old indexes are read first: a migration moves an entry into its
// bucket before removing it from the old index, so one of the two reads sees it.
func (s *Store) queueLookup(ctx context.Context, pipe redis.Pipeliner, ids []identity, legacy bool) knownIdentities {
	k := knownIdentities{phones: make(map[string]uint32, len(ids)), emails: map[string]uint32{}}
	var phones, emails [identBuckets][]string
	var allPhones, allEmails []string
	for _, x := range ids {
		if x.phone != "" {
			b := identBucket(x.phone)
			phones[b] = append(phones[b], x.phone)
			if legacy {
				allPhones = append(allPhones, x.phone)
			}
		}
		if x.email != "" {
			b := identBucket(x.email)
			emails[b] = append(emails[b], x.email)
			if legacy {
				allEmails = append(allEmails, x.email)
			}
		}
	}
	if len(allPhones) > 0 {
		k.reads = append(k.reads, identRead{names: allPhones, cmd: pipe.HMGet(ctx, s.kIdentPhoneOld(), allPhones...)})
	}
	if len(allEmails) > 0 {
		k.reads = append(k.reads, identRead{names: allEmails, email: true, cmd: pipe.HMGet(ctx, s.kIdentEmailOld(), allEmails...)})
	}
	for b := range uint32(identBuckets) {
		if len(phones[b]) > 0 {
			k.reads = append(k.reads, identRead{names: phones[b], cmd: pipe.HMGet(ctx, s.kIdentPhoneBucket(b), phones[b]...)})
		}
		if len(emails[b]) > 0 {
			k.reads = append(k.reads, identRead{names: emails[b], email: true, cmd: pipe.HMGet(ctx, s.kIdentEmailBucket(b), emails[b]...)})
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
		into := k.phones
		if r.email {
			into = k.emails
		}
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
	if id := known.emails[e]; id != 0 {
		return id, nil
	}
	return 0, fmt.Errorf("look up email %q: %w", email, ErrNotFound)
}

// Lookup returns the id of the contact with a phone number (as LookupPhone takes it)
// or, when s contains "@", an email address.
func (s *Store) Lookup(ctx context.Context, phoneOrEmail string) (uint32, error) {
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
