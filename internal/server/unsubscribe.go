package server

import (
	"html/template"
	"net/http"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/templates/links"
	"github.com/herald-dev/herald/throttle"
)

// unsubscribePage is what a person who opens the link sees: a GET never unsubscribes
// (mail scanners fetch links), the button POSTs like a mail client's one-click does.
var unsubscribePage = template.Must(template.New("u").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{if .Done}}Unsubscribed{{else}}Unsubscribe{{end}}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
{{if .Done}}<h1>You are unsubscribed</h1><p>You will receive no more marketing messages by {{.Channel}} from us.</p>
{{else}}<h1>Unsubscribe</h1><p>Stop marketing messages by {{.Channel}}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>{{end}}
</body></html>`))

// unsubscribe serves one-click unsubscribe links (RFC 8058): POST revokes the contact's
// marketing consent on the link's channel in the ledger at once (source one_click);
// GET shows a page with the button. A link that does not verify changes nothing.
func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	u, err := s.cfg.Clicks.ParseUnsubscribe(r.PathValue("token"))
	if err != nil {
		s.m.webhooks.WithLabelValues("bad_unsubscribe").Inc()
		http.Error(w, "this unsubscribe link is not valid", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		_ = unsubscribePage.Execute(w, struct {
			Done    bool
			Channel string
		}{false, u.Channel})
		return
	}
	if err := s.applyUnsubscribe(r, u); err != nil {
		s.log.Error("unsubscribe not recorded; the client may retry", "err", err)
		http.Error(w, "temporarily unavailable, please try again", http.StatusServiceUnavailable)
		return
	}
	s.m.webhooks.WithLabelValues("unsubscribe").Inc()
	_ = unsubscribePage.Execute(w, struct {
		Done    bool
		Channel string
	}{true, u.Channel})
}

func (s *Server) applyUnsubscribe(r *http.Request, u links.Unsubscribe) error {
	if s.cfg.Ledger == nil {
		return errNoLedger
	}
	now := time.Now()
	recs, err := s.cfg.Ledger.Apply(r.Context(), []throttle.Change{{ContactID: u.Contact, Channel: u.Channel, Purpose: "marketing",
		Action: events.Revoke, Source: "one_click", Actor: "recipient",
		Proof: "List-Unsubscribe one-click POST for campaign " + u.Campaign, IP: r.RemoteAddr, UserAgent: r.UserAgent(), Time: now}}, false)
	if err != nil || len(recs) == 0 {
		return err // none: already unsubscribed, nothing to record
	}
	ev := events.New(events.OptedOut, u.Campaign, u.Contact, now)
	ev.ID = events.ID(u.Campaign, u.Contact, events.OptedOut, "one_click")
	ev.Channel, ev.Reason, ev.ConsentRef = u.Channel, "one_click", recs[0].ID
	b, _ := ev.Marshal()
	return s.cfg.Events.WriteMessages(r.Context(), kafka.Message{Key: kafkax.ContactKey(u.Contact), Value: b})
}
