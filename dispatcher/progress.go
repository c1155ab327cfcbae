package dispatcher

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tracker records per-(campaign, contact) progress: claims before a send and the final
// outcome after it. It is shared by workers (claim, finish) and the webhook server
// (settling sends whose worker died before recording them).
type Tracker struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewTracker returns a tracker under prefix.
func NewTracker(rdb redis.UniversalClient, prefix string) *Tracker {
	return &Tracker{rdb: rdb, prefix: prefix, now: time.Now}
}

// Claim results.
const (
	Claimed     = 0 // the caller owns the job now
	InDoubt     = 1 // claimed earlier and never finished: its worker died mid-send
	AlreadyDone = 2 // the contact already has an outcome: drop the job
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
	return []string{base, base + ":claimed", base + ":done"}
}

var claimScript = redis.NewScript(`
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return 2 end
if redis.call('SETBIT', KEYS[2], ARGV[1], 1) == 1 then return 1 end
return 0
`)

// finishScript marks a contact done once, counts its outcome and completes the campaign
// when every audience member has one. Returns 1 if this call recorded the outcome.
var finishScript = redis.NewScript(`
if redis.call('SETBIT', KEYS[3], ARGV[1], 1) == 1 then return 0 end
redis.call('SETBIT', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
local done = redis.call('HINCRBY', KEYS[1], 'done', 1)
local aud = tonumber(redis.call('HGET', KEYS[1], 'audience') or '-1')
if done >= aud and redis.call('HGET', KEYS[1], 'fanout_done') == '1' and redis.call('HGET', KEYS[1], 'state') == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'completed_at', ARGV[3])
end
return 1
`)

var releaseScript = redis.NewScript(`
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 0 then redis.call('SETBIT', KEYS[2], ARGV[1], 0) end
return 1
`)

// Claim atomically claims each key; one pipelined round trip.
func (t *Tracker) Claim(ctx context.Context, keys []Key) ([]int, error) {
	return t.run(ctx, claimScript, keys, nil)
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
	_, err := t.run(ctx, releaseScript, keys, nil)
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
	pipe := t.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		args := []any{k.Contact}
		if extra != nil {
			args = append(args, extra(i)...)
		}
		cmds[i] = s.Eval(ctx, pipe, t.keys(k.Campaign), args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
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
