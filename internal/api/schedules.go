package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/recurring"
)

// scheduleRequest is a recurring campaign as a client creates it (POST /v1/schedules).
type scheduleRequest struct {
	ID                     string          `json:"id"`
	Name                   string          `json:"name"`
	Cron                   string          `json:"cron"`
	Zone                   string          `json:"zone"`
	LocalTime              string          `json:"local_time"`
	Days                   string          `json:"days"`
	ExcludeReachedWithinMS int64           `json:"exclude_reached_within_ms"`
	MaxRuns                int             `json:"max_runs"`
	Until                  *time.Time      `json:"until"`
	CatchUpMS              int64           `json:"catch_up_ms"`
	Paused                 bool            `json:"paused"`
	Campaign               campaignRequest `json:"campaign"`
}

var scheduleIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

func scheduleID(c *call) (string, error) {
	id := c.r.PathValue("id")
	if !scheduleIDRE.MatchString(id) {
		return "", problem("not-found", fmt.Sprintf("no schedule %q", id))
	}
	c.resource = id
	return id, nil
}

// scheduleProblem maps the schedule store's state errors; others go to problemOf.
func scheduleProblem(err error) error {
	var se *recurring.StateError
	if errors.As(err, &se) {
		return problem("conflict", se.Error())
	}
	return err
}

func (a *API) createSchedule(c *call) error {
	var req scheduleRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	cr := req.Campaign
	sp := recurring.Spec{ID: req.ID, Name: req.Name, Cron: req.Cron, Zone: req.Zone, LocalTime: req.LocalTime, Days: req.Days,
		ExcludeReachedWithinMS: req.ExcludeReachedWithinMS, MaxRuns: req.MaxRuns, CatchUpMS: req.CatchUpMS,
		Campaign: dispatcher.Campaign{Name: cr.Name, Segment: cr.Segment, Template: cr.Template, FallbackTemplate: cr.FallbackTemplate,
			Senders: cr.Senders, Routing: cr.Routing, Channel: cr.Channel, Purpose: cr.Purpose, TrackLinks: cr.TrackLinks,
			MaxErrorRate: cr.MaxErrorRate, Holdout: cr.Holdout, QuietHours: cr.QuietHours, AllowedDays: cr.AllowedDays}}
	if req.Until != nil {
		sp.Until = req.Until.UTC()
	}
	// A schedule that is active launches campaigns by itself: creating one needs the
	// launch permission; without it, create it paused and let a key that has it resume.
	// (Input is checked first: a refused body says what is wrong whoever sends it.)
	if err := sp.Validate(); err != nil {
		var fe *recurring.FieldError
		if errors.As(err, &fe) {
			return &app.FieldError{Field: fe.Field, Err: fe.Err}
		}
		return err
	}
	if !req.Paused && !c.key.Can(apikeys.CampaignsLaunch) {
		return problem("forbidden", fmt.Sprintf("an active schedule launches campaigns: it needs %s and %s; a %s key without %s may create it paused (\"paused\": true) for a key that may launch to resume",
			apikeys.CampaignsWrite, apikeys.CampaignsLaunch, c.key.Role, apikeys.CampaignsLaunch))
	}
	sch, err := app.CreateSchedule(c.r.Context(), a.cfg.Deps, a.cfg.Components, sp, req.Paused)
	if err != nil {
		return err
	}
	c.resource = sch.ID
	c.w.Header().Set("Location", "/v1/schedules/"+sch.ID)
	return c.json(http.StatusCreated, sch)
}

func (a *API) schedules() (*recurring.Store, error) { return a.cfg.Deps.Schedules() }

func (a *API) listSchedules(c *call) error {
	limit, err := limitParam(c, 200, 50)
	if err != nil {
		return err
	}
	store, err := a.schedules()
	if err != nil {
		return err
	}
	list, err := store.List(c.r.Context(), int64(limit))
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, page[recurring.Schedule]{Items: list})
}

func (a *API) getSchedule(c *call) error {
	id, err := scheduleID(c)
	if err != nil {
		return err
	}
	store, err := a.schedules()
	if err != nil {
		return err
	}
	sch, err := store.Get(c.r.Context(), id)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, sch)
}

func (a *API) deleteSchedule(c *call) error {
	id, err := scheduleID(c)
	if err != nil {
		return err
	}
	store, err := a.schedules()
	if err != nil {
		return err
	}
	if err := store.Delete(c.r.Context(), id); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// scheduleTransition is pause or resume.
func (a *API) scheduleTransition(op string) func(*call) error {
	return func(c *call) error {
		id, err := scheduleID(c)
		if err != nil {
			return err
		}
		if len(c.body) > 0 {
			var none struct{}
			if err := c.decode(&none); err != nil {
				return err
			}
		}
		store, err := a.schedules()
		if err != nil {
			return err
		}
		var sch recurring.Schedule
		if op == "pause" {
			sch, err = store.Pause(c.r.Context(), id)
		} else {
			sch, err = store.Resume(c.r.Context(), id)
		}
		if err != nil {
			return scheduleProblem(err)
		}
		return c.json(http.StatusOK, sch)
	}
}

func (a *API) listScheduleRuns(c *call) error {
	id, err := scheduleID(c)
	if err != nil {
		return err
	}
	limit, err := limitParam(c, 200, 50)
	if err != nil {
		return err
	}
	runs, err := app.ScheduleRuns(c.r.Context(), a.cfg.Deps, a.cfg.Components, id, int64(limit))
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, page[app.RunSummary]{Items: runs})
}

// limitParam reads ?limit= (1 to most; def when absent).
func limitParam(c *call, most, def int) (int, error) {
	s := c.r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > most {
		return 0, paramProblem("limit", fmt.Sprintf("want a whole number from 1 to %d", most))
	}
	return n, nil
}
