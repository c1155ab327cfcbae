package throttle

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reason codes of deferred jobs (Decision.Until says when to try again). Bounded: safe
// as metric labels.
const (
	ReasonQuietHours       = "quiet_hours"       // the recipient's local night or a day not allowed
	ReasonMarketingHold    = "marketing_hold"    // 131049: the provider holds the contact's marketing for a day
	ReasonRecipientBackoff = "recipient_backoff" // 131056: the provider asked this sender to slow down to this contact
	ReasonPairRate         = "pair_rate"         // one message per pair interval from a sender to a contact
	ReasonDailyTier        = "daily_tier"        // the sender reached its unique recipients of the last 24h
)

// Provider error codes the policy reacts to (see Pushback).
const (
	CodePairRate        = 131056 // too many messages from the sender to one recipient
	CodeMarketingHealth = 131049 // marketing not delivered to keep the ecosystem healthy
)

// Defaults of the per-recipient rules.
const (
	DefaultPairInterval = 6 * time.Second // WhatsApp's pair rate: about one message per 6 s to one user
	TierWindow          = 24 * time.Hour  // the moving window of the daily unique-recipient tier
	MarketingHold       = 24 * time.Hour  // how long a 131049 holds the contact's marketing
	DefaultBackoffMax   = time.Hour       // the longest 131056 back-off
	DefaultBackoffReset = time.Hour       // quiet time after a back-off ends that resets its count
)

// PurposeMarketing is the purpose (and cap category) a marketing hold applies to.
const PurposeMarketing = "marketing"

// WithQuietHours sets the quiet hours and allowed days every job gets unless its Quiet
// field sets its own. Judged in the recipient's local time (see Job.TimeZone).
func (p *Policy) WithQuietHours(q QuietHours) *Policy {
	p.quiet = q
	return p
}

// WithFallbackZone sets the zone of recipients whose zone is unknown: no valid profile
// zone, and a phone number (and country) spanning zones that disagree. Default UTC.
func (p *Policy) WithFallbackZone(loc *time.Location) *Policy {
	if loc == nil {
		loc = time.UTC
	}
	p.fallback = loc
	return p
}

// WithPairInterval sets the least time between two messages of one sender to one
// contact (default DefaultPairInterval); 0 turns the pair rate off.
func (p *Policy) WithPairInterval(d time.Duration) *Policy {
	p.pair = max(d, 0)
	return p
}

// WithRecipientBackoff sets the longest back-off after repeated 131056 refusals and the
// quiet time after a back-off ends that starts the count over (defaults DefaultBackoffMax
// and DefaultBackoffReset).
func (p *Policy) WithRecipientBackoff(maxDelay, reset time.Duration) *Policy {
	p.backoffMax, p.backoffReset = max(maxDelay, time.Second), max(reset, 0)
	return p
}

// Keys of the per-recipient rules. Every key of a contact shares the hash tag {c:<id>}
// so one script can reserve them together on Redis Cluster.
func contactTag(prefix string, contact uint32) string {
	return prefix + "{c:" + strconv.FormatUint(uint64(contact), 10) + "}"
}

func (p *Policy) rateKey(contact uint32) string { return contactTag(p.prefix, contact) + ":rl" }

func (p *Policy) tierKey(sender string) string { return p.prefix + "{s:" + sender + "}:tier" }

// Results of ruleScript.
const (
	ruleAllow = iota + 1
	ruleCapped
	ruleQuiet
	ruleHold
	ruleBackoff
	rulePair
	ruleTier
)

// ruleScript decides, and reserves when asked, everything one job needs after its
// consent and window: frequency caps → quiet hours → marketing hold → recipient back-off
// → pair rate → daily tier. It reserves all of them or nothing: the first rule that says
// no returns before anything is written, so a skipped or deferred job holds nothing.
//
// KEYS[1] the contact's rate hash (P{c:<id>}:rl), KEYS[2] the contact's cap log of the
// job's category (KEYS[1] when the category has no caps), KEYS[3] the sender's tier set
// (only when the job counts against a tier).
// ARGV: 1 now ms, 2 "1" to reserve ("0" evaluates only), 3 the job's member
// (campaign:contact), 4 sender, 5 contact id, 6 "1" when the job is in quiet hours,
// 7 "1" for marketing, 8 pair interval ms (0: off), 9 tier (0: none), 10 tier window ms,
// 11 the rate hash's keep-alive ms, then pairs of (max, window ms) of the caps.
//
// The rate hash holds, per sender, "s:<sender>" = "at:tierPrev:tierFlag:member": the last
// reserved message (at ms, by member) and, when it counted against the tier (flag 1),
// the contact's score in the tier set before it (empty when the contact was new in the
// window); "S:<sender>" keeps the record it replaced, restored on release. A job
// deciding again while it holds the reservation (a retry) is allowed without taking
// anything twice.
// Returns {result, until ms}.
var ruleScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local member = ARGV[3]
local held = false
if #ARGV > 11 then
  held = redis.call('ZSCORE', KEYS[2], member)
  if not held then
    for i = 12, #ARGV, 2 do
      if redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[i+1]) + 1, '+inf') >= tonumber(ARGV[i]) then return {2, 0} end
    end
  end
