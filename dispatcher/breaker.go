package dispatcher

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/throttle"
)

// Breaker is a circuit breaker per (channel, sender), kept in Redis so that every worker
// shares it. Closed, it counts the outcomes of the sender's requests over a sliding
// window (two fixed windows, the previous one weighted by how much of it the sliding
// window still covers); when at least MinRequests outcomes are in it and the share of
// errors (transport errors and timeouts, provider 5xx) reaches ErrorRate, it opens. Open,
// it lets nothing through for OpenFor, then turns half-open: Probes requests go; Probes
// successes close it, one error opens it again. A probe round whose results never come
// back (its worker died) is renewed after OpenFor.
//
// Only campaigns whose channel policy falls back on circuit_open consult it: their new
// sends go to the next channel while it is open (the worker's choose stage).
type Breaker struct {
	rdb    redis.UniversalClient
	prefix string
	cfg    BreakerConfig
	now    func() time.Time
}

// BreakerConfig tunes a Breaker; zero fields take the defaults.
type BreakerConfig struct {
	Window      time.Duration // sliding window of outcomes (default 10 s)
	MinRequests int           // outcomes in the window before it may open (default 20)
	ErrorRate   float64       // share of errors that opens it (default 0.5)
	OpenFor     time.Duration // how long it stays open before probing (default 30 s)
	Probes      int           // probe requests of a half-open breaker (default 3)
}

// Breaker states.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// NewBreaker returns the breakers under prefix.
func NewBreaker(rdb redis.UniversalClient, prefix string, cfg BreakerConfig) *Breaker {
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.MinRequests <= 0 {
		cfg.MinRequests = 20
	}
	if cfg.ErrorRate <= 0 || cfg.ErrorRate > 1 {
		cfg.ErrorRate = 0.5
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = 30 * time.Second
	}
	if cfg.Probes <= 0 {
		cfg.Probes = 3
	}
	return &Breaker{rdb: rdb, prefix: prefix, cfg: cfg, now: time.Now}
}

// WithClock sets the breaker's clock (tests). It returns b.
func (b *Breaker) WithClock(now func() time.Time) *Breaker {
	b.now = now
	return b
}

func (b *Breaker) key(channel, sender string) string {
	return b.prefix + "{brk:" + channel + ":" + sender + "}"
}

// breakerKeep is how long an idle breaker's record lives.
const breakerKeep = 24 * time.Hour

// allowScript: ARGV = now ms, n, open-for ms, probes, keep ms. Answers how many of n
// requests may go now.
var allowScript = redis.NewScript(`
local now, n, openFor, probes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if st == 'closed' then return n end
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
if now - since < openFor then
  if st == 'open' then return 0 end
else
  -- open long enough, or a probe round that never came back: a new probe round
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'since', now, 'granted', 0, 'probe_ok', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local granted = tonumber(redis.call('HGET', KEYS[1], 'granted') or '0')
local give = math.min(n, math.max(0, probes - granted))
if give > 0 then redis.call('HINCRBY', KEYS[1], 'granted', give) end
return give
`)

// recordScript: ARGV = now ms, ok, errors, window ms, min requests, error rate, probes,
// keep ms. Answers the state after recording.
var recordScript = redis.NewScript(`
local now, ok, err = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local w, minreq, rate, probes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local k = KEYS[1]
local st = redis.call('HGET', k, 'state') or 'closed'
if st == 'open' then return st end -- outcomes of requests that started before it opened
if st == 'half_open' then
  if err > 0 then
    redis.call('HSET', k, 'state', 'open', 'since', now)
    return 'open'
  end
  if redis.call('HINCRBY', k, 'probe_ok', ok) >= probes then
    redis.call('DEL', k)
    return 'closed'
  end
  return st
end
local idx = math.floor(now / w)
local cb = tonumber(redis.call('HGET', k, 'cb') or '-2')
local cok = tonumber(redis.call('HGET', k, 'cok') or '0')
local cerr = tonumber(redis.call('HGET', k, 'cerr') or '0')
local pok = tonumber(redis.call('HGET', k, 'pok') or '0')
local perr = tonumber(redis.call('HGET', k, 'perr') or '0')
if idx ~= cb then
  if idx == cb + 1 then pok, perr = cok, cerr else pok, perr = 0, 0 end
  cok, cerr, cb = 0, 0, idx
end
cok, cerr = cok + ok, cerr + err
local weight = 1 - (now - idx * w) / w
local total = cok + cerr + weight * (pok + perr)
local errs = cerr + weight * perr
if total >= minreq and errs >= rate * total then
  redis.call('DEL', k)
  redis.call('HSET', k, 'state', 'open', 'since', now)
  st = 'open'
else
  redis.call('HSET', k, 'state', 'closed', 'cb', cb, 'cok', cok, 'cerr', cerr, 'pok', pok, 'perr', perr)
end
redis.call('PEXPIRE', k, ARGV[8])
return st
`)

// Allow answers how many of n new requests of sender on channel may go now: n when the
// breaker is closed, none while it is open, what is left of the probe round when
// half-open. One round trip.
func (b *Breaker) Allow(ctx context.Context, channel, sender string, n int) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	got, err := allowScript.Run(ctx, b.rdb, []string{b.key(channel, sender)}, b.now().UnixMilli(), n,
		b.cfg.OpenFor.Milliseconds(), b.cfg.Probes, breakerKeep.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("breaker %s/%s: %w", channel, sender, err)
	}
	return got, nil
}

// Record counts the outcomes of requests of sender on channel: ok answered (sent, or
// refused for a reason of the recipient's), failed did not (transport error, timeout,
// provider 5xx). It returns the breaker's state afterwards.
func (b *Breaker) Record(ctx context.Context, channel, sender string, ok, failed int) (string, error) {
	if ok == 0 && failed == 0 {
		return b.State(ctx, channel, sender)
	}
	st, err := recordScript.Run(ctx, b.rdb, []string{b.key(channel, sender)}, b.now().UnixMilli(), ok, failed,
		b.cfg.Window.Milliseconds(), b.cfg.MinRequests, strconv.FormatFloat(b.cfg.ErrorRate, 'f', -1, 64), b.cfg.Probes,
		breakerKeep.Milliseconds()).Text()
	if err != nil {
		return "", fmt.Errorf("breaker %s/%s: %w", channel, sender, err)
	}
	return st, nil
}

// State is the breaker's state as last recorded (an open breaker past OpenFor reads
// open until a request asks to go).
func (b *Breaker) State(ctx context.Context, channel, sender string) (string, error) {
	st, err := b.rdb.HGet(ctx, b.key(channel, sender), "state").Result()
	if err == redis.Nil {
		return BreakerClosed, nil
	}
	if err != nil {
		return "", fmt.Errorf("breaker %s/%s: %w", channel, sender, err)
	}
	return st, nil
}

// breakerError reports whether a send's error says the provider is unwell (a transport
// error or timeout, a retryable refusal that asks nothing of the pace, such as a 5xx)
// rather than refusing this one message or asking to slow down.
func breakerError(se *SendError) bool {
	return se.Action == ActionTransport || se.Action == ActionRetry && se.Signal == throttle.SignalNone
}
