package throttle

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

// Governor paces each sender to its rate across every worker process. It is a GCRA
// (generic cell rate algorithm) kept in Redis with no burst allowance: each send gets its
// own slot, slots are 1/rate apart, and a reservation of n sends takes n consecutive
// slots atomically. So in any window of length w a sender gets at most ceil(w × rate)
// sends, including the first second (no token-bucket burst), whatever the number of
// processes. Slot times come from the Redis server clock, so process clocks may differ.
type Governor struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewGovernor returns a governor keeping state under prefix.
func NewGovernor(rdb redis.UniversalClient, prefix string) *Governor {
	return &Governor{rdb: rdb, prefix: prefix}
}

// Reservation is a run of n send slots: slot i is at Start + i×Interval (local clock).
type Reservation struct {
	Start    time.Time
	Interval time.Duration
	N        int
}

// At returns the time of slot i.
func (r Reservation) At(i int) time.Time { return r.Start.Add(time.Duration(i) * r.Interval) }

// reserveScript: KEYS[1] = tat key; ARGV[1] = interval µs, ARGV[2] = n.
// Returns {delay µs of the first slot from now, server now µs}.
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

// Reserve takes n consecutive send slots of sender at rate messages per second.
func (g *Governor) Reserve(ctx context.Context, sender string, rate float64, n int) (Reservation, error) {
	if n <= 0 {
		return Reservation{Start: time.Now(), N: 0}, nil
	}
	if rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return Reservation{}, fmt.Errorf("governor: sender %s has no valid rate (%v msg/s)", sender, rate)
	}
	interval := int64(math.Ceil(1e6 / rate))
	res, err := reserveScript.Run(ctx, g.rdb, []string{g.prefix + "{gov:" + sender + "}:tat"}, interval, n).Int64Slice()
	if err != nil {
		return Reservation{}, fmt.Errorf("governor reserve %s: %w", sender, err)
	}
	// The delay is measured on the server; anchor it at the moment we asked, which is
	// never later than the server's now, so local slots are never earlier than its slots.
	after := time.Now()
	return Reservation{Start: after.Add(time.Duration(res[0]) * time.Microsecond), Interval: time.Duration(interval) * time.Microsecond, N: n}, nil
}
