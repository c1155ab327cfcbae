package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// EnsureRunning stores cp as a running campaign under its own id unless that campaign
// exists: the journey engine's campaigns (one per journey, version, send step and
// entry), whose jobs it queues one contact at a time. They are not listed among the
// campaigns and never complete (no fan-out ends them); the worker treats their jobs as
// any other's: claim, policy, render, pace, send, events.
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
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("journey campaign %s: %w", cp.ID, err)
	}
	return nil
}
