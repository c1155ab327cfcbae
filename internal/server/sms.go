package server

import (
	"context"
	"errors"
	"fmt"
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
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		b, err := ReadSMS(r, s.cfg.SMS, inbound)
		switch {
		case errors.Is(err, ErrUnavailable):
			s.log.Error("load SMS senders", "err", err)
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		case errors.Is(err, ErrBadSignature):
			s.m.webhooks.WithLabelValues("bad_signature").Inc()
			s.log.Warn("sms webhook rejected: bad signature", "err", err, "remote", r.RemoteAddr)
			http.Error(w, "invalid signature", http.StatusForbidden)
			return
		case err != nil:
			s.m.webhooks.WithLabelValues("bad_payload").Inc()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rep := range b.Reports {
			s.m.statuses.WithLabelValues(string(rep.Kind)).Inc()
		}
		if err := s.commit.Submit(b); err != nil {
			s.unavailable(w, err)
			return
		}
		s.m.webhooks.WithLabelValues("ok").Inc()
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, "<Response></Response>") // TwiML: no reply message
	}
}

// ReadSMS reads an SMS status callback (inbound false) or inbound message (inbound true):
// the form body (at most sms.MaxWebhookBody bytes), its X-Twilio-Signature checked over
// cfg.PublicURL + the request URI and the form under the auth token of the account the
// form names (loading senders added since, through cfg.Refresh, when it names an unknown
// one), then decoded into the core's terms. A status Herald records nothing for decodes
// to an empty batch. Times the provider leaves out are stamped now.
func ReadSMS(r *http.Request, cfg *SMSConfig, inbound bool) (Batch, error) {
	form, err := sms.ReadForm(r.Body)
	if err != nil {
		return Batch{}, fmt.Errorf("%w: malformed form body: %w", ErrBadPayload, err)
	}
	if _, known := cfg.Channel.AuthToken(form.Get("AccountSid")); !known && cfg.Refresh != nil {
		if err := cfg.Refresh(r.Context()); err != nil {
			return Batch{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	full := sms.FullURL(cfg.PublicURL, r.URL.RequestURI())
	if err := cfg.Channel.Verify(full, form, r.Header.Get(sms.SignatureHeader)); err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	var b Batch
	if inbound {
		in, err := sms.DecodeInbound(form)
		if err != nil {
			return Batch{}, fmt.Errorf("%w: malformed inbound message: %w", ErrBadPayload, err)
		}
		if in.Time.IsZero() {
			in.Time = time.Now()
		}
		b.Inbound = append(b.Inbound, in)
		return b, nil
	}
	rep, ok, err := sms.DecodeStatus(form, r.URL.Query().Get("cb"))
	if err != nil {
		return Batch{}, fmt.Errorf("%w: malformed status callback: %w", ErrBadPayload, err)
	}
	if ok {
		if rep.Time.IsZero() {
			rep.Time = time.Now()
		}
		b.Reports = append(b.Reports, rep)
	}
	return b, nil
}
