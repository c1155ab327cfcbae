package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Governor paces each sender to its limits across every worker process. It is a GCRA
// (generic cell rate algorithm) kept in Redis with no burst allowance: each send gets its
// own slot, slots are at least 1/rate apart, and a reservation takes consecutive slots
// atomically, in one round trip (a Lua script). So in any window of length w a sender
// gets at most ⌈w × rate⌉ sends, including the first second (no token-bucket burst),
// whatever the number of processes. Slot times come from the Redis server clock; each
// Governor maps them to its own clock (see Reservation), so process clocks may differ.
//
// On top of the rate (see Limits): an exact per-minute cap over every sliding 60 s
// window (or a per-hour cap over every sliding hour, for email quotas), warm-up pacing (bursts, then pauses with jitter), and provider pushback:
// 130429 slows the sender and lets it recover, 131048 holds it (see Pushback).
//
// All callers of one sender must pass the same Limits: the cap's log is written only by
// reservations that carry a cap (one that starts on a busy sender assumes its last
// window was full at the rate).
//
// Redis keys (P is the prefix; the hash tag keeps a sender's keys in one Cluster slot):
//
//	P{gov:<sender>}:tat  STRING  the sender's next free slot, µs of Redis time
//	P{gov:<sender>}:st   HASH    hold (µs; on hold until then), f and ft (the rate
//	                             factor a 130429 set, and when), wb (slots of the
//	                             current warm-up burst)
//	P{gov:<sender>}:log  ZSET    the sender's last slots (µs): at most the cap's worth
//	                             within its window (a minute or an hour), only with a
//	                             cap below what the rate fits in the window
//
// Every key expires soon after it stops mattering.
type Governor struct {
	rdb    redis.UniversalClient
	prefix string
	cfg    GovernorConfig
	clock  clockSync
}

// GovernorConfig tunes how the governor reacts to provider pushback. Zero fields take
// the defaults noted.
type GovernorConfig struct {
	// HoldFor is how long 131048 (spam rate limit: the number's quality is at risk)
	// holds the sender: no slots until then or Resume. Default 1 h.
	HoldFor time.Duration
	// MaintenanceHold is how long 131057 (number in maintenance or upgrading) holds the
	// sender. Default 60 s.
	MaintenanceHold time.Duration
	// SlowBy multiplies the sender's rate factor on 130429 (throughput exceeded), in
	// (0, 1). Default 0.5: the effective rate halves.
	SlowBy float64
	// MinFactor is the lowest the rate factor goes after repeated 130429s. Default 1/16.
	MinFactor float64
	// Recovery is how long the factor takes to climb back to 1, linearly, from the value
	// a 130429 set: f(t) = f0 + (1-f0)·(t-t0)/Recovery. Default 60 s.
	Recovery time.Duration
	// Backoff is how far a 130429 pushes the sender's next free slot beyond what is
	// already reserved, so the provider's window drains. Default 1 s; <0: none.
	Backoff time.Duration
	// Debounce: a 130429 within this time of the last slowdown does not slow the sender
	// again (many sends in flight fail together). Default 1 s.
	Debounce time.Duration
}

func (c GovernorConfig) withDefaults() GovernorConfig {
	if c.HoldFor <= 0 {
		c.HoldFor = time.Hour
	}
	if c.MaintenanceHold <= 0 {
		c.MaintenanceHold = time.Minute
	}
	if !(c.SlowBy > 0 && c.SlowBy < 1) {
		c.SlowBy = 0.5
	}
	if !(c.MinFactor > 0 && c.MinFactor <= 1) {
		c.MinFactor = 1.0 / 16
	}
	if c.Recovery <= 0 {
		c.Recovery = time.Minute
	}
	if c.Backoff == 0 {
		c.Backoff = time.Second
	} else if c.Backoff < 0 {
		c.Backoff = 0
	}
	if c.Debounce <= 0 {
		c.Debounce = time.Second
	}
	return c
}

// NewGovernor returns a governor keeping state under prefix, with the default pushback
// configuration.
func NewGovernor(rdb redis.UniversalClient, prefix string) *Governor {
	return &Governor{rdb: rdb, prefix: prefix, cfg: GovernorConfig{}.withDefaults()}
}

// WithConfig sets the pushback configuration.
func (g *Governor) WithConfig(c GovernorConfig) *Governor {
	g.cfg = c.withDefaults()
	return g
}

