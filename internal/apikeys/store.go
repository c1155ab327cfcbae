package apikeys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors of the store. ErrUnauthorized says nothing of why (unknown, malformed,
// wrong secret, revoked): the API answers them all alike.
var (
	ErrNotFound     = errors.New("API key not found")
	ErrNameTaken    = errors.New("an API key of that name exists (revoke it first, or pick another name)")
	ErrUnauthorized = errors.New("invalid API key")
	ErrInvalidSpec  = errors.New("invalid API key spec") // what Create refuses, wrapped with why
)

// Key is an API key as stored and listed: never its secret.
type Key struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Role        Role         `json:"role"`
	Permissions []Permission `json:"permissions"`
	// RatePerSecond is the key's own request rate limit (0: the server's default).
	RatePerSecond float64   `json:"rate_per_second,omitempty"`
	Created       time.Time `json:"created_at,omitzero"`
	LastUsed      time.Time `json:"last_used_at,omitzero"` // to within LastUsedResolution
	Revoked       time.Time `json:"revoked_at,omitzero"`
}

// Can reports whether the key has permission p.
func (k Key) Can(p Permission) bool {
	for _, q := range k.Permissions {
		if q == p {
			return true
		}
	}
	return false
}

// Created is a new key with its secret, which is shown this once.
type Created struct {
	Key
	Secret string `json:"secret"` // the whole key, for Authorization: Bearer
}

// Spec is what Create needs.
type Spec struct {
	Name          string
	Role          Role
	CanLaunch     bool    // a marketer's key may launch campaigns
	RatePerSecond float64 // 0: the server's default
}

// LastUsedResolution is how stale a key's last_used may be: Authenticate writes it at
// most this often per key, not on every request.
const LastUsedResolution = 10 * time.Second

// Store keeps API keys in Redis.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewStore returns the key store under prefix.
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix, now: time.Now}
}

func (s *Store) keyKey(id string) string { return s.prefix + "{apikeys}:key:" + id }
func (s *Store) idsKey() string          { return s.prefix + "{apikeys}:ids" }
func (s *Store) namesKey() string        { return s.prefix + "{apikeys}:names" }

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	idRE   = regexp.MustCompile(`^[0-9a-f]{12}$`)
)

