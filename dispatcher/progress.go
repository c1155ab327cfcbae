package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tracker records per-(campaign, contact) progress: claims before a send and the final
// outcome after it. It is shared by workers (claim, finish) and the webhook server
// (settling sends whose worker died before recording them).
//
// A claim is a lease held by one worker (a random token per process): if its worker dies
// before the send starts, the lease runs out and the job's redelivery takes it over. Just
// before the provider request the worker marks the claim "sending" (only if it still
// holds it); from then on the claim is in doubt until the status webhook or the worker
// records the outcome. So a crash never loses a job that was not sent, and never sends a
// job twice.
type Tracker struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
	token  string
	lease  time.Duration
}

// NewTracker returns a tracker under prefix, with a fresh owner token.
func NewTracker(rdb redis.UniversalClient, prefix string) *Tracker {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return &Tracker{rdb: rdb, prefix: prefix, now: time.Now, token: base64.RawURLEncoding.EncodeToString(b), lease: 20 * time.Second}
}

// WithLease sets how long a claim outlives a dead worker that had not started the send
// (default 20 s). It returns t.
func (t *Tracker) WithLease(d time.Duration) *Tracker {
	t.lease = d
	return t
}

// Lease is the claim lease.
func (t *Tracker) Lease() time.Duration { return t.lease }

// Claim results.
const (
	Claimed     = 0 // the caller owns the job now
	InDoubt     = 1 // its send started and has no outcome yet: the status webhook settles it
	AlreadyDone = 2 // the contact already has an outcome: drop the job
	Held        = 3 // another worker holds a live lease on it: try again after the lease
)

// Outcome fields (campaign hash counters).
const (
	OutcomeSent    = "sent"
	OutcomeSkipped = "skipped"
	OutcomeFailed  = "failed"
)

// Key names one (campaign, contact).
type Key struct {
	Campaign string
	Contact  uint32
}

func (t *Tracker) keys(campaign string) []string {
	base := t.prefix + "{cmp:" + campaign + "}"
	return []string{base, base + ":claimed", base + ":done", base + ":leases"}
}

// claimScript: ARGV = contact, token, now ms, lease ms. Leases are "token:expiry ms" or
// "token:sending".
var claimScript = redis.NewScript(`
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return 2 end
local mine = ARGV[2] .. ':' .. (tonumber(ARGV[3]) + tonumber(ARGV[4]))
if redis.call('SETBIT', KEYS[2], ARGV[1], 1) == 0 then
  redis.call('HSET', KEYS[4], ARGV[1], mine)
  return 0
end
local l = redis.call('HGET', KEYS[4], ARGV[1])
if not l then return 1 end
if string.find(l, ':sending:', 1, true) then return 1 end
local exp = string.match(l, ':([^:]*)$')
if tonumber(exp) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[4], ARGV[1], mine)
  return 0
end
return 3
`)

// sendingScript: ARGV = contact, token, now ms. Marks the claim "token:sending:now" if
// token still holds it.
var sendingScript = redis.NewScript(`
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return 0 end
local l = redis.call('HGET', KEYS[4], ARGV[1])
if not l or string.sub(l, 1, #ARGV[2] + 1) ~= ARGV[2] .. ':' then return 0 end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2] .. ':sending:' .. ARGV[3])
return 1
`)

// finishScript marks a contact done once, counts its outcome and completes the campaign
// when every audience member has one. Returns 1 if this call recorded the outcome.
var finishScript = redis.NewScript(`
if redis.call('SETBIT', KEYS[3], ARGV[1], 1) == 1 then return 0 end
redis.call('SETBIT', KEYS[2], ARGV[1], 1)
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
local done = redis.call('HINCRBY', KEYS[1], 'done', 1)
local aud = tonumber(redis.call('HGET', KEYS[1], 'audience') or '-1')
if done >= aud and redis.call('HGET', KEYS[1], 'fanout_done') == '1' and redis.call('HGET', KEYS[1], 'state') == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'completed_at', ARGV[3])
end
return 1
`)

// releaseScript: ARGV = contact, token. Only the lease's holder gives it back.
var releaseScript = redis.NewScript(`
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 0 then
  local l = redis.call('HGET', KEYS[4], ARGV[1])
  if l and string.sub(l, 1, #ARGV[2] + 1) ~= ARGV[2] .. ':' then return 0 end
  redis.call('SETBIT', KEYS[2], ARGV[1], 0)
  redis.call('HDEL', KEYS[4], ARGV[1])
end
return 1
`)

// Claim atomically claims each key for this tracker's owner token; one pipelined round
// trip. Results: Claimed, InDoubt, AlreadyDone or Held.
func (t *Tracker) Claim(ctx context.Context, keys []Key) ([]int, error) {
	now, lease := t.now().UnixMilli(), t.lease.Milliseconds()
	return t.run(ctx, claimScript, keys, func(int) []any { return []any{t.token, now, lease} })
}

