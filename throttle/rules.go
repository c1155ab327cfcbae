package throttle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// Keys of the per-recipient rules. Everything the policy keeps about one contact is one
// hash, P{c:<id>}:rules (the hash tag keeps it in the contact's slot on Redis Cluster);
// a sender's tier window is P{s:<sender>}:tier.
func (p *Policy) rulesKey(contact uint32) string {
	return p.prefix + "{c:" + strconv.FormatUint(uint64(contact), 10) + "}:rules"
}

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
// KEYS[1] is the contact's rules hash; KEYS[2] the sender's tier set, only when the job
// counts against a tier. ARGV: 1 now ms, 2 "1" to reserve ("0" evaluates only),
// 3 campaign, 4 sender, 5 contact id, 6 "1" when the job is in quiet hours, 7 category
// (purpose), 8 "1" for marketing, 9 pair interval ms (0: off), 10 tier (0: none), 11 tier
// window ms, 12 the rules hash's time to live ms (longer than anything in it needs), then
// pairs of (max, window ms) of the category's caps.
//
// The rules hash holds:
//
//	f:<category>  the cap log: "ms campaign" lines, oldest first, of the messages of the
//	              category in the longest cap window
//	s:<sender>    the last message reserved from sender: "at:tierPrev:tierFlag:campaign";
//	              tierFlag 1 when it counted against the tier, tierPrev the contact's
//	              score in the tier set before (empty: new in the window)
//	S:<sender>    the s: record that one replaced, restored on release
//	b:<sender>    131056 back-off: "n:until ms"
//	hold          131049 marketing hold: until ms
//
// The tier set's members are contact ids scored by the time of their last message from
// the sender. A job deciding again while it holds its reservation (a retry) is allowed
// without taking anything twice. Returns {result, until ms}; for an allowed job,
// {1, 1} when it held nothing before (a fresh reservation), else {1, 0}.
var ruleScript = redis.NewScript(`
local now, camp, sender = tonumber(ARGV[1]), ARGV[3], ARGV[4]
local fc, fs, fp = 'f:' .. ARGV[7], 's:' .. sender, 'S:' .. sender
local v = redis.call('HMGET', KEYS[1], fc, 'hold', 'b:' .. sender, fs, fp)
local capped, held, log = #ARGV > 12, false, {}
if capped then
  if v[1] then
    for ms, c in string.gmatch(v[1], '(%d+) ([^\n]*)') do
      if c == camp then held = true end
      log[#log + 1] = {tonumber(ms), c}
    end
  end
  if not held then
    for i = 13, #ARGV, 2 do
      local since, n = now - tonumber(ARGV[i + 1]), 0
      for _, e in ipairs(log) do
        if e[1] > since then n = n + 1 end
      end
      if n >= tonumber(ARGV[i]) then return {2, 0} end
    end
  end
end
if ARGV[6] == '1' then return {3, 0} end
if ARGV[8] == '1' and v[2] and tonumber(v[2]) > now then return {4, tonumber(v[2])} end
if v[3] then
  local u = tonumber(string.match(v[3], '^%d+:(%d+)$'))
  if u > now then return {5, u} end
end
local at, mine = '', false
if v[4] then
  local m
  at, m = string.match(v[4], '^(%d*):%d*:%d:(.*)$')
  at, mine = at or '', m == camp
end
local pair = tonumber(ARGV[9])
if pair > 0 and at ~= '' and not mine and now < tonumber(at) + pair then return {6, tonumber(at) + pair} end
local tier, win = tonumber(ARGV[10]), tonumber(ARGV[11])
local score, cut = false, ''
if tier > 0 and not mine then
  score = redis.call('ZSCORE', KEYS[2], ARGV[5])
  if score and tonumber(score) <= now - win then score = false end
  if not score then
    cut = string.format('%d', now - win)
    local since = '(' .. cut
    if redis.call('ZCOUNT', KEYS[2], since, '+inf') >= tier then
      local o = redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      return {7, tonumber(o[2]) + win}
    end
  end
end
if ARGV[2] ~= '1' then return {1, 0} end
local set = {}
if capped and not held then
  local longest = 0
  for i = 14, #ARGV, 2 do longest = math.max(longest, tonumber(ARGV[i])) end
  local lines = {}
  for _, e in ipairs(log) do
    if e[1] > now - longest then lines[#lines + 1] = string.format('%d', e[1]) .. ' ' .. e[2] end
  end
  lines[#lines + 1] = ARGV[1] .. ' ' .. camp
  set[#set + 1], set[#set + 2] = fc, table.concat(lines, '\n')
end
if (pair > 0 or tier > 0) and not mine then
  local flag = '0'
  if tier > 0 then
    flag = '1'
    -- The set grows only with contacts new in the window: trim it then, so it never
    -- holds much more than the window. No time to live: it must outlive any idle spell.
    if not score then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cut) end
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[5])
  end
  set[#set + 1], set[#set + 2] = fs, ARGV[1] .. ':' .. (score or '') .. ':' .. flag .. ':' .. camp
  if v[4] then
    set[#set + 1], set[#set + 2] = fp, v[4]
  elseif v[5] then
    redis.call('HDEL', KEYS[1], fp)
  end
end
if #set > 0 then
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('PEXPIRE', KEYS[1], ARGV[12])
end
if held or mine then return {1, 0} end
return {1, 1}
`)