end
if ARGV[6] == '1' then return {3, 0} end
local fb, fs = 'b:' .. ARGV[4], 's:' .. ARGV[4]
local v = redis.call('HMGET', KEYS[1], 'hold', fb, fs)
if ARGV[7] == '1' and v[1] and tonumber(v[1]) > now then return {4, tonumber(v[1])} end
if v[2] then
  local u = tonumber(string.match(v[2], '^%d+:(%d+)$'))
  if u > now then return {5, u} end
end
local at, mine = '', false
if v[3] then
  local m
  at, m = string.match(v[3], '^(%d*):%d*:%d:(.*)$')
  at, mine = at or '', m == member
end
local pair = tonumber(ARGV[8])
if pair > 0 and at ~= '' and not mine and now < tonumber(at) + pair then return {6, tonumber(at) + pair} end
local tier, win = tonumber(ARGV[9]), tonumber(ARGV[10])
local since = string.format('(%d', now - win)
local score = false
if tier > 0 and not mine then
  score = redis.call('ZSCORE', KEYS[3], ARGV[5])
  if score and tonumber(score) <= now - win then score = false end
  if not score and redis.call('ZCOUNT', KEYS[3], since, '+inf') >= tier then
    local o = redis.call('ZRANGEBYSCORE', KEYS[3], since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    return {7, tonumber(o[2]) + win}
  end
end
if ARGV[2] ~= '1' then return {1, 0} end
if #ARGV > 11 and not held then
  local longest = 0
  for i = 12, #ARGV, 2 do
    if tonumber(ARGV[i+1]) > longest then longest = tonumber(ARGV[i+1]) end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - longest)
  redis.call('ZADD', KEYS[2], now, member)
  redis.call('PEXPIRE', KEYS[2], longest + 3600000)
end
if (pair > 0 or tier > 0) and not mine then
  local flag = '0'
  if tier > 0 then
    flag = '1'
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - win)
    redis.call('ZADD', KEYS[3], now, ARGV[5])
    redis.call('PEXPIRE', KEYS[3], win + 3600000)
  end
  if v[3] then redis.call('HSET', KEYS[1], 'S:' .. ARGV[4], v[3]) else redis.call('HDEL', KEYS[1], 'S:' .. ARGV[4]) end
  redis.call('HSET', KEYS[1], fs, ARGV[1] .. ':' .. (score or '') .. ':' .. flag .. ':' .. member)
  local keep = tonumber(ARGV[11])
  if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
end
return {1, 0}
`)

// releaseScript gives back what ruleScript reserved for one job: its cap slot, its pair
// slot (the record it replaced, the sender's previous message to the contact, is the last
// again) and, when
// the contact's tier score is still the job's, the contact's place in the tier set (its
// previous score, or out of the set when the job made it count). KEYS as ruleScript's;
// ARGV: 1 member, 2 sender, 3 contact id, 4 "1" when KEYS[2] is a cap log.
var releaseScript = redis.NewScript(`
if ARGV[4] == '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end
local fs, fp = 's:' .. ARGV[2], 'S:' .. ARGV[2]
local v = redis.call('HMGET', KEYS[1], fs, fp)
if not v[1] then return 0 end
local at, tprev, flag, m = string.match(v[1], '^(%d*):(%d*):(%d):(.*)$')
if m ~= ARGV[1] then return 0 end
if v[2] then
  redis.call('HSET', KEYS[1], fs, v[2])
  redis.call('HDEL', KEYS[1], fp)
else
  redis.call('HDEL', KEYS[1], fs)
