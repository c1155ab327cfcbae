package throttle

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Writer locks of the consent ledger. Apply reads a contact's chain head, seals records
// on it, publishes them, then moves the head; a second writer in between would seal on
// the same head and fork the chain. So Apply first takes every contact of its batch in
// P consent:writing (a hash contact id → "token:until ms", in the consent keys' slot),
// all or none, and gives them back when done. A lock outlives a crashed writer by at
// most writerLockTTL; the publish is cut off well before that, so a lock never runs out
// under a live writer.
const (
	writerLockTTL     = 60 * time.Second
	writerLockPublish = 40 * time.Second // the longest a locked writer waits for the ledger topic
	writerLockWait    = 15 * time.Second // the longest Apply waits for another writer's lock
)

func (l *Ledger) writingKey() string { return consentBase(l.prefix, l.rdb) + "writing" }

// writerLockScript takes the fields ARGV[3..] of KEYS[1] for token ARGV[1] until ARGV[2] ms
// after Redis's clock, unless one is held by another token and not yet expired: then it
// takes nothing and returns the index (1-based, among the fields) of the first held one.
var writerLockScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local tok, exp = string.match(v, '^(.*):(%d+)$')
    if tok ~= ARGV[1] and tonumber(exp) > now then return i - 2 end
  end
end
local val = ARGV[1] .. ':' .. string.format('%d', now + tonumber(ARGV[2]))
for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], val) end
return 0
`)

// writerUnlockScript gives back the fields ARGV[2..] of KEYS[1] that token ARGV[1] holds.
var writerUnlockScript = redis.NewScript(`
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
`)

// lockContacts takes the writer locks of the changes' contacts, waiting for other
// writers' (polling, at most writerLockWait), and returns the function that gives
// them back.
func (l *Ledger) lockContacts(ctx context.Context, changes []Change) (func(), error) {
	seen := make(map[uint32]bool, len(changes))
	args := []any{newRecordID(), writerLockTTL.Milliseconds()}
	ids := []uint32{}
	for _, c := range changes {
		if !seen[c.ContactID] {
			seen[c.ContactID] = true
			ids = append(ids, c.ContactID)
			args = append(args, strconv.FormatUint(uint64(c.ContactID), 10))
		}
	}
	keys := []string{l.writingKey()}
	deadline := time.Now().Add(writerLockWait)
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		busy, err := writerLockScript.Run(ctx, l.rdb, keys, args...).Int()
		if err != nil {
			return nil, fmt.Errorf("lock consent writers: %w", err)
		}
		if busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("consent of contact %d: another writer has held it for %s; try again", ids[busy-1], writerLockWait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
	unlockArgs := append([]any{args[0]}, args[2:]...)
	return func() {
		// Given back even when ctx is done: otherwise the contacts stay locked for the TTL.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = writerUnlockScript.Run(uctx, l.rdb, keys, unlockArgs...).Err()
	}, nil
}
