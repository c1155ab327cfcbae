package throttle

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReasonFrequencyCap is the skip reason of a contact who already got as many messages of
// the category as a cap allows.
const ReasonFrequencyCap = "frequency_cap"

// Cap limits how many messages of a category (the consent purpose: marketing, utility)
// one contact gets in a rolling window, e.g. 1 marketing message per 72h.
type Cap struct {
	Category string
	Max      int
	Window   time.Duration
}

func (c Cap) String() string { return fmt.Sprintf("%s:%d/%s", c.Category, c.Max, c.Window) }

// ParseCaps reads caps written like "marketing:1/72h,marketing:3/168h".
func ParseCaps(s string) ([]Cap, error) {
	var out []Cap
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		cat, rest, ok := strings.Cut(part, ":")
		num, win, ok2 := strings.Cut(rest, "/")
		n, err := strconv.Atoi(num)
		d, err2 := time.ParseDuration(win)
		if !ok || !ok2 || cat == "" || err != nil || err2 != nil || n < 1 || d <= 0 {
			return nil, fmt.Errorf("frequency cap %q: want category:count/duration, e.g. marketing:1/72h", part)
		}
		out = append(out, Cap{Category: cat, Max: n, Window: d})
	}
	return out, nil
}

// capScript reserves one message for ARGV[1] (a campaign:contact id) in the contact's
// category log KEYS[1] if every cap allows it, atomically across workers. ARGV[2] = now
// ms, then pairs of (max, window ms). A member already in the log is this same message
// decided again (a retry): it is allowed without counting twice.
var capScript = redis.NewScript(`
local now = tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
local longest = 0
for i = 3, #ARGV, 2 do
  local max, win = tonumber(ARGV[i]), tonumber(ARGV[i+1])
  if win > longest then longest = win end
  if redis.call('ZCOUNT', KEYS[1], now - win + 1, '+inf') >= max then return 0 end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], longest)
return 1
`)

func (p *Policy) capKey(contact uint32, category string) string {
	return p.prefix + "freq:" + category + ":" + strconv.FormatUint(uint64(contact), 10)
}
