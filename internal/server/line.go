package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/herald-dev/herald/channels/line"
)

// LINEConfig turns on the LINE webhook (follow, unfollow and message events).
type LINEConfig struct {
	Channel *line.Channel // knows the senders' channel secrets, the webhooks' signing keys
	// Refresh loads the LINE senders' secrets added since the channel was built (called
	// once when a body verifies under none of the secrets known); optional.
	Refresh func(ctx context.Context) error
}

// lineWebhook verifies and decodes a LINE webhook, then ingests it like any channel's. A
// forged, altered or malformed request is answered 401 or 400 and changes nothing.
func (s *Server) lineWebhook(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.m.latency.Observe(time.Since(start).Seconds()) }()
	r.Body = http.MaxBytesReader(w, r.Body, line.MaxWebhookBody+1)
	b, err := ReadLINE(r, s.cfg.LINE)
	switch {
	case errors.Is(err, ErrUnavailable):
		s.log.Error("load LINE senders", "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	case errors.Is(err, ErrBadSignature):
		s.m.webhooks.WithLabelValues("bad_signature").Inc()
		s.log.Warn("line webhook rejected: bad signature", "err", err, "remote", r.RemoteAddr)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	case err != nil:
		s.m.webhooks.WithLabelValues("bad_payload").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.commit.Submit(b); err != nil {
		s.unavailable(w, err)
		return
	}
	s.m.webhooks.WithLabelValues("ok").Inc()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}")
}

// ReadLINE reads a LINE webhook (at most line.MaxWebhookBody bytes), verifies its
// X-Line-Signature over the raw body under the channel secrets the channel knows
// (loading secrets added since, through cfg.Refresh, when none matches), then decodes it
// into the core's terms. Nothing is parsed before the signature holds.
func ReadLINE(r *http.Request, cfg *LINEConfig) (Batch, error) {
	body, err := line.ReadBody(r.Body)
	if err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	sig := r.Header.Get(line.SignatureHeader)
	sender, err := cfg.Channel.Verify(body, sig)
	if err != nil && cfg.Refresh != nil && (errors.Is(err, line.ErrSignatureMismatch) || errors.Is(err, line.ErrNoSecret)) {
		if rerr := cfg.Refresh(r.Context()); rerr != nil {
			return Batch{}, fmt.Errorf("%w: %w", ErrUnavailable, rerr)
		}
		sender, err = cfg.Channel.Verify(body, sig)
	}
	if err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	d, err := line.Decode(body, sender)
	if err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrBadPayload, err)
	}
	return Batch{Inbound: d.Inbound, Preferences: d.Preferences}, nil
}