// Limits are what a sender may send. Slots honour all of them at once.
type Limits struct {
	// Rate is the sender's throughput in messages per second (Meta: 80 by default).
	// Every window of length w holds at most ⌈w × Rate⌉ slots.
	Rate float64
	// PerMinute caps the slots in every sliding 60 s window (0: no cap beyond Rate).
	// Below 60 × Rate it lets the sender run at Rate until the cap, then waits until
	// the oldest slot of the window is 60 s old. Exact: the slots of the last minute are
	// logged in Redis.
	PerMinute int
	// PerHour caps the slots in every sliding hour (0: none), for providers that count
	// by the hour (email quotas). Exact the same way: the hour's slots are logged, so a
	// sender keeps one log, and PerMinute and PerHour are not both set.
	PerHour int
	// WarmUp paces a new number in bursts (zero: off).
	WarmUp WarmUp
	// Slack widens the windows the limits are kept over: the rate holds over every
	// 1 s + Slack and the per-minute cap over every 60 s + Slack, so sends that start up
	// to Slack after their slots still keep every 1 s and 60 s window within the caps.
	// It costs Slack / 1 s of throughput (0.5% for 5 ms). Pace sets it to at least
	// PaceSlack. Must be below 1 s.
	Slack time.Duration
}

// WarmUp paces a new number in bursts: Burst slots at Rate, then a pause, then the next
// burst. A pause lasts Pause ± Jitter (uniform), measured from the last slot of a burst
// to the first slot of the next, and is never shorter than one interval. A sender idle
// for at least Pause − Jitter starts a fresh burst. The bursts still obey Rate and
// PerMinute. Turn it off (the zero WarmUp) once the number has warmed up.
type WarmUp struct {
	Burst  int           // slots per burst; 0: warm-up off
	Pause  time.Duration // pause between bursts
	Jitter time.Duration // the pause varies uniformly by up to ± Jitter (≤ Pause)
}

// Validate checks limits before they are used.
func (l Limits) Validate() error {
	switch {
	case !(l.Rate > 0) || math.IsInf(l.Rate, 0):
		return fmt.Errorf("rate must be a positive number of messages per second, got %v", l.Rate)
	case 1e6/l.Rate > float64(time.Hour/time.Microsecond):
		return fmt.Errorf("rate %v msg/s is below one message an hour", l.Rate)
	case l.PerMinute < 0:
		return fmt.Errorf("per-minute cap must not be negative, got %d", l.PerMinute)
	case l.PerHour < 0:
		return fmt.Errorf("per-hour cap must not be negative, got %d", l.PerHour)
	case l.PerMinute > 0 && l.PerHour > 0:
		return errors.New("a sender takes a per-minute or a per-hour cap, not both")
	case l.Slack < 0 || l.Slack >= time.Second:
		return fmt.Errorf("slack must be in [0, 1s), got %v", l.Slack)
	case l.WarmUp.Burst < 0:
		return fmt.Errorf("warm-up burst must not be negative, got %d", l.WarmUp.Burst)
	case l.WarmUp.Burst > 0 && l.WarmUp.Pause <= 0:
		return fmt.Errorf("warm-up: a burst of %d needs a positive pause", l.WarmUp.Burst)
	case l.WarmUp.Burst > 0 && (l.WarmUp.Jitter < 0 || l.WarmUp.Jitter > l.WarmUp.Pause):
		return fmt.Errorf("warm-up: jitter must be in [0, pause %v], got %v", l.WarmUp.Pause, l.WarmUp.Jitter)
	}
	return nil
}

// window returns the cap the governor logs slots for and its window: the per-hour cap
// and an hour, else the per-minute cap and a minute; a cap of 0 when there is none or
// the rate alone keeps every window under it (no log needed).
func (l Limits) window() (int, time.Duration) {
	n, w := l.PerMinute, time.Minute
	if l.PerHour > 0 {
		n, w = l.PerHour, time.Hour
	}
	if float64(n) >= w.Seconds()*l.Rate {
		n = 0
	}
	return n, w
}

// interval is the base slot spacing in µs: (1 s + Slack) / Rate, rounded up.
func (l Limits) interval() int64 {
	return int64(math.Ceil(float64(time.Second+l.Slack) / float64(time.Microsecond) / l.Rate))
}

