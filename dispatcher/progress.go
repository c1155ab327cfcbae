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

// The scripts below take one campaign's keys and many contacts at once: ARGV holds the
// arguments common to the batch, then one group per contact, and the script answers one
// integer per contact, in order. Each contact is handled exactly as if it were alone
// (the groups run one after the other), so a batch is one EVALSHA instead of one per
// contact.

// claimScript: ARGV = token, now ms, lease ms, then contacts. Leases are
// "token:expiry ms" or "token:sending:start ms".
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local mine = ARGV[1] .. ':' .. (now + tonumber(ARGV[3]))
local out = {}
for i = 4, #ARGV do
  local c, r = ARGV[i], 3
  if redis.call('GETBIT', KEYS[3], c) == 1 then
    r = 2
  elseif redis.call('SETBIT', KEYS[2], c, 1) == 0 then
    redis.call('HSET', KEYS[4], c, mine)
    r = 0
  else
    local l = redis.call('HGET', KEYS[4], c)
    if not l or string.find(l, ':sending:', 1, true) then
      r = 1
    elseif tonumber(string.match(l, ':([^:]*)$')) < now then
      redis.call('HSET', KEYS[4], c, mine)
      r = 0
    end
  end
  out[#out + 1] = r
end
return out
`)

// sendingScript: ARGV = token, now ms, then (contact, proof) pairs. Marks each claim
// "token:sending:now|proof" if token still holds it (1), else answers 0.
var sendingScript = redis.NewScript(`
local pre = ARGV[1] .. ':'
local mark = ARGV[1] .. ':sending:' .. ARGV[2] .. '|'
local out = {}
for i = 3, #ARGV, 2 do
  local c, r = ARGV[i], 0
  if redis.call('GETBIT', KEYS[3], c) == 0 then
    local l = redis.call('HGET', KEYS[4], c)
    if l and string.sub(l, 1, #pre) == pre then
      redis.call('HSET', KEYS[4], c, mark .. ARGV[i + 1])
      r = 1
    end
  end
  out[#out + 1] = r
end
return out
`)

// finishScript: ARGV = now ms, then (contact, outcome) pairs. Marks each contact done
// once (1: this call recorded it), counts the outcomes and completes the campaign when
// every audience member has one.
var finishScript = redis.NewScript(`
local out, n, counts, order = {}, 0, {}, {}
for i = 2, #ARGV, 2 do
  local c, o = ARGV[i], ARGV[i + 1]
  if redis.call('SETBIT', KEYS[3], c, 1) == 1 then
    out[#out + 1] = 0
  else
    redis.call('SETBIT', KEYS[2], c, 1)
    redis.call('HDEL', KEYS[4], c)
    if not counts[o] then
      counts[o] = 0
      order[#order + 1] = o
    end
    counts[o] = counts[o] + 1
    n = n + 1
    out[#out + 1] = 1
  end
end
if n > 0 then
  for _, o in ipairs(order) do redis.call('HINCRBY', KEYS[1], o, counts[o]) end
  local done = redis.call('HINCRBY', KEYS[1], 'done', n)
  local aud = tonumber(redis.call('HGET', KEYS[1], 'audience') or '-1')
  if done >= aud and redis.call('HGET', KEYS[1], 'fanout_done') == '1' and redis.call('HGET', KEYS[1], 'state') == 'running' then
    redis.call('HSET', KEYS[1], 'state', 'completed', 'completed_at', ARGV[1])
  end
end
return out
`)

// releaseScript: ARGV = token, then contacts. Only the lease's holder gives it back.
var releaseScript = redis.NewScript(`
local pre = ARGV[1] .. ':'
local out = {}
for i = 2, #ARGV do
  local c, r = ARGV[i], 1
  if redis.call('GETBIT', KEYS[3], c) == 0 then
    local l = redis.call('HGET', KEYS[4], c)
    if l and string.sub(l, 1, #pre) ~= pre then
      r = 0
    else
      redis.call('SETBIT', KEYS[2], c, 0)
      redis.call('HDEL', KEYS[4], c)
    end
  end
  out[#out + 1] = r
end
return out
`)

// Claim atomically claims each key for this tracker's owner token; one round trip.
// Results: Claimed, InDoubt, AlreadyDone or Held.
func (t *Tracker) Claim(ctx context.Context, keys []Key) ([]int, error) {
	return t.run(ctx, claimScript, keys, []any{t.token, t.now().UnixMilli(), t.lease.Milliseconds()}, nil)
}

// SendProof is what the policy checked before a send: it travels with the "sending"
// mark, so a send settled by a status webhook (its worker died before recording it) is
// audited with the consent record that was in force when it was sent, on the channel and
// for the purpose it was sent under, not with whatever holds when the webhook comes.
type SendProof struct {
	Channel    string
	Purpose    string
	ConsentRef string // the ledger record the policy's Allow relied on
	Template   string
	FreeForm   bool // free-form text: the audit checks it against the 24h window
}

// encode is "channel|purpose|consent_ref|f|template" (f: 1 for free-form, else 0; the
// template last, whatever characters its name holds).
func (p SendProof) encode() string {
	ff := "0"
	if p.FreeForm {
		ff = "1"
	}
	return p.Channel + "|" + p.Purpose + "|" + p.ConsentRef + "|" + ff + "|" + p.Template
}

// parseSendProof reads when a send started and its proof from a lease
// "token:sending:ms|proof"; ok is false for a lease without a proof (written before
// proofs existed) and started is zero for one not marked sending.
func parseSendProof(lease string) (p SendProof, started time.Time, ok bool) {
	head, rest, found := strings.Cut(lease, "|")
	if _, ms, sending := strings.Cut(head, ":sending:"); sending {
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
			started = time.UnixMilli(n)
		}
	}
	if !found {
		return SendProof{}, started, false
	}
	f := strings.SplitN(rest, "|", 5)
	if len(f) != 5 {
		return SendProof{}, started, false
	}
	return SendProof{Channel: f[0], Purpose: f[1], ConsentRef: f[2], FreeForm: f[3] == "1", Template: f[4]}, started, true
}

// MarkSending records that the sends of keys start now, with what the policy checked for
// each, for the claims this tracker still holds; false means the claim was lost (its
// lease ran out and another worker took the job over) and the caller must not send.
func (t *Tracker) MarkSending(ctx context.Context, keys []Key, proofs []SendProof) ([]bool, error) {
	return ones(t.run(ctx, sendingScript, keys, []any{t.token, t.now().UnixMilli()}, func(i int, args []any) []any {
		return append(args, proofs[i].encode())
	}))
}

// Doubt is a send that started and has no outcome: its worker died before recording it.
type Doubt struct {
	InDoubt bool
	// Finished: the send's outcome is recorded (for good: nothing puts a finished send
	// back in doubt), so later statuses of it have nothing to settle.
	Finished bool
	Started  time.Time // when the send was marked started (zero: claimed, never marked)
	Proof    SendProof
	Proven   bool // Proof was recorded with the mark (false for marks older than proofs)
}

// InDoubt reports, per key, whether it was claimed and never finished (a send whose
// worker died before recording it) and, for a send that was marked started, what its
// policy check relied on. One round trip.
func (t *Tracker) InDoubt(ctx context.Context, keys []Key) ([]Doubt, error) {
	res, err := t.runAny(ctx, inDoubtScript, keys, nil, nil)
	if err != nil {
		return nil, err
	}
	out := make([]Doubt, len(res))
	for i, r := range res {
		lease, ok := r.(string)
		if !ok {
			out[i].Finished = r == int64(1) // 1: finished; 0: never claimed
			continue
		}
		out[i].InDoubt = true
		out[i].Proof, out[i].Started, out[i].Proven = parseSendProof(lease)
	}
	return out, nil
}

// inDoubtScript: ARGV = contacts. Answers 1 for a contact whose send is finished, 0 for
// one never claimed, else (in doubt) its lease (or "" when it has none).
var inDoubtScript = redis.NewScript(`
local out = {}
for i = 1, #ARGV do
  local r = 0
  if redis.call('GETBIT', KEYS[3], ARGV[i]) == 1 then
    r = 1
  elseif redis.call('GETBIT', KEYS[2], ARGV[i]) == 1 then
    r = redis.call('HGET', KEYS[4], ARGV[i]) or ''
  end
  out[#out + 1] = r
end
return out
`)

// ones turns script answers into booleans (1 = true).
func ones(res []int, err error) ([]bool, error) {
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r == 1
	}
	return out, nil
}

// Release gives back claims (for a retry published as a new job) unless already done.
func (t *Tracker) Release(ctx context.Context, keys []Key) error {
	_, err := t.run(ctx, releaseScript, keys, []any{t.token}, nil)
	return err
}

// Finish records each key's outcome (OutcomeSent, OutcomeSkipped, OutcomeFailed) once.
// It returns, per key, whether this call recorded it (false: it already had one).
func (t *Tracker) Finish(ctx context.Context, keys []Key, outcomes []string) ([]bool, error) {
	return ones(t.run(ctx, finishScript, keys, []any{t.now().UnixMilli()}, func(i int, args []any) []any {
		return append(args, outcomes[i])
	}))
}

// maxScriptBatch bounds the contacts of one script call, so that no call holds Redis
// for long (a contact costs a few microseconds).
const maxScriptBatch = 1000

// run calls s once per campaign among keys (and per maxScriptBatch contacts), with ARGV
// = common, then per contact its id and what per appends, in one pipelined round trip,
// and returns the script's integer answers in the order of keys.
func (t *Tracker) run(ctx context.Context, s *redis.Script, keys []Key, common []any, per func(i int, args []any) []any) ([]int, error) {
	res, err := t.runAny(ctx, s, keys, common, per)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(res))
	for i, r := range res {
		n, ok := r.(int64)
		if !ok {
			return nil, fmt.Errorf("campaign progress: script answered %T, want an integer", r)
		}
		out[i] = int(n)
	}
	return out, nil
}

// runAny is run for scripts whose answers are not all integers.
func (t *Tracker) runAny(ctx context.Context, s *redis.Script, keys []Key, common []any, per func(i int, args []any) []any) ([]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	type call struct {
		campaign string
		idx      []int // positions in keys
		args     []any
	}
	var calls []*call
	open := map[string]*call{}
	for i, k := range keys {
		c := open[k.Campaign]
		if c == nil || len(c.idx) == maxScriptBatch {
			c = &call{campaign: k.Campaign, args: append(make([]any, 0, len(common)+2*min(len(keys), maxScriptBatch)), common...)}
			open[k.Campaign] = c
			calls = append(calls, c)
		}
		c.idx = append(c.idx, i)
		c.args = append(c.args, k.Contact)
		if per != nil {
			c.args = per(i, c.args)
		}
	}
	cmds, err := evalEach(ctx, t.rdb, s, len(calls), func(i int) []string { return t.keys(calls[i].campaign) },
		func(i int) []any { return calls[i].args })
	if err != nil {
		return nil, fmt.Errorf("campaign progress: %w", err)
	}
	out := make([]any, len(keys))
	for i, c := range cmds {
		res, err := c.Slice()
		if err == nil && len(res) != len(calls[i].idx) {
			err = fmt.Errorf("script answered %d results for %d contacts", len(res), len(calls[i].idx))
		}
		if err != nil {
			return nil, fmt.Errorf("campaign progress: %w", err)
		}
		for j, pos := range calls[i].idx {
			out[pos] = res[j]
		}
	}
	return out, nil
}

// staleScript: ARGV = started-before ms, then contacts. Turns a send started before
// the cutoff that still has no outcome back into an expired, unsent claim, so the job's
// next copy takes it over (1: it did).
var staleScript = redis.NewScript(`
local cutoff = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local c, r = ARGV[i], 0
  if redis.call('GETBIT', KEYS[3], c) == 0 then
    local l = redis.call('HGET', KEYS[4], c)
    local at = l and string.match(l, ':sending:(%d+)')
    if at and tonumber(at) < cutoff then
      redis.call('HSET', KEYS[4], c, 'stale:0')
      r = 1
    end
  end
  out[#out + 1] = r
end
return out
`)

// staleCandidates lists the contacts of campaign whose lease says a send started (any
// time): the scripts decide which are stale.
func (t *Tracker) staleCandidates(ctx context.Context, campaign string) ([]Key, error) {
	leases, err := t.rdb.HGetAll(ctx, t.keys(campaign)[3]).Result()
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
	return cand, nil
}

// StaleSends returns the contacts of campaign whose send started before cutoff and still
// has no outcome (no worker recorded it, no status webhook settled it), and reopens their
// claims so that a new copy of the job is sent. It is meant for sends whose worker died
// between marking the send and the provider accepting it; pick a cutoff far beyond the
// provider's webhook delay, since a send that did reach the provider would go twice.
func (t *Tracker) StaleSends(ctx context.Context, campaign string, cutoff time.Time) ([]uint32, error) {
	cand, err := t.staleCandidates(ctx, campaign)
	if err != nil {
		return nil, err
	}
	res, err := t.run(ctx, staleScript, cand, []any{cutoff.UnixMilli()}, nil)
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

// StaleInDoubt returns, without changing them, the contacts of campaign whose send
// started before cutoff and still has no outcome: for a channel whose provider never
// confirms acceptance (email), they are recorded as failed in doubt rather than sent
// again (at most one message per contact).
func (t *Tracker) StaleInDoubt(ctx context.Context, campaign string, cutoff time.Time) ([]uint32, error) {
	cand, err := t.staleCandidates(ctx, campaign)
	if err != nil {
		return nil, err
	}
	doubt, err := t.InDoubt(ctx, cand)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for i, d := range doubt {
		if d.InDoubt && !d.Started.IsZero() && d.Started.Before(cutoff) {
			out = append(out, cand[i].Contact)
		}
	}
	return out, nil
}
