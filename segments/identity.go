package segments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// The identity index: phone (E.164) → contact id and email → contact id, and the id
// counter. Linking (a WATCH/MULTI transaction, or its fallback script) reads and
// writes all three atomically, so they share a Redis Cluster hash tag: {P ident} (P
// the store's prefix), one slot per store.

// identTag is P{P ident} (braces of P left out of the tag). A prefix whose first "{" is
// followed by "}" makes Redis Cluster hash whole keys: such prefixes cannot be used on
// a cluster.
func identTag(prefix string) string {
	return prefix + "{" + strings.NewReplacer("{", "", "}", "").Replace(prefix) + "ident}"
}

func (s *Store) kSeq() string        { return s.ident + ":seq" }
func (s *Store) kIdentPhone() string { return s.ident + ":phone" }
func (s *Store) kIdentEmail() string { return s.ident + ":email" }

// Names of the counter and phone index before they had a hash tag.
func (s *Store) kSeqV1() string        { return s.prefix + "contact:seq" }
func (s *Store) kIdentPhoneV1() string { return s.prefix + "ident:phone" }

// keyLayout renames the keys of the layout before hash tags (contact:seq, ident:phone)
// to their names now, once per Store: a store written by an older Herald is read as it
// was. On Redis Cluster there is nothing to rename (the older layout could not import
// there: its id script used keys of two slots).
type keyLayout struct {
	mu   sync.Mutex
	done bool
}