// releaseScript gives back what ruleScript reserved for one job: its line in the cap
// log, its pair slot (the record it replaced, the sender's previous message to the
// contact, is the last again) and, when the contact's tier score is still the job's, the
// contact's place in the tier set (its previous score, or out of the set when the job
// made it count). KEYS as ruleScript's; ARGV: 1 campaign, 2 sender, 3 contact id,
// 4 the capped category ("" when none).
var releaseScript = redis.NewScript(`
local camp = ARGV[1]
local fc, fs, fp = 'f:' .. ARGV[4], 's:' .. ARGV[2], 'S:' .. ARGV[2]
local v = redis.call('HMGET', KEYS[1], fc, fs, fp)
if ARGV[4] ~= '' and v[1] then
  local lines, found = {}, false
  for line in string.gmatch(v[1], '[^\n]+') do
    if not found and string.match(line, '^%d+ (.*)$') == camp then found = true else lines[#lines + 1] = line end
  end
  if found and #lines == 0 then
    redis.call('HDEL', KEYS[1], fc)
  elseif found then
    redis.call('HSET', KEYS[1], fc, table.concat(lines, '\n'))
  end
end
if not v[2] then return 0 end
local at, tprev, flag, m = string.match(v[2], '^(%d*):(%d*):(%d):(.*)$')
if m ~= camp then return 0 end
if v[3] then
  redis.call('HSET', KEYS[1], fs, v[3])
  redis.call('HDEL', KEYS[1], fp)
else
  redis.call('HDEL', KEYS[1], fs)
end
if flag == '1' and KEYS[2] and tonumber(redis.call('ZSCORE', KEYS[2], ARGV[3])) == tonumber(at) then
  if tprev == '' then redis.call('ZREM', KEYS[2], ARGV[3]) else redis.call('ZADD', KEYS[2], tprev, ARGV[3]) end
end
return 1
`)

// pushbackScript records a provider refusal in the contact's rules hash KEYS[1].
// ARGV: 1 "h" (131049: hold marketing until ARGV[3] + ARGV[4]) or "b" (131056: back off
// the sender ARGV[2]: 4^n s from ARGV[3], at most ARGV[4] ms; the count n starts over
// when ARGV[3] is more than ARGV[5] ms after the last back-off ended), 6 time to live ms
// (the hash's is only ever lengthened).
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

// Pushback records a provider's signal about a message from sender to contact that
// changes how the contact is paced: SignalBackoffRecipient (WhatsApp's 131056, pair
// rate) backs the pair off 4^n seconds (4 s, 16 s, 64 s … at most the back-off maximum;
// n counts the consecutive back-offs and starts over after a quiet period);
// SignalHoldMarketing (WhatsApp's 131049) holds the contact's marketing messages, from
// every sender, for MarketingHold. Other signals are ignored. at is when the refusal happened (zero: now); holds never shorten.
func (p *Policy) Pushback(ctx context.Context, sender string, contact uint32, sig Signal, at time.Time) error {
	if at.IsZero() {
		at = p.now()
	}
	var args []any
	switch sig {
	case SignalHoldMarketing:
		args = []any{"h", sender, at.UnixMilli(), MarketingHold.Milliseconds(), 0, (MarketingHold + time.Hour).Milliseconds()}
	case SignalBackoffRecipient:
		args = []any{"b", sender, at.UnixMilli(), p.backoffMax.Milliseconds(), p.backoffReset.Milliseconds(),
			(p.backoffMax + p.backoffReset + time.Hour).Milliseconds()}
	default:
		return nil
	}
	if err := pushbackScript.Run(ctx, p.rdb, []string{p.rulesKey(contact)}, args...).Err(); err != nil {
		return fmt.Errorf("pushback %s for contact %d: %w", sig, contact, err)
	}
	return nil
}

