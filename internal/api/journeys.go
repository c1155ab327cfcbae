package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/journeys"
)

// journeyRequest adds or versions a journey: its YAML definition as text.
type journeyRequest struct {
	Definition string `json:"definition"`
}

// journeyProblem maps the journey use cases' errors to problems.
func journeyProblem(err error) error {
	var es journeys.Errors
	var se *journeys.StateError
	switch {
	case errors.As(err, &es):
		probs := make([]FieldProblem, len(es))
		for i, e := range es {
			probs[i] = FieldProblem{Pointer: "/definition", Detail: e.Error()}
		}
		return problem("validation", es[0].Error(), probs...)
	case errors.As(err, &se):
		return problem("conflict", se.Error())
	case errors.Is(err, journeys.ErrNotFound):
		return problem("not-found", err.Error())
	}
	return err
}

func journeyID(c *call) (string, error) {
	id := c.r.PathValue("id")
	if !campaignIDRE.MatchString(id) {
		return "", problem("not-found", fmt.Sprintf("no journey %q", id))
	}
	c.resource = id
	return id, nil
}

func (a *API) listJourneys(c *call) error {
	list, err := app.ListJourneys(c.r.Context(), a.cfg.Deps)
	if err != nil {
		return err
	}
	if list == nil {
		list = []journeys.Info{}
	}
	return c.json(http.StatusOK, map[string]any{"items": list})
}

func (a *API) addJourney(c *call) error {
	var req journeyRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Definition == "" {
		return problem("validation", "definition: the journey's YAML is required", FieldProblem{Pointer: "/definition", Detail: "required"})
	}
	in, err := app.AddJourney(c.r.Context(), a.cfg.Deps, []byte(req.Definition))
	if err != nil {
		return journeyProblem(err)
	}
	c.resource = in.ID
	c.w.Header().Set("Location", "/v1/journeys/"+in.ID)
	return c.json(http.StatusCreated, in)
}

func (a *API) getJourney(c *call) error {
	id, err := journeyID(c)
	if err != nil {
		return err
	}
	in, err := app.ShowJourney(c.r.Context(), a.cfg.Deps, id)
	if err != nil {
		return journeyProblem(err)
	}
	return c.json(http.StatusOK, in)
}

func (a *API) journeyState(state string) func(*call) error {
	return func(c *call) error {
		id, err := journeyID(c)
		if err != nil {
			return err
		}
		in, err := app.SetJourneyState(c.r.Context(), a.cfg.Deps, id, state)
		if err != nil {
			return journeyProblem(err)
		}
		return c.json(http.StatusOK, in)
	}
}

func (a *API) journeyReport(c *call) error {
	id := c.r.URL.Query().Get("id")
	if !campaignIDRE.MatchString(id) {
		return paramProblem("id", "give the journey's id")
	}
	rep, err := app.ReportJourney(c.r.Context(), a.cfg.Deps, id)
	if err != nil {
		return journeyProblem(err)
	}
	return c.json(http.StatusOK, rep)
}

// eventRequest is a custom event (POST /v1/events).
type eventRequest struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	ContactID  uint32            `json:"contact_id"`
	Phone      string            `json:"phone"`
	Email      string            `json:"email"`
	Properties map[string]string `json:"properties"`
	Time       time.Time         `json:"time"`
}

func (a *API) postEvent(c *call) error {
	var req eventRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	sent, err := app.SendEvent(c.r.Context(), a.cfg.Deps, app.CustomEvent{ID: req.ID, Name: req.Name, ContactID: req.ContactID,
		Phone: req.Phone, Email: req.Email, Properties: req.Properties, Time: req.Time})
	if err != nil {
		return err
	}
	c.resource = sent.ID
	return c.json(http.StatusAccepted, sent)
}
