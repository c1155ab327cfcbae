package api

import (
	"net/http"
	"time"
)

// rotateRequest is POST /v1/webhooks/{id}/rotate-secret: how long the old secret keeps
// signing next to the new (default 24 h; 0 ends it at once).
type rotateRequest struct {
	GraceSeconds *int64 `json:"grace_seconds"`
}

func (a *API) rotateWebhookSecret(c *call) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	var req rotateRequest
	if len(c.body) > 0 {
		if err := c.decode(&req); err != nil {
			return err
		}
	}
	grace := time.Duration(0) // the default
	if req.GraceSeconds != nil {
		if *req.GraceSeconds < 0 || *req.GraceSeconds > 7*24*3600 {
			return problem("validation", "grace_seconds: want 0 to 604800 (a week)", FieldProblem{Pointer: "/grace_seconds", Detail: "want 0 to 604800"})
		}
		grace = time.Duration(*req.GraceSeconds) * time.Second
		if grace == 0 {
			grace = -1 // no grace
		}
	}
	created, err := a.cfg.Components.Webhooks.RotateSecret(c.r.Context(), id, grace)
	if err != nil {
		return webhookProblem(err)
	}
	c.w.Header().Set("Cache-Control", "no-store") // the secret is in it
	return c.json(http.StatusOK, created)
}

// setWebhookActive is POST /v1/webhooks/{id}/pause (active false) and /resume.
func (a *API) setWebhookActive(active bool) func(*call) error {
	return func(c *call) error {
		id, err := webhookID(c)
		if err != nil {
			return err
		}
		if len(c.body) > 0 {
			var none struct{}
			if err := c.decode(&none); err != nil {
				return err
			}
		}
		sub, err := a.cfg.Components.Webhooks.SetActive(c.r.Context(), id, active)
		if err != nil {
			return webhookProblem(err)
		}
		return c.json(http.StatusOK, sub)
	}
}
