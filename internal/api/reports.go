package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/herald-dev/herald/internal/app"
)

// report is GET /v1/reports/{kind} for the kinds of app.Report, with the CLI's
// parameters: campaign (repeatable for retention by campaign), from and to (RFC 3339
// or YYYY-MM-DD, UTC), weeks, by, step, control, window (a duration such as 168h),
// history.
func (a *API) report(kind string) func(*call) error {
	return func(c *call) error {
		q := c.r.URL.Query()
		p := app.ReportParams{Campaign: q.Get("campaign"), By: q.Get("by"), Step: q.Get("step"), Control: q.Get("control")}
		if kind == "retention" {
			p.Campaign, p.Campaigns = "", q["campaign"]
		}
		for _, t := range []struct {
			name string
			dst  *time.Time
		}{{"from", &p.From}, {"to", &p.To}} {
			if v := q.Get(t.name); v != "" {
				x, err := time.Parse(time.RFC3339, v)
				if err != nil {
					if x, err = time.Parse(time.DateOnly, v); err != nil {
						return paramProblem(t.name, "want RFC 3339 (2026-03-10T09:00:00Z) or a date (2026-03-10)")
					}
				}
				*t.dst = x.UTC()
			}
		}
		for _, n := range []struct {
			name string
			dst  *int
		}{{"weeks", &p.Weeks}, {"history", &p.History}} {
			if v := q.Get(n.name); v != "" {
				x, err := strconv.Atoi(v)
				if err != nil || x < 1 {
					return paramProblem(n.name, "want a positive integer")
				}
				*n.dst = x
			}
		}
		if v := q.Get("window"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return paramProblem("window", "want a positive duration such as 168h")
			}
			p.Window = d
		}
		if p.Campaign != "" {
			if !campaignIDRE.MatchString(p.Campaign) {
				return paramProblem("campaign", "no such campaign")
			}
			if _, err := a.cfg.Components.Campaigns.Status(c.r.Context(), p.Campaign); err != nil {
				return err
			}
		}
		conn, err := a.cfg.ClickHouse(c.r.Context())
		if err != nil {
			return err
		}
		r, err := app.Report(c.r.Context(), conn, kind, p)
		if err != nil {
			return asParamProblem(err)
		}
		return c.json(http.StatusOK, r)
	}
}

// asParamProblem turns a use case's refusal of a query parameter into a 400 naming it.
func asParamProblem(err error) error {
	if fe, ok := err.(*app.FieldError); ok {
		return paramProblem(fe.Field, fe.Err.Error())
	}
	return err
}
