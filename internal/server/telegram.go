package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/herald-dev/herald/channels/telegram"
)

// TelegramConfig turns on the Telegram webhook (bot updates at telegram.WebhookPath).
type TelegramConfig struct {
	// Key verifies the secret-token header (telegram.VerifyWebhookSecret) and the
	// deep-link payloads of /start (telegram.ParsePayload).
	Key []byte
	// Lookup finds the contact a chat id is linked to (0 when none).
	Lookup func(ctx context.Context, chatID string) (uint32, error)
	// Link links a chat id to the contact a /start payload names; an error other than
	// one of taken (the chat belongs to another contact, returned as is and logged) makes
	// Telegram retry the update.
	Link func(ctx context.Context, contact uint32, chatID string) error
	// Taken is the error Link returns for a chat linked to another contact.
	Taken error
}

// telegramWebhook verifies and decodes a bot update, links the chat of a signed /start
// to its contact, then ingests it like any channel's: /start grants and /stop revokes
// (telegram, marketing) with the message as proof; other messages are replies. A forged
// secret is 401 and records nothing.
func (s *Server) telegramWebhook(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.m.latency.Observe(time.Since(start).Seconds()) }()
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	b, d, err := ReadTelegram(r, s.cfg.Telegram)
	switch {
	case errors.Is(err, ErrBadSignature):
		s.m.webhooks.WithLabelValues("bad_signature").Inc()
		s.log.Warn("telegram webhook rejected: bad secret token", "remote", r.RemoteAddr)
		http.Error(w, "invalid secret token", http.StatusUnauthorized)
		return
	case errors.Is(err, ErrTooLarge):
		s.m.webhooks.WithLabelValues("too_large").Inc()
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		s.m.webhooks.WithLabelValues("bad_payload").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if d.StartPayload != "" && s.cfg.Telegram.Link != nil {
		if contact, perr := telegram.ParsePayload(s.cfg.Telegram.Key, d.StartPayload); perr == nil {
			if err := s.cfg.Telegram.Link(r.Context(), contact, d.ChatID); err != nil {
				if s.cfg.Telegram.Taken == nil || !errors.Is(err, s.cfg.Telegram.Taken) {
					s.unavailable(w, fmt.Errorf("link telegram chat: %w", err))
					return
				}
				s.log.Warn("telegram /start: the chat is linked to another contact; kept", "contact", contact)
			}
		} else {
			s.log.Warn("telegram /start with a payload Herald did not sign", "err", perr)
		}
	}
	if err := s.commit.Submit(b); err != nil {
		s.unavailable(w, err)
		return
	}
	s.m.webhooks.WithLabelValues("ok").Inc()
	io.WriteString(w, "ok")
}

// ReadTelegram reads a bot update (at most telegram.MaxWebhookBody bytes), checks its
// X-Telegram-Bot-Api-Secret-Token against cfg.Key before parsing anything, and decodes it
// into the core's terms; the decoded update (its /start payload) comes too.
func ReadTelegram(r *http.Request, cfg *TelegramConfig) (Batch, telegram.Decoded, error) {
	bot, err := telegram.VerifyWebhookSecret(cfg.Key, r.Header.Get(telegram.SecretHeader))
	if err != nil {
		return Batch{}, telegram.Decoded{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, telegram.MaxWebhookBody+1))
	if err != nil {
		return Batch{}, telegram.Decoded{}, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if len(body) > telegram.MaxWebhookBody {
		return Batch{}, telegram.Decoded{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, telegram.MaxWebhookBody)
	}
	d, err := telegram.DecodeUpdate(body, bot)
	if err != nil {
		return Batch{}, telegram.Decoded{}, fmt.Errorf("%w: %w", ErrBadPayload, err)
	}
	return Batch{Inbound: d.Inbound, Preferences: d.Preferences}, d, nil
}
