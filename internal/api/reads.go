package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
)

var funnelBy = []string{"variant", "sender", "country", "channel"}

func (a *API) funnel(c *call) error {
	q := c.r.URL.Query()
	campaign, by := q.Get("campaign"), q.Get("by")
	if !campaignIDRE.MatchString(campaign) {
		return paramProblem("campaign", "give the campaign's id")
	}
	if by != "" && !slices.Contains(funnelBy, by) {
		return paramProblem("by", "want variant, sender, country or channel")
	}
	conn, err := a.cfg.ClickHouse(c.r.Context())
	if err != nil {
		return err
	}
	if _, err := a.cfg.Components.Campaigns.Status(c.r.Context(), campaign); err != nil {
		return err
	}
	if by != "" {
		r, err := analytics.FunnelBy(c.r.Context(), conn, campaign, by)
		if err != nil {
			return err
		}
		return c.json(http.StatusOK, r)
	}
	f, err := analytics.Funnel(c.r.Context(), conn, campaign)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, f)
}

func (a *API) listSenders(c *call) error {
	return listByID(c, "senders", 500, a.cfg.Components.Senders.List, func(s dispatcher.Sender) string { return s.ID })
}

func (a *API) listTemplates(c *call) error {
	return listByID(c, "templates", 500, a.cfg.Components.Templates.List, func(s templates.Summary) string { return s.Name })
}

func (a *API) listAPICalls(c *call) error {
	limit, cur, err := pageParams(c.r, "audit", 1000)
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	f := analytics.APICallFilter{KeyID: q.Get("key_id"), ResourceID: q.Get("resource_id")}
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
	conn, err := a.cfg.ClickHouse(c.r.Context())
	if err != nil {
		return err
	}
	list, next, err := analytics.ListAPICalls(c.r.Context(), conn, f, analytics.APICallPage{TsMS: uint64(max(cur.MS, 0)), ID: cur.ID}, limit)
	if err != nil {
		return err
	}
	p := page[events.APICall]{Items: list}
	if next.ID != "" {
		p.NextCursor = cursor{List: "audit", MS: int64(next.TsMS), ID: next.ID}.encode()
	}
	return c.json(http.StatusOK, p)
}
