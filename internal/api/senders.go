package api

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
)

// senderRequest is a sender as POST /v1/senders takes it: the keys a sender is
// printed with, and its secret (token), which is never printed back.
type senderRequest struct {
	ID            string            `json:"id"`
	Channel       string            `json:"channel"`
	PhoneNumberID string            `json:"phone_number_id"`
	Token         string            `json:"token"`
	Rate          *float64          `json:"rate"`
	Name          string            `json:"name"`
	Countries     []string          `json:"countries"`
	PerMinute     int               `json:"per_minute"`
	PerHour       int               `json:"per_hour"`
	Tier          int               `json:"tier"`
	Settings      map[string]string `json:"settings"`
	WarmUpBurst   int               `json:"warm_up_burst"`
	WarmUpPauseMS int64             `json:"warm_up_pause_ms"`
}

func (a *API) createSender(c *call) error {
	var req senderRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	s := dispatcher.Sender{ID: req.ID, Channel: req.Channel, PhoneNumberID: req.PhoneNumberID, Token: req.Token, Rate: 80, Name: req.Name,
		PerMinute: req.PerMinute, PerHour: req.PerHour, Tier: req.Tier, Settings: req.Settings, WarmUpBurst: req.WarmUpBurst,
		WarmUpPause: time.Duration(req.WarmUpPauseMS) * time.Millisecond}
	if s.Channel == "" {
		s.Channel = "whatsapp"
	}
	if s.Settings == nil {
		s.Settings = map[string]string{}
	}
	if req.Rate != nil {
		s.Rate = *req.Rate
	}
	for _, cc := range req.Countries {
		s.Countries = append(s.Countries, strings.ToUpper(strings.TrimSpace(cc)))
	}
	s, err := app.SaveSender(c.r.Context(), a.cfg.Components, s)
	if err != nil {
		return err
	}
	c.resource = s.ID
	c.w.Header().Set("Location", "/v1/senders/"+s.ID)
	return c.json(http.StatusCreated, s)
}

var senderIDRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func senderID(c *call) (string, error) {
	id := c.r.PathValue("id")
	if !senderIDRE.MatchString(id) {
		return "", problem("not-found", fmt.Sprintf("no sender %q", id))
	}
	c.resource = id
	return id, nil
}

func (a *API) senderGovernor(c *call) error {
	id, err := senderID(c)
	if err != nil {
		return err
	}
	st, err := app.SenderGovernor(c.r.Context(), a.cfg.Components, id, nil)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, st)
}

// holdRequest is how long POST /v1/senders/{id}/hold holds: until a time, or for
// seconds (default an hour).
type holdRequest struct {
	Until      *time.Time `json:"until"`
	ForSeconds *float64   `json:"for_seconds"`
}

func (a *API) holdSender(c *call) error {
	id, err := senderID(c)
	if err != nil {
		return err
	}
	var req holdRequest
	if len(c.body) > 0 {
		if err := c.decode(&req); err != nil {
			return err
		}
	}
	until := time.Now().Add(time.Hour)
	switch {
	case req.Until != nil && req.ForSeconds != nil:
		return problem("validation", "give until or for_seconds, not both", FieldProblem{Pointer: "/for_seconds", Detail: "not with until"})
	case req.Until != nil:
		if !req.Until.After(time.Now()) {
			return problem("validation", "until is in the past", FieldProblem{Pointer: "/until", Detail: "want a time in the future"})
		}
		until = *req.Until
	case req.ForSeconds != nil:
		if *req.ForSeconds <= 0 || *req.ForSeconds > 366*24*3600 {
			return problem("validation", "for_seconds: want more than 0 and at most a year", FieldProblem{Pointer: "/for_seconds", Detail: "want more than 0 and at most a year"})
		}
		until = time.Now().Add(time.Duration(*req.ForSeconds * float64(time.Second)))
	}
	st, err := app.HoldSender(c.r.Context(), a.cfg.Components, id, until)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, st)
}

func (a *API) resumeSender(c *call) error {
	id, err := senderID(c)
	if err != nil {
		return err
	}
	if len(c.body) > 0 {
		var none struct{}
		if err := c.decode(&none); err != nil {
			return err
		}
	}
	st, err := app.ResumeSender(c.r.Context(), a.cfg.Components, id)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, st)
}

func (a *API) dryRun(c *call) error {
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
	dr, err := app.DryRun(c.r.Context(), a.cfg.Components, id)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, dr)
}