func (s *Store) upgradeKeys(ctx context.Context) error {
	s.layout.mu.Lock()
	defer s.layout.mu.Unlock()
	if s.layout.done {
		return nil
	}
	olds := []string{s.kSeqV1(), s.kIdentPhoneV1()}
	news := []string{s.kSeq(), s.kIdentPhone()}
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
// so concurrent importers of one person get one id and ids stay dense. KEYS: counter,
// phone index, email index. ARGV: n, m (n when emails are given, else 0), n phones,
// then m emails ("" for none). It reads each index with HMGET (1,000 fields a call),
// gives rows whose identities are unknown provisional ids, takes the real ids with one
// INCRBY, links the unknown identities with HSET (500 fields a call), and returns
// each row's id: negated when allocated by this call, 0 when the phone and the email
// belong to different contacts.
var resolveScript = redis.NewScript(`
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local known = {}
local function lookup(key, off, count, kind)
  local names = {}
  for i = 1, count do
    local v = ARGV[off + i]
    if v ~= '' then names[#names + 1] = v end
  end
  for s = 1, #names, 1000 do
    local e = math.min(s + 999, #names)
    local vals = redis.call('HMGET', key, unpack(names, s, e))
    for j = 1, #vals do
      if vals[j] then known[kind .. names[s + j - 1]] = tonumber(vals[j]) end
    end
  end
end
lookup(KEYS[2], 2, n, 'p')
lookup(KEYS[3], 2 + n, m, 'e')
local out, fresh, setp, sete = {}, 0, {}, {}
for i = 1, n do
  local p, e = ARGV[2 + i], ''
  if m > 0 then e = ARGV[2 + n + i] end
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
      setp[#setp + 1] = p
      setp[#setp + 1] = id
    end
    if e ~= '' and not ie then
      known['e' .. e] = id
      sete[#sete + 1] = e
      sete[#sete + 1] = id
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
local function link(key, list)
  local args = {}
  for j = 1, #list, 2 do
    args[#args + 1] = list[j]
    args[#args + 1] = real(list[j + 1])
    if #args >= 1000 then
      redis.call('HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
link(KEYS[2], setp)
link(KEYS[3], sete)
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
// Redis: WATCH the counter and both indexes, read them (GET, HMGET), assign ids in Go
// (assign), then INCRBY and HSET in MULTI/EXEC. When other writers of the indexes make
// it fail linkAttempts times, resolveScript does the same inside Redis (at about twice
// the Redis CPU: HSET from Lua converts every argument).
func (s *Store) link(ctx context.Context, ids []identity) ([]int64, error) {
	keys := []string{s.kSeq(), s.kIdentPhone(), s.kIdentEmail()}
	for range linkAttempts {
		var out []int64
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			var seq *redis.StringCmd
			var known knownIdentities
			_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
				seq = p.Get(ctx, keys[0])
				known = s.queueLookup(ctx, p, ids)
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
				if len(a.phones) > 0 {
					p.HSet(ctx, keys[1], a.phones...)
				}
				if len(a.emails) > 0 {
					p.HSet(ctx, keys[2], a.emails...)
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

// assignment is what assign links: new ids and identity index entries.
type assignment struct {
	fresh          int
	phones, emails []any // field, id, field, id, …
}

// assign is resolveScript's algorithm in Go, given the indexes' entries for ids and
// the counter's value: each identity gets the contact its phone or email names, or
// the next new id; the phone or email it brings that the index lacks is linked to it.
func assign(ids []identity, known knownIdentities, last uint64) ([]int64, assignment) {
	out := make([]int64, len(ids))
	var a assignment
	a.phones = make([]any, 0, 2*len(ids))
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
			a.phones = append(a.phones, x.phone, abs(id))
		}
		if x.email != "" && ie == 0 {
			le[x.email] = id
			a.emails = append(a.emails, x.email, abs(id))
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
	args := make([]any, 0, 2+len(ids)+m)
	args = append(args, len(ids), m)
	for _, x := range ids {
		args = append(args, x.phone)
	}
	if withEmail {
		for _, x := range ids {
			args = append(args, x.email)
		}
	}
	raw, err := resolveScript.Run(ctx, s.rdb, []string{s.kSeq(), s.kIdentPhone(), s.kIdentEmail()}, args...).Int64Slice()
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
	phones, emails         map[string]uint32
	phoneNames, emailNames []string
	phoneCmd, emailCmd     *redis.SliceCmd
}

// lookupIdentities reads the ids of the identities' phones and emails: one HMGET of
// each index, in one round trip.
func (s *Store) lookupIdentities(ctx context.Context, ids []identity) (knownIdentities, error) {
	pipe := s.rdb.Pipeline()
	k := s.queueLookup(ctx, pipe, ids)
	if pipe.Len() == 0 {
		return k, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return k, fmt.Errorf("look up identities: %w", err)
	}
	return k, k.read()
}

// queueLookup queues the HMGETs of lookupIdentities; read fills in their answers.
func (s *Store) queueLookup(ctx context.Context, pipe redis.Pipeliner, ids []identity) knownIdentities {
	k := knownIdentities{phones: map[string]uint32{}, emails: map[string]uint32{}}
	for _, x := range ids {
		if x.phone != "" {
			k.phoneNames = append(k.phoneNames, x.phone)
		}
		if x.email != "" {
			k.emailNames = append(k.emailNames, x.email)
		}
	}
	if len(k.phoneNames) > 0 {
		k.phoneCmd = pipe.HMGet(ctx, s.kIdentPhone(), k.phoneNames...)
	}
	if len(k.emailNames) > 0 {
		k.emailCmd = pipe.HMGet(ctx, s.kIdentEmail(), k.emailNames...)
	}
	return k
}

func (k *knownIdentities) read() error {
	fill := func(c *redis.SliceCmd, names []string, into map[string]uint32) error {
		if c == nil {
			return nil
		}
		vals, err := c.Result()
		if err != nil {
			return fmt.Errorf("look up identities: %w", err)
		}
		for i, v := range vals {
			if str, ok := v.(string); ok {
				id, err := parseID(str)
				if err != nil {
					return fmt.Errorf("look up %s: %w", names[i], err)
				}
				into[names[i]] = id
			}
		}
		return nil
	}
	if err := fill(k.phoneCmd, k.phoneNames, k.phones); err != nil {
		return err
	}
	return fill(k.emailCmd, k.emailNames, k.emails)
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
	v, err := s.rdb.HGet(ctx, s.kIdentEmail(), e).Result()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("look up email %q: %w", email, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("look up email %q: %w", email, err)
	}
	id, err := parseID(v)
	if err != nil {
		return 0, fmt.Errorf("look up email %q: %w", email, err)
	}
	return id, nil
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
