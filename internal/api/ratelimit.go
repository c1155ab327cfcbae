package api

import (
	"context"
	"fmt"
	"math"

	"github.com/redis/go-redis/v9"
)

// rateLimiter limits each API key's requests with GCRA (the generic cell rate
// algorithm) in Redis, so the limit holds across every serve process: a key may make
// rate requests a second on average, burst at once. State is one key per API key, the
// theoretical arrival time in ms, expiring when idle:
//
//	P ratelimit:{KEYID}   STRING
type rateLimiter struct {
	rdb    redis.UniversalClient
	prefix string
}

// gcraScript: KEYS[1]; ARGV: emission interval ms (1000/rate), burst tolerance ms
// ((burst-1) × interval). Time is the Redis server's, the same for every process.
// Returns 0 when allowed, else the ms to wait.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if now < tat - tau then return math.ceil(tat - tau - now) end
local new = tat + T
redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil(new - now) + 1000)
return 0
`)

// allow takes one request of key's budget, or says how many ms until one is free.
func (l *rateLimiter) allow(ctx context.Context, keyID string, rate float64, burst int) (waitMS int64, err error) {
	if rate <= 0 || math.IsInf(rate, 0) {
		return 0, nil
	}
	interval := 1000 / rate
	tau := float64(max(burst, 1)-1) * interval
	n, err := gcraScript.Run(ctx, l.rdb, []string{l.prefix + "ratelimit:{" + keyID + "}"}, interval, tau).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit: %w", err)
	}
	return n, nil
}
