package api

import (
	"encoding/csv"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/analytics"
)

// deliveriesExportPage is how many recipients a CSV export reads per query.
const deliveriesExportPage = 5000

// deliveries lists a campaign's recipients and what became of each (GET
// /v1/campaigns/{id}/deliveries): ?status= keeps those with an event of that kind,
// ?sort=contact_id|-contact_id, pages by keyset cursor. With Accept: text/csv or
// ?format=csv it streams every matching recipient as CSV instead (limit and cursor
// still apply: the export starts at the cursor).
func (a *API) deliveries(c *call) error {
	id, err := campaignID(c)
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	dq := analytics.DeliveryQuery{Campaign: id, Status: q.Get("status")}
	if dq.Status != "" && !slices.Contains(analytics.DeliveryStatuses, dq.Status) {
		return paramProblem("status", "want one of "+strings.Join(analytics.DeliveryStatuses, ", "))
	}
	switch q.Get("sort") {
	case "", "contact_id":
	case "-contact_id":
		dq.Desc = true
	default:
		return paramProblem("sort", "want contact_id or -contact_id")
	}
	asCSV := false
	switch q.Get("format") {
	case "":
		asCSV = wantsCSV(c.r.Header.Get("Accept"))
	case "csv":
		asCSV = true
	case "json":
	default:
		return paramProblem("format", "want json or csv")
	}
	limit, cur, err := pageParams(c.r, "deliveries", 1000)
	if err != nil {
		return err
	}
	if cur.ID != "" {
		n, err := strconv.ParseUint(cur.ID, 10, 32)
		if err != nil {
			return paramProblem("cursor", "not a cursor of this list: pass next_cursor from the previous page as it is")
		}
		dq.After = uint32(n)
	}
	ctx := c.r.Context()
	conn, err := a.cfg.ClickHouse(ctx)
	if err != nil {
		return err
	}
	if _, err := a.cfg.Components.Campaigns.Status(ctx, id); err != nil {
		return err
	}
	if !asCSV {
		dq.Limit = limit
		list, more, err := analytics.Deliveries(ctx, conn, dq)
		if err != nil {
			return err
		}
		p := page[analytics.Delivery]{Items: list}
		if more && len(list) > 0 {
			p.NextCursor = cursor{List: "deliveries", ID: strconv.FormatUint(uint64(list[len(list)-1].ContactID), 10)}.encode()
		}
		return c.json(http.StatusOK, p)
	}

	// CSV: every page from the cursor on, written as it is read.
	dq.Limit = deliveriesExportPage
	list, more, err := analytics.Deliveries(ctx, conn, dq)
	if err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "deliveries-" + id + ".csv"}))
	h.Set("Cache-Control", "no-store")
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	w := csv.NewWriter(c.w)
	_ = w.Write(DeliveryCSVHeader)
	for {
		for _, d := range list {
			_ = w.Write(deliveryRecord(d))
		}
		w.Flush()
		if err := w.Error(); err != nil {
			return err
		}
		_ = rc.Flush()
		if !more || len(list) == 0 {
			return nil
		}
		dq.After = list[len(list)-1].ContactID
		if list, more, err = analytics.Deliveries(ctx, conn, dq); err != nil {
			return err
		}
	}
}

// DeliveryCSVHeader names the columns of the deliveries CSV export.
var DeliveryCSVHeader = []string{"contact_id", "status", "time", "channel", "sender_id", "template", "variant", "country", "reason", "error_code", "sent_at"}

func deliveryRecord(d analytics.Delivery) []string {
	code, sent := "", ""
	if d.ErrorCode != 0 {
		code = strconv.Itoa(int(d.ErrorCode))
	}
	if !d.SentAt.IsZero() {
		sent = d.SentAt.Format(time.RFC3339Nano)
	}
	return []string{strconv.FormatUint(uint64(d.ContactID), 10), d.Status, d.Time.Format(time.RFC3339Nano), d.Channel, d.SenderID,
		d.Template, d.Variant, d.Country, d.Reason, code, sent}
}

// wantsCSV reports whether an Accept header prefers text/csv to JSON.
func wantsCSV(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/csv":
			return true
		case "application/json", "*/*":
			return false
		}
	}
	return false
}