// ruleKeys returns the keys of ruleScript and releaseScript for j, the caps of its
// category and the tier it counts against.
func (p *Policy) ruleKeys(j *Job) (keys []string, caps []Cap, tier int) {
	caps = p.caps[capCategory(j)]
	// Messages inside the customer-service window (free-form text needs one) do not
	// count against the messaging limit.
	if j.SenderTier > 0 && !j.FreeForm {
		return []string{p.rulesKey(j.ContactID), p.tierKey(j.SenderID)}, caps, j.SenderTier
	}
	return []string{p.rulesKey(j.ContactID)}, caps, 0
}

// capCategory is the category whose caps a job counts against.
func capCategory(j *Job) string {
	if j.CapCategory != "" {
		return j.CapCategory
	}
	return j.Purpose
}

// campaignOf names the job's message in the contact's rules hash: the cap log is one
// line per message.
func campaignOf(j *Job) string { return strings.ReplaceAll(j.Campaign, "\n", " ") }

// keep is the time to live of a rules hash: longer than any entry in it matters.
func (p *Policy) keep() time.Duration {
	d := max(TierWindow, MarketingHold, p.backoffMax+p.backoffReset, p.pair)
	for _, cs := range p.caps {
		for _, c := range cs {
			d = max(d, c.Window)
		}
	}
	return d + time.Hour
}

// scriptCall is one run of a script in a pipeline.
type scriptCall struct {
	keys   []string
	args   []any
	script *redis.Script // nil: runScripts' script
}

func (c scriptCall) run(def *redis.Script) *redis.Script {
	if c.script != nil {
		return c.script
	}
	return def
}

// runScripts runs script once per call, in one pipelined round trip, and returns the
// commands in the order of calls. It sends EVALSHA: the scripts are kilobytes, and
// sending the body with each of a batch's hundreds of jobs costs Redis and the client
// more than the scripts do. A command Redis answers NOSCRIPT (after a restart or SCRIPT
// FLUSH) did not run, so those alone run again with EVAL, which caches the script for
// the next batches: one more round trip, once per Redis restart. Other errors are
// returned as they are.
func runScripts(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	if len(calls) == 0 {
		return cmds, nil
	}
	pipe := rdb.Pipeline()
	for i, c := range calls {
		cmds[i] = c.run(script).EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return cmds, nil
	}
	var again []int
	for i, c := range cmds {
		switch {
		case c.Err() == nil:
		case redis.HasErrorPrefix(c.Err(), "NOSCRIPT"):
			again = append(again, i)
		default:
			return cmds, c.Err()
		}
	}
	if len(again) == 0 {
		return cmds, err
	}
	pipe = rdb.Pipeline()
	for _, i := range again {
		cmds[i] = calls[i].run(script).Eval(ctx, pipe, calls[i].keys, calls[i].args...)
	}
	_, err = pipe.Exec(ctx)
	return cmds, err
}

