package server

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/herald-dev/herald/channels/sms"
)

// SMSConfig turns on the SMS webhooks (status callbacks and inbound messages).
type SMSConfig struct {
	Channel   *sms.Channel // knows the accounts' auth tokens, the webhooks' signing keys
	PublicURL string       // Herald's public base URL as the provider reaches it: the signature covers it
	// Refresh loads the SMS senders added since the channel was built (called once when a
	// webhook names an account it does not know yet); optional.
	Refresh func(ctx context.Context) error
}

// smsWebhook verifies and decodes an SMS status callback or inbound message, then
// ingests it like any channel's. A forged, altered or malformed request changes nothing.
func (s *Server) smsWebhook(inbound bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() { s.m.latency.Observe(time.Since(start).Seconds()) }()
		form, err := sms.ReadForm(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			s.m.webhooks.WithLabelValues("bad_payload").Inc()
			http.Error(w, "malformed form body: "+err.Error(), http.StatusBadRequest)
			return
		}
		full := sms.FullURL(s.cfg.SMS.PublicURL, r.URL.RequestURI())
		sig := r.Header.Get("X-Twilio-Signature")
		if _, known := s.cfg.SMS.Channel.AuthToken(form.Get("AccountSid")); !known && s.cfg.SMS.Refresh != nil {
			if err := s.cfg.SMS.Refresh(r.Context()); err != nil {
				s.log.Error("load SMS senders", "err", err)
				http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
				return
			}
		}
		if err := s.cfg.SMS.Channel.Verify(full, form, sig); err != nil {
			s.m.webhooks.WithLabelValues("bad_signature").Inc()
			s.log.Warn("sms webhook rejected: bad signature", "err", err, "remote", r.RemoteAddr)
			http.Error(w, "invalid signature", http.StatusForbidden)
			return
		}
		var b Batch
		if inbound {
			in, err := sms.DecodeInbound(form)
			if err != nil {
				s.m.webhooks.WithLabelValues("bad_payload").Inc()
				http.Error(w, "malformed inbound message: "+err.Error(), http.StatusBadRequest)
				return
			}
			if in.Time.IsZero() {
				in.Time = time.Now()
			}
			b.Inbound = append(b.Inbound, in)
		} else {
			rep, ok, err := sms.DecodeStatus(form, r.URL.Query().Get("cb"))
			if err != nil {
				s.m.webhooks.WithLabelValues("bad_payload").Inc()
				http.Error(w, "malformed status callback: "+err.Error(), http.StatusBadRequest)
				return
			}
			if ok {
				if rep.Time.IsZero() {
					rep.Time = time.Now()
				}
				s.m.statuses.WithLabelValues(string(rep.Kind)).Inc()
				b.Reports = append(b.Reports, rep)
			}
		}
		if err := s.ingest(r.Context(), b); err != nil {
			s.m.webhooks.WithLabelValues("error").Inc()
			s.log.Error("sms webhook not processed; the provider will retry", "err", err)
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		s.m.webhooks.WithLabelValues("ok").Inc()
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, "<Response></Response>") // TwiML: no reply message
	}
}