// createScript stores a key unless its name is taken. KEYS: names, key, ids; ARGV:
// name, id, created ms, then field/value pairs.
var createScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local f = {}
for i = 4, #ARGV do f[#f+1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(f))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
`)

// Create makes a key and returns it with its secret (shown once; only its SHA-256 is
// kept).
func (s *Store) Create(ctx context.Context, spec Spec) (Created, error) {
	if !nameRE.MatchString(spec.Name) || idRE.MatchString(spec.Name) {
		return Created{}, fmt.Errorf("%w: name %q: want 1 to 64 letters, digits, '.', '_' or '-' (and not 12 hex digits, which read as a key id)", ErrInvalidSpec, spec.Name)
	}
	perms, err := PermissionsOf(spec.Role, spec.CanLaunch)
	if err != nil {
		return Created{}, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	if spec.RatePerSecond < 0 || math.IsNaN(spec.RatePerSecond) || math.IsInf(spec.RatePerSecond, 0) {
		return Created{}, fmt.Errorf("%w: rate %v: want a positive number of requests per second, or 0 for the server's default", ErrInvalidSpec, spec.RatePerSecond)
	}
	idb := make([]byte, 6)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return Created{}, err
	}
	if _, err := rand.Read(secret); err != nil {
		return Created{}, err
	}
	id := hex.EncodeToString(idb)
	full := "hk_" + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(full))
	now := s.now().UTC().Truncate(time.Millisecond)
	k := Key{ID: id, Name: spec.Name, Role: spec.Role, Permissions: perms, RatePerSecond: spec.RatePerSecond, Created: now}
	ps := make([]string, len(perms))
	for i, p := range perms {
		ps[i] = string(p)
	}
	ok, err := createScript.Run(ctx, s.rdb, []string{s.namesKey(), s.keyKey(id), s.idsKey()}, spec.Name, id, now.UnixMilli(),
		"name", spec.Name, "role", string(spec.Role), "permissions", strings.Join(ps, ","), "hash", hex.EncodeToString(sum[:]),
		"rate", strconv.FormatFloat(spec.RatePerSecond, 'g', -1, 64), "created", now.UnixMilli()).Int()
	if err != nil {
		return Created{}, fmt.Errorf("create API key: %w", err)
	}
	if ok == 0 {
		return Created{}, fmt.Errorf("name %q: %w", spec.Name, ErrNameTaken)
	}
	return Created{Key: k, Secret: full}, nil
}

func keyFrom(id string, m map[string]string) Key {
	ms := func(f string) time.Time {
		n, _ := strconv.ParseInt(m[f], 10, 64)
		if n <= 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	k := Key{ID: id, Name: m["name"], Role: Role(m["role"]), Permissions: []Permission{}, Created: ms("created"),
		LastUsed: ms("last_used"), Revoked: ms("revoked")}
	k.RatePerSecond, _ = strconv.ParseFloat(m["rate"], 64)
	for _, p := range strings.Split(m["permissions"], ",") {
		if p != "" {
			k.Permissions = append(k.Permissions, Permission(p))
		}
	}
	if k.Role == Admin {
		// An admin may do everything, including what was added after its key was made.
		k.Permissions = slices.Clone(Permissions)
		slices.Sort(k.Permissions)
	}
	return k
}

// Get returns a key by id.
func (s *Store) Get(ctx context.Context, id string) (Key, error) {
	if !idRE.MatchString(id) {
		return Key{}, fmt.Errorf("API key %q: %w", id, ErrNotFound)
	}
	m, err := s.rdb.HGetAll(ctx, s.keyKey(id)).Result()
	if err != nil {
		return Key{}, fmt.Errorf("API key %s: %w", id, err)
	}
	if len(m) == 0 {
		return Key{}, fmt.Errorf("API key %s: %w", id, ErrNotFound)
	}
	return keyFrom(id, m), nil
}

// List returns every key, revoked ones too, oldest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	ids, err := s.rdb.ZRange(ctx, s.idsKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.keyKey(id))
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("list API keys: %w", err)
		}
	}
	out := make([]Key, 0, len(ids))
	for i, id := range ids {
		if m := cmds[i].Val(); len(m) > 0 {
			out = append(out, keyFrom(id, m))
		}
	}
	return out, nil
}

// revokeScript marks a key revoked and frees its name. KEYS: key, names; ARGV: ms.
var revokeScript = redis.NewScript(`
local name = redis.call('HGET', KEYS[1], 'name')
if not name then return 0 end
if redis.call('HGET', KEYS[1], 'revoked') then return 2 end
redis.call('HSET', KEYS[1], 'revoked', ARGV[1])
if redis.call('HGET', KEYS[2], name) == ARGV[2] then redis.call('HDEL', KEYS[2], name) end
return 1
`)

// Revoke revokes the key with that id, or the live key with that name: from then on it
// authenticates nothing. Revoking a revoked key changes nothing.
func (s *Store) Revoke(ctx context.Context, nameOrID string) (Key, error) {
	id := nameOrID
	if !idRE.MatchString(id) {
		var err error
		id, err = s.rdb.HGet(ctx, s.namesKey(), nameOrID).Result()
		if errors.Is(err, redis.Nil) {
			return Key{}, fmt.Errorf("API key %q: %w (herald keys list shows them)", nameOrID, ErrNotFound)
		}
		if err != nil {
			return Key{}, fmt.Errorf("revoke API key: %w", err)
		}
	}
	res, err := revokeScript.Run(ctx, s.rdb, []string{s.keyKey(id), s.namesKey()}, s.now().UnixMilli(), id).Int()
	if err != nil {
		return Key{}, fmt.Errorf("revoke API key: %w", err)
	}
	if res == 0 {
		return Key{}, fmt.Errorf("API key %q: %w (herald keys list shows them)", nameOrID, ErrNotFound)
	}
	return s.Get(ctx, id)
}

// ParseID returns the id a presented key names, or false when it is not shaped like
// a key (the id is not secret: logs and the audit name keys by it).
func ParseID(presented string) (string, bool) {
	rest, ok := strings.CutPrefix(presented, "hk_")
	if !ok || len(rest) != 12+1+43 || rest[12] != '_' || !idRE.MatchString(rest[:12]) {
		return "", false
	}
	return rest[:12], true
}

// Authenticate returns the live key a presented secret is, or ErrUnauthorized. The
// digest comparison takes the same time whatever the secret. It records the key's
// last use (at most every LastUsedResolution).
func (s *Store) Authenticate(ctx context.Context, presented string) (Key, error) {
	id, ok := ParseID(presented)
	if !ok {
		return Key{}, ErrUnauthorized
	}
	m, err := s.rdb.HGetAll(ctx, s.keyKey(id)).Result()
	if err != nil {
		return Key{}, fmt.Errorf("authenticate: %w", err)
	}
	sum := sha256.Sum256([]byte(presented))
	want, _ := hex.DecodeString(m["hash"])
	if len(m) == 0 || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return Key{}, ErrUnauthorized
	}
	k := keyFrom(id, m)
	if !k.Revoked.IsZero() {
		return Key{}, ErrUnauthorized
	}
	now := s.now()
	if now.Sub(k.LastUsed) >= LastUsedResolution {
		if err := s.rdb.HSet(ctx, s.keyKey(id), "last_used", now.UnixMilli()).Err(); err != nil {
			return Key{}, fmt.Errorf("authenticate: %w", err)
		}
		k.LastUsed = now.UTC().Truncate(time.Millisecond)
	}
	return k, nil
}