end
if flag == '1' and KEYS[3] and tonumber(redis.call('ZSCORE', KEYS[3], ARGV[3])) == tonumber(at) then
  if tprev == '' then redis.call('ZREM', KEYS[3], ARGV[3]) else redis.call('ZADD', KEYS[3], tprev, ARGV[3]) end
end
return 1
`)

// pushbackScript records a provider refusal in the contact's rate hash KEYS[1].
// ARGV: 1 "h" (131049: hold marketing until ARGV[3] + ARGV[4]) or "b" (131056: back off
// the sender ARGV[2]: 4^n s from ARGV[3], at most ARGV[4] ms; the count n starts over
// when ARGV[3] is more than ARGV[5] ms after the last back-off ended), 6 keep-alive ms.
// The back-off field "b:<sender>" is "n:until ms"; the hold field "hold" is until ms.
var pushbackScript = redis.NewScript(`
local at = tonumber(ARGV[3])
if ARGV[1] == 'h' then
  local u = at + tonumber(ARGV[4])
  local h = tonumber(redis.call('HGET', KEYS[1], 'hold') or '0')
  if u > h then redis.call('HSET', KEYS[1], 'hold', string.format('%d', u)) end
else
  local f = 'b:' .. ARGV[2]
  local n, u = 0, 0
  local v = redis.call('HGET', KEYS[1], f)
  if v then
    local a, b = string.match(v, '^(%d+):(%d+)$')
    n, u = tonumber(a), tonumber(b)
  end
  if at > u + tonumber(ARGV[5]) then n = 0 end
  n = math.min(n + 1, 32)
  local d = math.min(4 ^ n * 1000, tonumber(ARGV[4]))
  redis.call('HSET', KEYS[1], f, string.format('%d:%d', n, math.max(u, at + d)))
