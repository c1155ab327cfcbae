package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/herald-dev/herald/analytics"
)

// timelineSteps are the steps GET /v1/campaigns/{id}/timeline takes.
var timelineSteps = map[string]time.Duration{"1m": time.Minute, "5m": 5 * time.Minute, "15m": 15 * time.Minute,
	"1h": time.Hour, "6h": 6 * time.Hour, "1d": 24 * time.Hour}

// timeline answers a campaign's sends and statuses over time (the console's line chart).
func (a *API) timeline(c *call) error {
	id, err := campaignID(c)
	if err != nil {
		return err
	}
	name := c.r.URL.Query().Get("step")
	if name == "" {
		name = "1m"
	}
	step, ok := timelineSteps[name]
	if !ok {
		return paramProblem("step", "want 1m, 5m, 15m, 1h, 6h or 1d")
	}
	ctx := c.r.Context()
	conn, err := a.cfg.ClickHouse(ctx)
	if err != nil {
		return err
	}
	if _, err := a.cfg.Components.Campaigns.Status(ctx, id); err != nil {
		return err
	}
	rep, err := analytics.Timeline(ctx, conn, id, step)
	if errors.Is(err, analytics.ErrTimelineTooLong) {
		return paramProblem("step", fmt.Sprintf("the campaign spans more than %d steps of %s: take a longer step", analytics.MaxTimelinePoints, name))
	}
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, rep)
}