// MarkSending records that the sends of keys start now, for the claims this tracker still
// holds; false means the claim was lost (its lease ran out and another worker took the
// job over) and the caller must not send.
func (t *Tracker) MarkSending(ctx context.Context, keys []Key) ([]bool, error) {
	now := t.now().UnixMilli()
	res, err := t.run(ctx, sendingScript, keys, func(int) []any { return []any{t.token, now} })
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r == 1
	}
	return out, nil
}

// InDoubt reports, per key, whether it was claimed and never finished: a send whose
// worker died before recording it. One pipelined round trip.
func (t *Tracker) InDoubt(ctx context.Context, keys []Key) ([]bool, error) {
	res, err := t.run(ctx, inDoubtScript, keys, nil)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r == 1
	}
	return out, nil
}

var inDoubtScript = redis.NewScript(`
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 0 and redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return 1 end
return 0
`)

// Release gives back claims (for a retry published as a new job) unless already done.
func (t *Tracker) Release(ctx context.Context, keys []Key) error {
	_, err := t.run(ctx, releaseScript, keys, func(int) []any { return []any{t.token} })
	return err
}

// Finish records each key's outcome (OutcomeSent, OutcomeSkipped, OutcomeFailed) once.
// It returns, per key, whether this call recorded it (false: it already had one).
func (t *Tracker) Finish(ctx context.Context, keys []Key, outcomes []string) ([]bool, error) {
	now := t.now().UnixMilli()
	res, err := t.run(ctx, finishScript, keys, func(i int) []any { return []any{outcomes[i], now} })
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r == 1
	}
	return out, nil
}

func (t *Tracker) run(ctx context.Context, s *redis.Script, keys []Key, extra func(int) []any) ([]int, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	exec := func(sha bool) ([]*redis.Cmd, error) {
		pipe := t.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(keys))
		for i, k := range keys {
			args := []any{k.Contact}
			if extra != nil {
				args = append(args, extra(i)...)
			}
			if sha {
				cmds[i] = s.EvalSha(ctx, pipe, t.keys(k.Campaign), args...)
			} else {
				cmds[i] = s.Eval(ctx, pipe, t.keys(k.Campaign), args...)
			}
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	// EVALSHA spares Redis the script text of every call. A server that does not know
	// the script (restarted, flushed) answers every command of the pipeline NOSCRIPT —
	// they all run the same script — so none ran, and it is sent again with the text.
	cmds, err := exec(true)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		cmds, err = exec(false)
	}
	if err != nil {
		return nil, fmt.Errorf("campaign progress: %w", err)
	}
	out := make([]int, len(keys))
	for i, c := range cmds {
		n, err := c.Int()
		if err != nil {
			return nil, fmt.Errorf("campaign progress: %w", err)
		}
		out[i] = n
	}
	return out, nil
}

// staleScript: ARGV = contact, started-before ms. Turns a send started before the cutoff
// that still has no outcome back into an expired, unsent claim, so the job's next copy
// takes it over. Returns 1 if it did.
var staleScript = redis.NewScript(`
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return 0 end
local l = redis.call('HGET', KEYS[4], ARGV[1])
if not l then return 0 end
local at = string.match(l, ':sending:(%d+)$')
if not at or tonumber(at) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[4], ARGV[1], 'stale:0')
return 1
`)

// StaleSends returns the contacts of campaign whose send started before cutoff and still
// has no outcome (no worker recorded it, no status webhook settled it), and reopens their
// claims so that a new copy of the job is sent. It is meant for sends whose worker died
// between marking the send and the provider accepting it; pick a cutoff far beyond the
// provider's webhook delay, since a send that did reach the provider would go twice.
func (t *Tracker) StaleSends(ctx context.Context, campaign string, cutoff time.Time) ([]uint32, error) {
	keys := t.keys(campaign)
	leases, err := t.rdb.HGetAll(ctx, keys[3]).Result()
	if err != nil {
		return nil, fmt.Errorf("campaign %s: leases: %w", campaign, err)
	}
	var cand []Key
	for f, v := range leases {
		if !strings.Contains(v, ":sending:") {
			continue
		}
		id, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			continue
		}
		cand = append(cand, Key{campaign, uint32(id)})
	}
	res, err := t.run(ctx, staleScript, cand, func(int) []any { return []any{cutoff.UnixMilli()} })
	if err != nil {
		return nil, err
	}
	var out []uint32
	for i, r := range res {
		if r == 1 {
			out = append(out, cand[i].Contact)
		}
	}
	return out, nil
}