end
local keep = tonumber(ARGV[6])
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return 1
`)

// Pushback records a provider refusal of a message from sender to contact that changes
// how the contact is paced: 131056 (pair rate) backs the pair off 4^n seconds (4 s,
// 16 s, 64 s … at most the back-off maximum; n counts the consecutive 131056s and starts
// over after a quiet period); 131049 (marketing held for the ecosystem's health) holds
// the contact's marketing messages, from every sender, for MarketingHold. Other codes
// are ignored. at is when the refusal happened (zero: now); holds never shorten.
func (p *Policy) Pushback(ctx context.Context, sender string, contact uint32, code int, at time.Time) error {
	if at.IsZero() {
		at = p.now()
	}
	var args []any
	switch code {
	case CodeMarketingHealth:
		args = []any{"h", sender, at.UnixMilli(), MarketingHold.Milliseconds(), 0, (MarketingHold + time.Hour).Milliseconds()}
	case CodePairRate:
		args = []any{"b", sender, at.UnixMilli(), p.backoffMax.Milliseconds(), p.backoffReset.Milliseconds(),
			(p.backoffMax + p.backoffReset + time.Hour).Milliseconds()}
	default:
		return nil
	}
	if err := pushbackScript.Eval(ctx, p.rdb, []string{p.rateKey(contact)}, args...).Err(); err != nil {
		return fmt.Errorf("pushback %d for contact %d: %w", code, contact, err)
	}
	return nil
}

// ruleKeys returns the keys and arguments of ruleScript (and releaseScript) for j.
func (p *Policy) ruleKeys(j *Job) (keys []string, caps []Cap, tier int) {
	rate := p.rateKey(j.ContactID)
	caps = p.caps[j.Purpose]
	capKey := rate
	if len(caps) > 0 {
		capKey = p.capKey(j.ContactID, j.Purpose)
	}
	// Messages inside the customer-service window (free-form text needs one) do not
	// count against the messaging limit.
	if j.SenderTier > 0 && !j.FreeForm {
		return []string{rate, capKey, p.tierKey(j.SenderID)}, caps, j.SenderTier
	}
	return []string{rate, capKey}, caps, 0
}

func member(j *Job) string { return j.Campaign + ":" + strconv.FormatUint(uint64(j.ContactID), 10) }

// applyRules runs ruleScript for every job still allowed after consent and window, all
// in one pipelined round trip, and turns the refused ones into skips and deferrals.
func (p *Policy) applyRules(ctx context.Context, jobs []Job, out []Decision, now time.Time, reserve bool) error {
	nowMs := now.UnixMilli()
	res := "0"
	if reserve {
		res = "1"
	}
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(jobs))
	quietUntil := make([]time.Time, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		if out[i].Verdict != Allow {
			continue
		}
		q := p.quiet
		if j.Quiet != nil {
			q = *j.Quiet
		}
		quiet := "0"
		if !q.IsZero() {
			local := now.In(zoneOf(j, p.fallback))
			if next := q.Next(local); !next.Equal(local) {
				quietUntil[i], quiet = next, "1"
			}
		}
		keys, caps, tier := p.ruleKeys(j)
		if quiet == "1" && len(caps) == 0 {
			// Nothing before quiet hours needs Redis: no need to ask.
			out[i] = Decision{Verdict: Defer, Reason: ReasonQuietHours, Until: quietUntil[i]}
			continue
		}
		marketing := "0"
		if j.Purpose == PurposeMarketing {
			marketing = "1"
		}
		keep := p.pair + 10*time.Minute
		if tier > 0 {
			keep = TierWindow + time.Hour
		}
		args := make([]any, 0, 11+2*len(caps))
		args = append(args, nowMs, res, member(j), j.SenderID, j.ContactID, quiet, marketing,
			p.pair.Milliseconds(), tier, TierWindow.Milliseconds(), keep.Milliseconds())
		for _, c := range caps {
			args = append(args, c.Max, c.Window.Milliseconds())
		}
		// EVAL, not EVALSHA: in a pipeline, EVALSHA has no NOSCRIPT fallback.
		cmds[i] = ruleScript.Eval(ctx, pipe, keys, args...)
	}
	if pipe.Len() == 0 {
		return nil
	}
	_, err := pipe.Exec(ctx)
	if err != nil {
		// Fail closed; and give back what the scripts that did run took.
		var taken []Job
		for i, c := range cmds {
			if c == nil || !reserve {
				continue
			}
			if r, e := c.Int64Slice(); e == nil && len(r) == 2 && r[0] == ruleAllow {
				taken = append(taken, jobs[i])
			}
		}
		if len(taken) > 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = p.ReleaseCaps(rctx, taken)
			cancel()
		}
		return fmt.Errorf("policy check: per-recipient rules: %w", err)
	}
	for i, c := range cmds {
		if c == nil {
			continue
		}
		r, err := c.Int64Slice()
		if err != nil || len(r) != 2 {
			return fmt.Errorf("policy check: per-recipient rules: unexpected reply %v (%v)", c.Val(), err)
		}
		until := time.UnixMilli(r[1])
		switch r[0] {
		case ruleAllow:
		case ruleCapped:
			out[i] = Decision{Verdict: Skip, Reason: ReasonFrequencyCap}
		case ruleQuiet:
			out[i] = Decision{Verdict: Defer, Reason: ReasonQuietHours, Until: quietUntil[i]}
		case ruleHold:
			out[i] = Decision{Verdict: Defer, Reason: ReasonMarketingHold, Until: until}
		case ruleBackoff:
			out[i] = Decision{Verdict: Defer, Reason: ReasonRecipientBackoff, Until: until}
		case rulePair:
			out[i] = Decision{Verdict: Defer, Reason: ReasonPairRate, Until: until}
		case ruleTier:
			out[i] = Decision{Verdict: Defer, Reason: ReasonDailyTier, Until: until}
		default:
			return fmt.Errorf("policy check: per-recipient rules: unknown result %d", r[0])
		}
	}
	return nil
}

// ReleaseCaps gives back everything Check reserved for jobs that were allowed but not
// sent (refused by the provider, parked, cancelled): the frequency-cap slot, the pair
// slot and the tier place the job took, so they count neither against the contact nor
// against the sender. Releasing a job twice, or one that holds nothing, changes nothing.
// Pass the jobs as they were checked.
func (p *Policy) ReleaseCaps(ctx context.Context, jobs []Job) error {
	if len(jobs) == 0 {
		return nil
	}
	pipe := p.rdb.Pipeline()
	for i := range jobs {
		j := &jobs[i]
		keys, caps, _ := p.ruleKeys(j)
		hasCaps := "0"
		if len(caps) > 0 {
			hasCaps = "1"
		}
		releaseScript.Eval(ctx, pipe, keys, member(j), j.SenderID, j.ContactID, hasCaps)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("release reservations: %w", err)
	}
	return nil
}