// Reservation is a run of N send slots. Slot i is at At(i), on the local clock; the
// slots are consecutive for the sender: no other process holds a slot between them.
// Slots are Interval apart except where a warm-up pause or the per-minute cap moves
// them later.
type Reservation struct {
	Start    time.Time     // slot 0
	Interval time.Duration // spacing of the slots (the rate's interval at the reservation's rate factor)
	N        int
	// Next is when the first slot after these would be free for the sender, given
	// what is reserved now (others may take it meanwhile); when Held, the hold's end.
	Next time.Time
	// Held: the sender is on hold (131048, 131057 or Hold) until Next; N is 0.
	Held bool

	jumps []jump // where slots leave the uniform grid, by slot index

	// Server-clock view (µs of Redis time), for tests.
	srvNow, srvStart, srvNext int64
}

// jump moves slot i and the slots after it by shift beyond Start + i×Interval.
type jump struct {
	i     int
	shift time.Duration
}

// At returns the time of slot i.
func (r Reservation) At(i int) time.Time {
	t := r.Start.Add(time.Duration(i) * r.Interval)
	if len(r.jumps) == 0 {
		return t
	}
	k := sort.Search(len(r.jumps), func(k int) bool { return r.jumps[k].i > i })
	if k == 0 {
		return t
	}
	return t.Add(r.jumps[k-1].shift)
}

// serverAt returns the time of slot i in µs of Redis time (tests).
func (r Reservation) serverAt(i int) int64 {
	return r.srvStart + (r.At(i).Sub(r.Start)).Microseconds()
}

// ErrHeld is returned (in a *HeldError) by Reserve for a sender on hold.
var ErrHeld = errors.New("sender on hold")

