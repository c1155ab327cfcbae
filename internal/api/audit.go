package api

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/jsonx"
)

// auditCampaign is GET /v1/audit/campaigns/{id}: the campaign's proof (herald audit
// campaign). ?purpose= names the consent purpose when the campaign is no longer known.
func (a *API) auditCampaign(c *call) error {
	id, err := campaignID(c)
	if err != nil {
		return err
	}
	purpose := c.r.URL.Query().Get("purpose")
	if purpose != "" && purpose != "marketing" && purpose != "utility" {
		return paramProblem("purpose", "want marketing or utility")
	}
	conn, err := a.cfg.ClickHouse(c.r.Context())
	if err != nil {
		return err
	}
	rep, err := app.AuditCampaign(c.r.Context(), a.cfg.Components, conn, id, purpose)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, rep)
}

// auditContact is GET /v1/audit/contacts/{id}: the contact's ledger with its chain
// verified (against the checkpoints of the configured signing key), its messages, its
// campaigns' outcomes and suppressions (herald audit contact).
func (a *API) auditContact(c *call) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	conn, err := a.cfg.ClickHouse(c.r.Context())
	if err != nil {
		return err
	}
	var keys = app.TrustedKeys(app.Config{})
	if a.cfg.Deps != nil {
		keys = app.TrustedKeys(a.cfg.Deps.Cfg)
	}
	rep, err := app.AuditContact(c.r.Context(), a.cfg.Components, conn, id, keys...)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, rep)
}

// auditExport is GET /v1/audit/export: every message sent in [from, to) with the
// consent it relied on, streamed as JSON lines (format=jsonl, the default) or CSV.
func (a *API) auditExport(c *call) error {
	q := c.r.URL.Query()
	var from, to time.Time
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := q.Get(t.name)
		x, err := time.Parse(time.RFC3339, v)
		if err != nil {
			if x, err = time.Parse(time.DateOnly, v); err != nil {
				return paramProblem(t.name, "want RFC 3339 (2026-03-10T09:00:00Z) or a date (2026-03-10)")
			}
		}
		*t.dst = x.UTC()
	}
	if !from.Before(to) {
		return paramProblem("from", "from is not before to")
	}
	format := q.Get("format")
	if format == "" {
		format = "jsonl"
	}
	if format != "jsonl" && format != "csv" {
		return paramProblem("format", "want jsonl or csv")
	}
	conn, err := a.cfg.ClickHouse(c.r.Context())
	if err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Cache-Control", "no-store")
	rc := http.NewResponseController(c.w)
	started := false
	start := func() {
		if !started {
			started = true
			c.w.WriteHeader(http.StatusOK)
		}
	}
	n := 0
	flushEvery := func() {
		if n++; n%1000 == 0 {
			_ = rc.Flush()
		}
	}
	if format == "csv" {
		h.Set("Content-Type", "text/csv")
		start()
		w := csv.NewWriter(c.w)
		if err := w.Write(app.SentRecordHeader); err != nil {
			return err
		}
		err = app.ExportSent(c.r.Context(), conn, from, to, func(r analytics.SentRecord) error {
			flushEvery()
			return w.Write(app.SentRecordRow(r))
		})
		w.Flush()
		if err != nil {
			return err
		}
		return w.Error()
	}
	h.Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(c.w)
	enc.SetEscapeHTML(false)
	err = app.ExportSent(c.r.Context(), conn, from, to, func(r analytics.SentRecord) error {
		start()
		flushEvery()
		return enc.Encode(jsonx.Output(r))
	})
	if err == nil {
		start()
	}
	return err
}
