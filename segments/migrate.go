package segments

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The layout before buckets kept a hash per contact (P contact:ID, with t.NAME tag
// fields) and one hash per identity kind (P{P ident}:phone, P{P ident}:email). A
// store holding it keeps working: while the old identity hashes exist (keyLayout.
// legacy) every read looks in both layouts, every write moves the profiles it writes
// into their buckets, and UpgradeLayout moves the rest. Profiles move before
// identities, so a store whose old identity hashes are gone has no old profile left.

// migrateStep is how many profiles or identity entries one migration command moves:
// each command (a putScript or moveIdentScript call, a pipeline of HGETALL or DEL)
// stays far below Redis's 50 ms budget.
const migrateStep = 500

// UpgradeLayout moves a store written by a Herald before profile and identity
// buckets into them, in steps of 500 contacts: no command blocks Redis for long, and
// other processes keep reading and writing the store meanwhile (they read both
// layouts until it is done). It returns how many profiles and identity entries it
// moved; on a store already upgraded it does nothing. Imports and Upsert call it
// first; running it again after an interruption completes it.
func (s *Store) UpgradeLayout(ctx context.Context) (moved int64, err error) {
	if err := s.upgradeKeys(ctx); err != nil {
		return 0, err
	}
	if !s.layout.legacy.Load() {
		return 0, nil
	}
	s.layout.migrating.Lock()
	defer s.layout.migrating.Unlock()
	if !s.layout.legacy.Load() {
		return 0, nil // upgraded by another call meanwhile
	}
	n, err := s.moveProfiles(ctx)
	moved += n
	if err != nil {
		return moved, fmt.Errorf("upgrade the store's layout: move profiles: %w", err)
	}
	for _, email := range []bool{false, true} {
		n, err := s.moveIdentities(ctx, email)
		moved += n
		if err != nil {
			return moved, fmt.Errorf("upgrade the store's layout: move the identity index: %w", err)
		}
	}
	s.layout.legacy.Store(false)
	return moved, nil
}

// moveProfiles moves every P contact:ID hash into its bucket: SCAN (on every master
// of a cluster), HGETALL, putScript where the bucket has no record yet (a record there
// was written since, from the old hash, and wins), then DEL.
func (s *Store) moveProfiles(ctx context.Context) (int64, error) {
	var moved int64
	scan := func(ctx context.Context, node redis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, escapeGlob(s.prefix)+"contact:*", migrateStep).Result()
			if err != nil {
				return err
			}
			n, err := s.moveProfileKeys(ctx, keys)
			moved += n
			if err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		// Masters are scanned one at a time (moved is not shared between goroutines).
		var errs []error
		var masters []*redis.Client
		if err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
			masters = append(masters, c)
			return nil
		}); err != nil {
			return moved, err
		}
		for _, m := range masters {
			errs = append(errs, scan(ctx, m))
		}
		return moved, errors.Join(errs...)
	}
	return moved, scan(ctx, s.rdb)
}

// moveProfileKeys moves the old profile hashes among keys (others are ignored).
func (s *Store) moveProfileKeys(ctx context.Context, keys []string) (int64, error) {
	var ids []uint32
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, s.prefix+"contact:")
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(rest, 10, 32)
		if err != nil || id == 0 || strconv.FormatUint(id, 10) != rest {
			continue // not a profile (contact:seq of the oldest layout is renamed before)
		}
		ids = append(ids, uint32(id))
	}
	if len(ids) == 0 {
		return 0, nil
	}
	pipe := s.rdb.Pipeline()
	reads := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		reads[i] = pipe.HGetAll(ctx, s.kContactOld(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	w := newBatchWriter(s, "")
	for i, id := range ids {
		h := reads[i].Val()
		if len(h) == 0 {
			continue // moved by a writer meanwhile
		}
		p := profileFromHash(h)
		if !p.exists() {
			continue // not a contact's: left alone
		}
		w.put(profileBucketOf(id)).add(id, nil, encodeRecord(&p))
	}
	_, puts := w.commands(ctx, nil)
	for _, put := range puts {
		_ = pipe.Process(ctx, put.cmd)
	}
	if len(puts) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, err
		}
	}
	var moved int64
	for _, put := range puts {
		moved += int64(len(put.ids))
	}
	for _, id := range ids {
		pipe.Del(ctx, s.kContactOld(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return moved, err
	}
	return moved, nil
}

// moveIdentScript moves identity entries from the old index (KEYS[1]) into their
// buckets: ARGV is triples of phone or email, contact id, and the bucket's index in
// KEYS. An entry still naming that contact is set in the bucket unless the bucket
// has one (newer), and removed from the old index. It returns how many it moved.
const moveIdentScript = `
local moved = 0
for i = 1, #ARGV, 3 do
  local x, id = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[1], x) == id then
    redis.call('HSETNX', KEYS[tonumber(ARGV[i + 2])], x, id)
    redis.call('HDEL', KEYS[1], x)
    moved = moved + 1
  end
end
return moved
`

// moveIdentities moves the entries of an old identity index into its buckets, with
// HSCAN and one moveIdentScript call per step, until the old index is gone.
func (s *Store) moveIdentities(ctx context.Context, email bool) (int64, error) {
	old, bucket := s.kIdentPhoneOld(), s.kIdentPhoneBucket
	if email {
		old, bucket = s.kIdentEmailOld(), s.kIdentEmailBucket
	}
	var moved int64
	for {
		var cursor uint64
		for {
			kv, next, err := s.rdb.HScan(ctx, old, cursor, "", migrateStep).Result()
			if err != nil {
				return moved, err
			}
			for start := 0; start < len(kv); start += 2 * migrateStep {
				part := kv[start:min(start+2*migrateStep, len(kv))]
				keys := []string{old}
				var at [identBuckets]int
				args := make([]any, 0, len(part)/2*3)
				for i := 0; i+1 < len(part); i += 2 {
					b := identBucket(part[i])
					if at[b] == 0 {
						keys = append(keys, bucket(b))
						at[b] = len(keys)
					}
					args = append(args, part[i], part[i+1], at[b])
				}
				n, err := s.rdb.Eval(ctx, moveIdentScript, keys, args...).Int64()
				if err != nil {
					return moved, err
				}
				moved += n
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		n, err := s.rdb.Exists(ctx, old).Result()
		if err != nil || n == 0 {
			return moved, err
		}
	}
}

// escapeGlob escapes the characters SCAN MATCH patterns give a meaning.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\\^`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
