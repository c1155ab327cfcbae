package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/webhooks"
)

var webhookIDRE = regexp.MustCompile(`^wh_[0-9a-f]{16}$`)

// webhookProblem maps the webhooks package's errors to problems.
func webhookProblem(err error) error {
	var fe *webhooks.FieldError
	switch {
	case errors.As(err, &fe):
		return problem("validation", fe.Error(), FieldProblem{Pointer: "/" + fe.Field, Detail: fe.Reason})
	case errors.Is(err, webhooks.ErrNotFound):
		return problem("not-found", err.Error())
	}
	return err
}

func webhookID(c *call) (string, error) {
	id := c.r.PathValue("id")
	if !webhookIDRE.MatchString(id) {
		return "", problem("not-found", fmt.Sprintf("no webhook subscription %q", id))
	}
	c.resource = id
	return id, nil
}

type webhookRequest struct {
	URL         string        `json:"url"`
	Kinds       []events.Kind `json:"kinds"`
	Campaigns   []string      `json:"campaigns"`
	Description string        `json:"description"`
}

func (a *API) createWebhook(c *call) error {
	var req webhookRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	sub, err := a.cfg.Components.Webhooks.Create(c.r.Context(), webhooks.Spec{URL: req.URL, Kinds: req.Kinds, Campaigns: req.Campaigns, Description: req.Description})
	if err != nil {
		return webhookProblem(err)
	}
	c.resource = sub.ID
	c.w.Header().Set("Location", "/v1/webhooks/"+sub.ID)
	c.w.Header().Set("Cache-Control", "no-store") // the secret is in it
	return c.json(http.StatusCreated, sub)
}

func (a *API) listWebhooks(c *call) error {
	return listByID(c, "webhooks", 500, a.cfg.Components.Webhooks.List, func(s webhooks.Subscription) string { return s.ID })
}

func (a *API) getWebhook(c *call) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	sub, err := a.cfg.Components.Webhooks.Get(c.r.Context(), id)
	if err != nil {
		return webhookProblem(err)
	}
	return c.json(http.StatusOK, sub)
}

func (a *API) deleteWebhook(c *call) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	if err := a.cfg.Components.Webhooks.Delete(c.r.Context(), id); err != nil {
		return webhookProblem(err)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

type replayRequest struct {
	DeliveryIDs []string  `json:"delivery_ids"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
}

func (a *API) replayWebhook(c *call) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	var req replayRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	switch {
	case len(req.DeliveryIDs) == 0 && req.From.IsZero() && req.To.IsZero():
		return problem("validation", "name the deliveries to replay: delivery_ids, or a time range from/to",
			FieldProblem{Pointer: "/delivery_ids", Detail: "give delivery_ids or from/to"})
	case len(req.DeliveryIDs) > 0 && (!req.From.IsZero() || !req.To.IsZero()):
		return problem("validation", "give delivery_ids or a time range, not both", FieldProblem{Pointer: "/from", Detail: "not with delivery_ids"})
	case len(req.DeliveryIDs) > webhooks.MaxReplay:
		return problem("validation", fmt.Sprintf("at most %d delivery ids at once", webhooks.MaxReplay), FieldProblem{Pointer: "/delivery_ids", Detail: "too many"})
	case !req.From.IsZero() && !req.To.IsZero() && req.To.Before(req.From):
		return problem("validation", "to is before from", FieldProblem{Pointer: "/to", Detail: "before from"})
	}
	n, err := a.cfg.Components.Webhooks.Replay(c.r.Context(), id, webhooks.ReplaySpec{DeliveryIDs: req.DeliveryIDs, From: req.From, To: req.To})
	if err != nil {
		return webhookProblem(err)
	}
	return c.json(http.StatusOK, struct {
		Replayed int `json:"replayed"`
	}{n})
}

var deliveryStates = []string{webhooks.StatePending, webhooks.StateDelivered, webhooks.StateFailed}

func (a *API) listDeliveries(c *call) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	limit, cur, err := pageParams(c.r, "deliveries", 1000)
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	f := webhooks.DeliveryFilter{State: q.Get("state")}
	if f.State != "" && !slices.Contains(deliveryStates, f.State) {
		return paramProblem("state", "want pending, delivered or failed")
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return paramProblem(p.name, "want a time in RFC 3339, e.g. 2026-03-10T09:00:00Z")
			}
			*p.dst = t
		}
	}
	list, nextMS, nextID, err := a.cfg.Components.Webhooks.Deliveries(c.r.Context(), id, f, cur.MS, cur.ID, limit)
	if err != nil {
		return webhookProblem(err)
	}
	p := page[webhooks.Delivery]{Items: list}
	if nextID != "" {
		p.NextCursor = cursor{List: "deliveries", MS: nextMS, ID: nextID}.encode()
	}
	return c.json(http.StatusOK, p)
}