// HeldError says until when a sender is held.
type HeldError struct {
	Sender string
	Until  time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("governor: sender %s is on hold until %s", e.Sender, e.Until.Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// keys returns the sender's keys; the hash tag keeps them in one Redis Cluster slot.
func (g *Governor) keys(sender string) []string {
	k := g.prefix + "{gov:" + sender + "}:"
	return []string{k + "tat", k + "st", k + "log"}
}

// governScript takes up to n consecutive slots. KEYS: tat (STRING, µs of Redis time:
// the earliest next slot), st (HASH: hold, f, ft, wb), log (ZSET of the slots of the
// last minute, only with a per-minute cap). ARGV: 1 base interval µs, 2 n, 3 horizon µs
// (<0: none), 4 per-minute cap (0: none), 5 window µs, 6 burst (0: no warm-up), 7 pause
// µs, 8 jitter µs, 9 seed (1..2^31-2), 10 recovery µs, 11 lead µs (the first slot is
// never before now+lead, so it reaches the caller in time).
// Returns {now, granted, first, interval, next, held, factor ppm, {i1, t1, i2, t2, ...}}
// where (i, t) are the slots off the uniform grid first + i×interval.
var governScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local base, n, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local M, W = tonumber(ARGV[4]), tonumber(ARGV[5])
local B, P, J, seed = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local R, lead = tonumber(ARGV[10]), tonumber(ARGV[11])
local st = redis.call('HMGET', KEYS[2], 'hold', 'f', 'ft', 'wb')
local hold = tonumber(st[1]) or 0
local factor = 1
local f0 = tonumber(st[2])
if f0 then
  factor = f0 + (1 - f0) * (now - (tonumber(st[3]) or now)) / R
  if factor > 1 then factor = 1 end
end
if hold > now then return {now, 0, 0, 0, hold, 1, math.floor(factor * 1e6), {}} end
local iv = math.ceil(base / factor)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local wb = tonumber(st[4]) or 0
local cand = tat
if cand < now + lead then
  if B > 0 and wb > 0 and now - tat >= P - J then wb = 0 end
  cand = now + lead
end
local old, c, lo = {}, 0, 0
if M > 0 then
  local existed = redis.call('EXISTS', KEYS[3]) == 1
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now - W))
  c = redis.call('ZCARD', KEYS[3])
  if not existed and tat > now - W then
    -- No log yet for a sender that was busy: assume the worst, the last M slots dense at
    -- the base interval up to tat.
    local k, args = 1, {}
    while k <= M and tat - k * base > now - W do
      local v = string.format('%d', tat - k * base)
      args[#args + 1] = v
      args[#args + 1] = v
      if #args >= 400 then redis.call('ZADD', KEYS[3], unpack(args)); args = {} end
      k = k + 1
    end
    if #args > 0 then redis.call('ZADD', KEYS[3], unpack(args)) end
    c = k - 1
  end
  lo = c - M
  if lo < 0 then lo = 0 end
  local hi = c - M + n
  if hi > c - 1 then hi = c - 1 end
  if hi >= lo then old = redis.call('ZRANGE', KEYS[3], lo, hi) end
end
local new = {}
local function place(j, at)
  if M > 0 then
    local gi = c + j - M
    if gi >= 0 then
      local r
      if gi < c then r = tonumber(old[gi - lo + 1]) else r = new[gi - c + 1] end
      if r + W > at then at = r + W end
    end
  end
  return at
end
local jumps, granted, first, expect = {}, 0, 0, 0
for j = 0, n - 1 do
  local at = place(j, cand)
  if horizon >= 0 and at >= now + horizon then break end
  new[j + 1] = at
  granted = j + 1
  if j == 0 then first = at; expect = at end
  if at ~= expect then jumps[#jumps + 1] = j; jumps[#jumps + 1] = at end
  expect = at + iv
  cand = at + iv
  if B > 0 then
    wb = wb + 1
    if wb >= B then
      wb = 0
      seed = (seed * 16807) % 2147483647
      local p = P + math.floor((2 * seed / 2147483647 - 1) * J)
      if p < iv then p = iv end
      cand = at + p
    end
  end
end
local nxt = place(granted, cand)
if granted > 0 then
  local keep = math.ceil((cand - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%d', cand), 'PX', keep + 60000)
  if B > 0 then
    redis.call('HSET', KEYS[2], 'wb', wb)
    local need = keep + math.ceil((P + J) / 1000) + 60000
    if redis.call('PTTL', KEYS[2]) < need then redis.call('PEXPIRE', KEYS[2], need) end
  end
  if M > 0 then
    local args = {}
    for i = 1, granted do
      local v = string.format('%d', new[i])
      args[#args + 1] = v
      args[#args + 1] = v
      if #args >= 400 then redis.call('ZADD', KEYS[3], unpack(args)); args = {} end
    end
    if #args > 0 then redis.call('ZADD', KEYS[3], unpack(args)) end
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(M + 1)) -- only the last M slots matter
    redis.call('PEXPIRE', KEYS[3], keep + math.ceil(W / 1000) + 1000)
  end
end
return {now, granted, first, iv, nxt, 0, math.floor(factor * 1e6), jumps}
`)

// reserveScript is the plain GCRA on the tat key alone (rate only: no holds, factor,
// per-minute cap or warm-up), as the governor first shipped it. The governor runs
// governScript, which keeps tat in the same key and format; this one remains for the
// slot-disjointness test in throttle_test.go. KEYS[1] = tat key; ARGV[1] = interval µs,
// ARGV[2] = n. Returns {delay µs of the first slot from now, server now µs}.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = tat
tat = tat + interval * n
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
return {start - now, now}
`)

// defaultLead is how far ahead of Redis's now the first slot of an idle sender goes
// before the governor has measured its round trip.
const defaultLead = time.Millisecond

// Reserve takes n consecutive send slots of sender at rate messages per second, however
// far ahead they fall, spaced exactly 1/rate apart (no slack). A sender on hold gets a
// *HeldError (errors.Is ErrHeld). New callers use ReserveWithin, or Pace.
func (g *Governor) Reserve(ctx context.Context, sender string, rate float64, n int) (Reservation, error) {
	if n <= 0 {
		return Reservation{Start: time.Now(), N: 0}, nil
	}
	if rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return Reservation{}, fmt.Errorf("governor: sender %s has no valid rate (%v msg/s)", sender, rate)
	}
	res, err := g.reserve(ctx, sender, Limits{Rate: rate}, n, -1)
	if err == nil && res.Held {
		return res, &HeldError{Sender: sender, Until: res.Next}
	}
	return res, err
}

// ReserveWithin takes up to n consecutive slots of sender that fall before now+horizon
// (Redis time) under lim, in one atomic round trip. It may grant fewer than n, or none
// (N = 0): the rest does not fit in the horizon, and Next says when the first slot after
// the granted ones would be free, so the caller can defer the rest without holding slots.
// A sender on hold gets N = 0, Held, and Next at the hold's end. horizon ≤ 0 takes
// nothing and only reports Next.
func (g *Governor) ReserveWithin(ctx context.Context, sender string, lim Limits, n int, horizon time.Duration) (Reservation, error) {
	if err := lim.Validate(); err != nil {
		return Reservation{}, fmt.Errorf("governor: sender %s: %w", sender, err)
	}
	return g.reserve(ctx, sender, lim, max(n, 0), max(horizon, 0))
}

// reserve runs governScript; horizon < 0 means none.
func (g *Governor) reserve(ctx context.Context, sender string, lim Limits, n int, horizon time.Duration) (Reservation, error) {
	horizonUS := int64(-1)
	if horizon >= 0 {
		horizonUS = horizon.Microseconds()
	}
	w := lim.WarmUp
	if w.Burst <= 0 {
		w = WarmUp{}
	}
	capN, window := lim.window()
	lead := g.clock.lead()
	t0 := time.Now()
	v, err := governScript.Run(ctx, g.rdb, g.keys(sender),
		lim.interval(), n, horizonUS, capN, (window + lim.Slack).Microseconds(),
		w.Burst, w.Pause.Microseconds(), w.Jitter.Microseconds(), 1+rand.Int64N(2147483646),
		g.cfg.Recovery.Microseconds(), lead.Microseconds()).Slice()
	t1 := time.Now()
	if err != nil {
		return Reservation{}, fmt.Errorf("governor reserve %s: %w", sender, err)
	}
	r, err := parseReply(v)
	if err != nil {
		return Reservation{}, fmt.Errorf("governor reserve %s: %w", sender, err)
	}
	g.clock.observe(t0, t1, r.now)
	res := Reservation{
		N: int(r.granted), Interval: time.Duration(r.interval) * time.Microsecond,
		Next: g.clock.local(r.next), Held: r.held,
		srvNow: r.now, srvStart: r.first, srvNext: r.next,
	}
	if res.N == 0 {
		res.Start = res.Next
		return res, nil
	}
	res.Start = g.clock.local(r.first)
	for k := 0; k+1 < len(r.jumps); k += 2 {
		i := int(r.jumps[k])
		uniform := r.first + int64(i)*r.interval
		res.jumps = append(res.jumps, jump{i: i, shift: time.Duration(r.jumps[k+1]-uniform) * time.Microsecond})
	}
	return res, nil
}

type reply struct {
	now, granted, first, interval, next int64
	held                                bool
	factorPPM                           int64
	jumps                               []int64
}

func parseReply(v []any) (reply, error) {
	if len(v) != 8 {
		return reply{}, fmt.Errorf("unexpected script reply of %d values", len(v))
	}
	var ints [7]int64
	for i := range ints {
		x, ok := v[i].(int64)
		if !ok {
			return reply{}, fmt.Errorf("unexpected script reply value %v", v[i])
		}
		ints[i] = x
	}
	r := reply{now: ints[0], granted: ints[1], first: ints[2], interval: ints[3], next: ints[4], held: ints[5] == 1, factorPPM: ints[6]}
	js, _ := v[7].([]any)
	for _, x := range js {
		y, ok := x.(int64)
		if !ok {
			return reply{}, fmt.Errorf("unexpected script reply jump %v", x)
		}
		r.jumps = append(r.jumps, y)
	}
	return r, nil
}

// slowScript: SignalSlowSender. KEYS: tat, st. ARGV: 1 factor multiplier, 2 min factor, 3 recovery
// µs, 4 debounce µs, 5 backoff µs. Returns {now, factor ppm}.
var slowScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mul, minf, R, deb, back = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local st = redis.call('HMGET', KEYS[2], 'f', 'ft')
local f, f0, ft = 1, tonumber(st[1]), tonumber(st[2]) or 0
if f0 then
  f = f0 + (1 - f0) * (now - ft) / R
  if f > 1 then f = 1 end
  if now - ft < deb then return {now, math.floor(f * 1e6)} end
end
f = f * mul
if f < minf then f = minf end
redis.call('HSET', KEYS[2], 'f', string.format('%.6f', f), 'ft', string.format('%d', now))
local need = math.ceil(R / 1000) + 60000
if redis.call('PTTL', KEYS[2]) < need then redis.call('PEXPIRE', KEYS[2], need) end
if back > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  tat = tat + back
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
end
return {now, math.floor(f * 1e6)}
`)

// holdScript: KEYS: st. ARGV: 1 hold µs from now, 2 "extend" (only ever lengthen the
// hold) or "set". Returns {now, hold}.
var holdScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
if ARGV[2] == 'extend' then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'hold')) or 0
  if cur > until_ then until_ = cur end
end
if until_ <= now then
  redis.call('HDEL', KEYS[1], 'hold')
  return {now, 0}
end
redis.call('HSET', KEYS[1], 'hold', string.format('%d', until_))
local need = math.ceil((until_ - now) / 1000) + 60000
if redis.call('PTTL', KEYS[1]) < need then redis.call('PEXPIRE', KEYS[1], need) end
return {now, until_}
`)

// Pushback applies a provider's signal about the sender:
//
//   - SignalSlowSender (WhatsApp's 130429: throughput exceeded) multiplies the sender's rate factor by SlowBy
//     (default: halves its effective rate, down to MinFactor), pushes its next free slot
//     Backoff later, and lets the factor climb back linearly to 1 over Recovery (default
//     60 s). More 130429s within Debounce of a slowdown (sends that were in flight
//     together) do not slow it again. The factor applies to reservations made after it.
//   - SignalHoldSender (WhatsApp's 131048: spam rate limit, quality) holds the sender
//     for HoldFor (default 1 h): no slots until then or Resume. A hold is only ever
//     lengthened by pushback.
//   - SignalSenderMaintenance (WhatsApp's 131057) holds it for MaintenanceHold
//     (default 60 s).
//
// Other signals are not the sender's (pair rate and per-user limits are the
// recipient's): Pushback ignores them and returns nil.
func (g *Governor) Pushback(ctx context.Context, sender string, sig Signal) error {
	keys := g.keys(sender)
	var err error
	switch sig {
	case SignalSlowSender:
		err = g.run(ctx, slowScript, keys[:2], g.cfg.SlowBy, g.cfg.MinFactor, g.cfg.Recovery.Microseconds(),
			g.cfg.Debounce.Microseconds(), g.cfg.Backoff.Microseconds())
	case SignalHoldSender:
		err = g.run(ctx, holdScript, keys[1:2], g.cfg.HoldFor.Microseconds(), "extend")
	case SignalSenderMaintenance:
		err = g.run(ctx, holdScript, keys[1:2], g.cfg.MaintenanceHold.Microseconds(), "extend")
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("governor pushback %s for %s: %w", sig, sender, err)
	}
	return nil
}

// Hold stops the sender's slots until until (local clock), replacing any hold. A time in
// the past resumes it.
func (g *Governor) Hold(ctx context.Context, sender string, until time.Time) error {
	if err := g.run(ctx, holdScript, g.keys(sender)[1:2], time.Until(until).Microseconds(), "set"); err != nil {
		return fmt.Errorf("governor hold %s: %w", sender, err)
	}
	return nil
}

// Resume lifts the sender's hold. Its rate factor (after 130429) is left to recover.
func (g *Governor) Resume(ctx context.Context, sender string) error {
	if err := g.run(ctx, holdScript, g.keys(sender)[1:2], 0, "set"); err != nil {
		return fmt.Errorf("governor resume %s: %w", sender, err)
	}
	return nil
}

func (g *Governor) run(ctx context.Context, s *redis.Script, keys []string, args ...any) error {
	t0 := time.Now()
	v, err := s.Run(ctx, g.rdb, keys, args...).Int64Slice()
	if err != nil {
		return err
	}
	g.clock.observe(t0, time.Now(), v[0])
	return nil
}

// GovernorState is what the governor knows about a sender now.
type GovernorState struct {
	// Factor is the share of the configured rate the sender gets now: 1, or less after a
	// 130429, climbing back to 1 over the Recovery.
	Factor float64 `json:"factor"`
	// SlowedAt is the last 130429 slowdown still recovering (zero when Factor is 1).
	SlowedAt time.Time `json:"slowed_at,omitzero"`
	// HeldUntil is the end of the sender's hold (zero when not held).
	HeldUntil time.Time `json:"held_until,omitzero"`
	// NextFree is the sender's next free slot under its rate (now when idle). The
	// per-minute cap and warm-up pauses may push a reservation later still.
	NextFree time.Time `json:"next_free,omitzero"`
	// Burst counts the slots of the current warm-up burst.
	Burst int `json:"burst,omitempty"`
	// LastMinute counts the slots in the last 60 s, when a per-minute cap is set.
	LastMinute int `json:"last_minute,omitempty"`
	// LastHour counts the logged slots of the last hour: with a per-hour cap, the
	// hour's sends (a per-minute cap logs only about its last minute).
	LastHour int `json:"last_hour,omitempty"`
}

var stateScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local st = redis.call('HMGET', KEYS[2], 'hold', 'f', 'ft', 'wb')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local f = -1
if st[2] then f = math.floor(tonumber(st[2]) * 1e6) end
local n = redis.call('ZCOUNT', KEYS[3], string.format('(%d', now - 60000000), '+inf')
local h = redis.call('ZCOUNT', KEYS[3], string.format('(%d', now - 3600000000), '+inf')
return {now, tat, tonumber(st[1]) or 0, f, tonumber(st[3]) or 0, tonumber(st[4]) or 0, n, h}
`)

// State reports the sender's governor state (for status commands and the CLI).
func (g *Governor) State(ctx context.Context, sender string) (GovernorState, error) {
	t0 := time.Now()
	v, err := stateScript.Run(ctx, g.rdb, g.keys(sender)).Int64Slice()
	if err != nil {
		return GovernorState{}, fmt.Errorf("governor state %s: %w", sender, err)
	}
	g.clock.observe(t0, time.Now(), v[0])
	now, tat, hold, fppm, ft, wb, n, h := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	s := GovernorState{Factor: 1, Burst: int(wb), LastMinute: int(n), NextFree: g.clock.local(max(now, tat))}
	s.LastHour = int(h)
	if fppm >= 0 {
		f0 := float64(fppm) / 1e6
		f := f0 + (1-f0)*float64(now-ft)/float64(g.cfg.Recovery.Microseconds())
		if f < 1 {
			s.Factor, s.SlowedAt = f, g.clock.local(ft)
		}
	}
	if hold > now {
		s.HeldUntil = g.clock.local(hold)
	}
	return s, nil
}

// String formats the state for logs.
func (s GovernorState) String() string {
	out := "factor " + strconv.FormatFloat(s.Factor, 'f', 3, 64) + ", next free " + s.NextFree.Format(time.RFC3339Nano)
	if !s.HeldUntil.IsZero() {
		out += ", held until " + s.HeldUntil.Format(time.RFC3339)
	}
	return out
}

// clockSync maps Redis server time (µs) to this process's clock. It keeps the sample with
// the smallest round trip (NTP's minimum filter): the server read its clock somewhere
// between our send and our receive, so the mapping errs by at most half that round trip,
// plus the drift since (allowed for at driftPPM). Local times carry Go's monotonic
// reading, so wall-clock steps do not move slots.
type clockSync struct {
	mu     sync.Mutex
	ok     bool
	base   time.Time     // midpoint of the best sample's round trip
	server int64         // Redis time at that point, µs
	unc    time.Duration // half the best sample's round trip
	rtt    time.Duration // smoothed round trip, for the lead
}

const driftPPM = 50

func (c *clockSync) observe(t0, t1 time.Time, server int64) {
	rtt := t1.Sub(t0)
	mid := t0.Add(rtt / 2)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rtt == 0 {
		c.rtt = rtt
	} else {
		c.rtt += (rtt - c.rtt) / 8
	}
	aged := c.unc + mid.Sub(c.base)*driftPPM/1e6
	if !c.ok || rtt/2 <= aged {
		c.ok, c.base, c.server, c.unc = true, mid, server, rtt/2
	}
}

// local maps a Redis time to the local clock.
func (c *clockSync) local(server int64) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ok {
		return time.Now()
	}
	return c.base.Add(time.Duration(server-c.server) * time.Microsecond)
}

// lead is how far ahead of Redis's now an idle sender's first slot goes: the smoothed
// round trip, bounded.
func (c *clockSync) lead() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rtt == 0 {
		return defaultLead
	}
	return min(max(c.rtt, 200*time.Microsecond), 50*time.Millisecond)
}
