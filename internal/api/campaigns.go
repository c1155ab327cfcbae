package api

import (
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/jsonx"
)

// campaignRequest is a draft campaign as a client creates it (POST /v1/campaigns): the
// keys the API prints a campaign with, less those Herald sets (id, created_at).
type campaignRequest struct {
	Name             string   `json:"name"`
	Segment          string   `json:"segment"`
	Template         string   `json:"template"`
	FallbackTemplate string   `json:"fallback_template"`
	Senders          []string `json:"senders"`
	Routing          string   `json:"routing"`
	Channel          string   `json:"channel"`
	Purpose          string   `json:"purpose"`
	TrackLinks       bool     `json:"track_links"`
	MaxErrorRate     float64  `json:"max_error_rate"`
	Holdout          float64  `json:"holdout"`
	QuietHours       string   `json:"quiet_hours"`
	AllowedDays      string   `json:"allowed_days"`
	// The channel policy (channel failover).
	Fallback             []dispatcher.ChannelSenders `json:"fallback"`
	FallbackOn           []string                    `json:"fallback_on"`
	NotDeliveredWithinMS int64                       `json:"not_delivered_within_ms"`
}

var campaignIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func campaignID(c *call) (string, error) {
	id := c.r.PathValue("id")
	if !campaignIDRE.MatchString(id) {
		return "", problem("not-found", fmt.Sprintf("no campaign %q", id))
	}
	c.resource = id
	return id, nil
}

func (a *API) createCampaign(c *call) error {
	var req campaignRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	cp, err := app.CreateCampaign(c.r.Context(), a.cfg.Deps, a.cfg.Components, dispatcher.Campaign{Name: req.Name, Segment: req.Segment,
		Template: req.Template, FallbackTemplate: req.FallbackTemplate, Senders: req.Senders, Routing: req.Routing, Channel: req.Channel,
		Purpose: req.Purpose, TrackLinks: req.TrackLinks, MaxErrorRate: req.MaxErrorRate, Holdout: req.Holdout,
		QuietHours: req.QuietHours, AllowedDays: req.AllowedDays,
		Fallback: req.Fallback, FallbackOn: req.FallbackOn, NotDeliveredWithinMS: req.NotDeliveredWithinMS})
	if err != nil {
		return err
	}
	c.resource = cp.ID
	c.w.Header().Set("Location", "/v1/campaigns/"+cp.ID)
	return c.json(http.StatusCreated, cp)
}

func (a *API) getCampaign(c *call) error {
	id, err := campaignID(c)
	if err != nil {
		return err
	}
	st, err := a.cfg.Components.Campaigns.Status(c.r.Context(), id)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, st)
}

func (a *API) listCampaigns(c *call) error {
	limit, cur, err := pageParams(c.r, "campaigns", 200)
	if err != nil {
		return err
	}
	list, next, err := a.cfg.Components.Campaigns.ListPage(c.r.Context(), dispatcher.PageKey{CreatedMS: cur.MS, ID: cur.ID}, int64(limit))
	if err != nil {
		return err
	}
	p := page[dispatcher.Status]{Items: list}
	if next.ID != "" {
		p.NextCursor = cursor{List: "campaigns", MS: next.CreatedMS, ID: next.ID}.encode()
	}
	return c.json(http.StatusOK, p)
}

// launchRequest may schedule the launch instead (POST /v1/campaigns/{id}/launch).
type launchRequest struct {
	At *time.Time `json:"at"`
}

func (a *API) launchCampaign(c *call) error {
	id, err := campaignID(c)
	if err != nil {
		return err
	}
	var req launchRequest
	if len(c.body) > 0 {
		if err := c.decode(&req); err != nil {
			return err
		}
	}
	var st dispatcher.Status
	if req.At != nil && req.At.After(time.Now()) {
		st, err = a.cfg.Components.Campaigns.Schedule(c.r.Context(), id, *req.At)
	} else {
		// The fan-out runs to its end whether or not the client waits (its context does
		// not end with the connection); a launch cut short by a dead process is finished
		// by the scheduler's leader.
		st, err = a.cfg.Components.Campaigns.Launch(c.r.Context(), id, nil)
	}
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, st)
}

// transition is pause, resume or cancel.
func (a *API) transition(op string) func(*call) error {
	return func(c *call) error {
		id, err := campaignID(c)
		if err != nil {
			return err
		}
		if len(c.body) > 0 {
			var none struct{}
			if err := c.decode(&none); err != nil {
				return err
			}
		}
		cs := a.cfg.Components.Campaigns
		var st dispatcher.Status
		switch op {
		case "pause":
			st, err = cs.Pause(c.r.Context(), id)
		case "resume":
			st, err = cs.Resume(c.r.Context(), id)
		default:
			st, err = cs.Cancel(c.r.Context(), id)
		}
		if err != nil {
			return err
		}
		return c.json(http.StatusOK, st)
	}
}

// progress streams a campaign's status as Server-Sent Events: a "progress" event with
// the status (the JSON of GET /v1/campaigns/{id}) whenever it changes, a comment every
// Heartbeat of silence, and a last "complete" event once the campaign is completed or
// cancelled, after which the stream ends.
func (a *API) progress(c *call) error {
	id, err := campaignID(c)
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	if _, err := a.cfg.Components.Campaigns.Status(ctx, id); err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	seq, last := 0, time.Now()
	send := func(event string, st dispatcher.Status) error {
		b, err := marshal(jsonx.Output(st))
		if err != nil {
			return err
		}
		seq++
		if _, err := fmt.Fprintf(c.w, "id: %d\nevent: %s\ndata: %s\n", seq, event, b); err != nil {
			return err
		}
		last = time.Now()
		return rc.Flush()
	}
	if _, err := fmt.Fprint(c.w, "retry: 2000\n\n"); err != nil {
		return err
	}
	return app.FollowCampaign(ctx, a.cfg.Components.Campaigns, id, a.cfg.ProgressEvery, func(st dispatcher.Status, changed bool) error {
		switch {
		case changed:
			if err := send("progress", st); err != nil {
				return err
			}
		case time.Since(last) >= a.cfg.Heartbeat:
			if _, err := fmt.Fprint(c.w, ": keep-alive\n\n"); err != nil {
				return err
			}
			last = time.Now()
			if err := rc.Flush(); err != nil {
				return err
			}
		}
		if app.Finished(st) {
			return send("complete", st)
		}
		return nil
	})
}
