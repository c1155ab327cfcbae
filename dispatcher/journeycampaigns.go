package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/throttle"
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

// ReasonJourneyExited skips a journey step's send whose contact left the journey (an
// exit condition: replied, converted, opted out, left the segment) after it was queued.
const ReasonJourneyExited = "journey_exited"

// JourneyExits tells which journey send jobs belong to an entry that has exited
// (journeys.Exits); answers false for jobs of other campaigns.
type JourneyExits interface {
	Exited(ctx context.Context, jobs []Key) ([]bool, error)
}

// isJourneyCampaign reports whether id names a journey step's campaign ("j.<journey>.
// <version>.<step>.<entry>", journeys.CampaignID).
func isJourneyCampaign(id string) bool { return strings.HasPrefix(id, "j.") }

// journeyExited skips, right before the send, the allowed jobs of journey steps whose
// contact has exited the journey since the step queued them, and gives back the
// frequency-cap slots the policy took for them. One round trip for the batch.
func (w *Worker) journeyExited(ctx context.Context, items []*item) error {
	if w.cfg.Journeys == nil {
		return nil
	}
	var todo []*item
	var keys []Key
	for _, it := range items {
		if active(it) && it.decision.Verdict == throttle.Allow && it.providerID == "" && isJourneyCampaign(it.job.Campaign) {
			todo = append(todo, it)
			keys = append(keys, Key{it.job.Campaign, it.job.Contact})
		}
	}
	if len(todo) == 0 {
		return nil
	}
	gone, err := w.cfg.Journeys.Exited(ctx, keys)
	if err != nil {
		return err
	}
	var skipped []*item
	for i, it := range todo {
		if gone[i] {
			skipped = append(skipped, it)
		}
	}
	if len(skipped) == 0 {
		return nil
	}
	if err := w.releaseCaps(ctx, skipped); err != nil {
		return err
	}
	for _, it := range skipped {
		it.outcome, it.reason = OutcomeSkipped, ReasonJourneyExited
	}
	return nil
}