// applyRules runs ruleScript for every job still allowed after consent and window, all
// in one pipelined round trip, and turns the refused ones into skips and deferrals.
func (p *Policy) applyRules(ctx context.Context, jobs []Job, out []Decision, now time.Time, reserve bool) error {
	nowMs := now.UnixMilli()
	res := "0"
	if reserve {
		res = "1"
	}
	pair, tierWin, keep := p.pair.Milliseconds(), TierWindow.Milliseconds(), p.keep().Milliseconds()
	calls := make([]scriptCall, 0, len(jobs))
	idx := make([]int, 0, len(jobs)) // the job of each call
	quietUntil := make([]time.Time, len(jobs))
	var tiered, tieredCall []int // split tier: the jobs counting against a tier, and their call
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
		args := make([]any, 0, 12+2*len(caps))
		args = append(args, nowMs, res, campaignOf(j), j.SenderID, j.ContactID, quiet, capCategory(j), marketing,
			pair, tier, tierWin, keep)
		for _, c := range caps {
			args = append(args, c.Max, c.Window.Milliseconds())
		}
		if p.splitTier && tier > 0 {
			tiered, tieredCall = append(tiered, i), append(tieredCall, len(calls))
			calls = append(calls, scriptCall{keys: keys[:1], args: args, script: ruleSplitScript})
		} else {
			calls = append(calls, scriptCall{keys: keys, args: args})
		}
		idx = append(idx, i)
	}
	var places []tierPlace
	if len(tiered) > 0 {
		var err error
		if places, err = p.reserveTier(ctx, jobs, tiered, nowMs, res); err != nil {
			return fmt.Errorf("policy check: daily tier: %w", err)
		}
		// ruleSplitScript's ARGV: the tier's answer at 13–15, the caps after.
		for k, ci := range tieredCall {
			c := &calls[ci]
			t := places[k]
			args := make([]any, 0, len(c.args)+3)
			args = append(append(append(args, c.args[:12]...), t.state, t.a, t.b), c.args[12:]...)
			c.args = args
		}
	}
	cmds, err := runScripts(ctx, p.rdb, ruleScript, calls)
	if len(tiered) > 0 {
		// Give back the tier places the rules did not take: refused jobs', and those of
		// jobs that held a reservation already. A rules call whose reply is lost keeps its
		// place (it may have taken it).
		var undo []tierPlace
		for k, ci := range tieredCall {
			if places[k].state != 1 {
				continue
			}
			r, e := cmds[ci].Int64Slice()
			var rerr redis.Error
			switch {
			case e == nil && len(r) == 3 && r[2] == 0:
				undo = append(undo, places[k])
			case e != nil && errors.As(e, &rerr):
				undo = append(undo, places[k]) // the script did not run or wrote nothing
			}
		}
		p.undoTier(ctx, undo)
	}
	if err != nil {
		// Fail closed, and give back the fresh reservations of the scripts known to have
		// run. A job that held a reservation before (decided again) keeps it: its message
		// may have gone. So does a job whose reply was lost: the state may then hold a
		// reservation nothing uses, which holds a contact or a sender back, never over.
		var taken []Job
		for k, c := range cmds {
			if r, e := c.Int64Slice(); reserve && e == nil && len(r) >= 2 && r[0] == ruleAllow && r[1] == 1 {
				taken = append(taken, jobs[idx[k]])
			}
		}
		if len(taken) > 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = p.ReleaseCaps(rctx, taken)
			cancel()
		}
		return fmt.Errorf("policy check: per-recipient rules: %w", err)
	}
	for k, c := range cmds {
		i := idx[k]
		r, err := c.Int64Slice()
		if err != nil || len(r) < 2 {
			return fmt.Errorf("policy check: per-recipient rules: unexpected reply %v (%v)", c.Val(), err)
		}
		until := time.UnixMilli(r[1])
		switch r[0] {
		case ruleAllow: // r[1] says whether the reservation is fresh
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
	calls := make([]scriptCall, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		keys, caps, tier := p.ruleKeys(j)
		category := ""
		if len(caps) > 0 {
			category = capCategory(j)
		}
		calls[i] = scriptCall{keys: keys, args: []any{campaignOf(j), j.SenderID, j.ContactID, category}}
		if p.splitTier && tier > 0 {
			calls[i].keys, calls[i].script = keys[:1], releaseSplitScript
		}
	}
	cmds, err := runScripts(ctx, p.rdb, releaseScript, calls)
	if err != nil {
		return fmt.Errorf("release reservations: %w", err)
	}
	if p.splitTier {
		// The tier places the released records held, on the senders' slots. If this
		// round trip fails the records are released already and a second ReleaseCaps
		// finds nothing: the places stay, holding the senders back (never over) until
		// they leave the tier window.
		var undo []tierPlace
		for i, c := range cmds {
			if vals, e := c.Slice(); e == nil && len(vals) == 3 {
				a, _ := vals[1].(string)
				b, _ := vals[2].(string)
				undo = append(undo, tierPlace{state: 1, a: a, b: b, contact: jobs[i].ContactID, sender: jobs[i].SenderID})
			}
		}
		if len(undo) > 0 {
			calls := make([]scriptCall, len(undo))
			for k, t := range undo {
				calls[k] = scriptCall{keys: []string{p.tierKey(t.sender)}, args: []any{t.contact, t.a, t.b}}
			}
			if _, err := runScripts(ctx, p.rdb, tierUndoScript, calls); err != nil {
				return fmt.Errorf("release reservations: tier places: %w", err)
			}
		}
	}
	return nil
}
