package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// autoKey is the ZSET of the campaigns EnsureRunning made, by creation time (the
// scheduler sweeps their stale sends as it does the listed campaigns').
func (c *Campaigns) autoKey() string { return c.prefix + "campaigns:auto" }

// autoStatuses returns the newest limit campaigns EnsureRunning made.
func (c *Campaigns) autoStatuses(ctx context.Context, limit int64) ([]Status, error) {
	ids, err := c.rdb.ZRevRange(ctx, c.autoKey(), 0, limit-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list journey campaigns: %w", err)
	}
	out := make([]Status, 0, len(ids))
	for _, id := range ids {
		st, err := c.Status(ctx, id)
		if err != nil {
			continue // gone (erased): nothing to sweep
		}
		out = append(out, st)
	}
	return out, nil
}

// EnsureRunning stores cp as a running campaign under its own id unless that campaign
// exists: the journey engine's campaigns (one per journey, version, send step and
// entry), whose jobs it queues one contact at a time. They are not listed among the
// campaigns and never complete (no fan-out ends them); the worker treats their jobs as
// any other's: claim, policy, render, pace, send, events. They are kept in a list of
// their own (P campaigns:auto) whose stale sends the scheduler sweeps too.
func (c *Campaigns) EnsureRunning(ctx context.Context, cp Campaign) error {
	if cp.ID == "" || cp.Template == "" || len(cp.Senders) == 0 {
		return fmt.Errorf("journey campaign %q: an id, a template and a sender are required", cp.ID)
	}
	if cp.Channel == "" {
		cp.Channel = "whatsapp"
	}
	if cp.Purpose == "" {
		cp.Purpose = "marketing"
	}
	if cp.Created.IsZero() {
		cp.Created = c.now().UTC()
	}
	spec, _ := json.Marshal(cp)
	k := c.key(cp.ID)
	pipe := c.rdb.TxPipeline()
	pipe.HSetNX(ctx, k, "spec", spec)
	pipe.HSetNX(ctx, k, "state", string(Running))
	pipe.HSetNX(ctx, k, "audience", "-1")
	pipe.HSetNX(ctx, k, "launched_at", strconv.FormatInt(cp.Created.UnixMilli(), 10))
	pipe.ZAddNX(ctx, c.autoKey(), redis.Z{Score: float64(cp.Created.UnixMilli()), Member: cp.ID})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("journey campaign %s: %w", cp.ID, err)
	}
	return nil
}
