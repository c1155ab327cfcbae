package throttle

import (
	"context"
	"fmt"
	"strconv"
)

// TierUsed is how many distinct recipients count against the sender's daily tier now:
// those it sent to (or holds a place for) in the last TierWindow, by the policy's clock.
// For a status page; the rules decide in their scripts, not from this figure.
func (p *Policy) TierUsed(ctx context.Context, sender string) (int64, error) {
	since := "(" + strconv.FormatInt(p.now().Add(-TierWindow).UnixMilli(), 10)
	n, err := p.rdb.ZCount(ctx, p.tierKey(sender), since, "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("tier of sender %s: %w", sender, err)
	}
	return n, nil
}
