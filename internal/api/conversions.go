package api

import (
	"net/http"
	"time"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/server"
)

// conversionsRequest is POST /v1/conversions: orders to record (1 to 1,000), each
// attributed to the last campaign that sent to its contact within window (a duration
// such as 168h; default the attribution window of herald track conversion).
type conversionsRequest struct {
	Conversions []server.ConversionRequest `json:"conversions"`
	Window      string                     `json:"window"`
}

const maxConversions = 1000

func (a *API) postConversions(c *call) error {
	var req conversionsRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if len(req.Conversions) == 0 || len(req.Conversions) > maxConversions {
		return problem("validation", "conversions: give 1 to 1000", FieldProblem{Pointer: "/conversions", Detail: "want 1 to 1000 conversions"})
	}
	var window time.Duration
	if req.Window != "" {
		d, err := time.ParseDuration(req.Window)
		if err != nil || d <= 0 {
			return problem("validation", "window: want a positive duration such as 168h", FieldProblem{Pointer: "/window", Detail: "want a positive duration such as 168h"})
		}
		window = d
	}
	conn, err := a.cfg.ClickHouse(c.r.Context())
	if err != nil {
		return err
	}
	res, err := app.TrackConversions(c.r.Context(), a.cfg.Deps, a.cfg.Components, conn, req.Conversions, window)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, res)
}
