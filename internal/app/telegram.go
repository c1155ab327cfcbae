package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/server"
)

// The dev stack's Telegram bot (the sandbox accepts its token).
const (
	DevTelegramToken = "100001:dev-telegram-token"
	DevTelegramBot   = "herald_dev_bot"
)

// Telegram returns the process's Telegram adapter (one per Deps): the Bot API at
// HERALD_TELEGRAM_API_URL (the sandbox in dev), api.telegram.org by default. A sender's
// bot token comes with each send, from the registry.
func (d *Deps) Telegram() (*telegram.Channel, error) {
	d.tgOnce.Do(func() {
		d.tg, d.tgErr = telegram.New(telegram.Config{BaseURL: d.Cfg.TelegramAPIURL})
	})
	return d.tg, d.tgErr
}

// TelegramKey is the key of the Telegram webhook secrets and deep-link payloads, shared
// by every process: derived from the key Redis holds for email Message-IDs.
func (d *Deps) TelegramKey(ctx context.Context) ([]byte, error) {
	k, err := d.MessageKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("telegram key: %w", err)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte("herald telegram"))
	return m.Sum(nil), nil
}

// telegramHooks is serve's Telegram webhook: the secret and payload key, and the chat ids
// linked to contacts.
func telegramHooks(ctx context.Context, d *Deps, c *Components) (*server.TelegramConfig, error) {
	key, err := d.TelegramKey(ctx)
	if err != nil {
		return nil, err
	}
	return telegramIdentities(&server.TelegramConfig{Key: key}, c), nil
}

// TelegramLinkResult is a contact's deep link into a bot.
type TelegramLinkResult struct {
	Contact uint32 `json:"contact_id"`
	Sender  string `json:"sender"`
	Payload string `json:"payload"`
	URL     string `json:"url"`
}

// TelegramLink returns the t.me link that, opened by the contact, sends the bot of
// sender "/start <payload>": serve then links the chat to the contact and records the
// grant of (telegram, marketing) with that message as proof. The bot's username is the
// sender's setting "username", else getMe's answer.
func TelegramLink(ctx context.Context, d *Deps, senderID string, contact uint32) (TelegramLinkResult, error) {
	s, err := telegramSender(ctx, d, senderID)
	if err != nil {
		return TelegramLinkResult{}, err
	}
	cfg, err := telegram.ConfigOf(s)
	if err != nil {
		return TelegramLinkResult{}, err
	}
	user := cfg.Username
	if user == "" {
		ch, err := d.Telegram()
		if err != nil {
			return TelegramLinkResult{}, err
		}
		me, err := ch.GetMe(ctx, cfg.Token)
		if err != nil {
			return TelegramLinkResult{}, fmt.Errorf("sender %s: getMe: %w (or set the sender's username setting)", senderID, err)
		}
		user = me.Username
	}
	key, err := d.TelegramKey(ctx)
	if err != nil {
		return TelegramLinkResult{}, err
	}
	p := telegram.LinkPayload(key, contact)
	return TelegramLinkResult{Contact: contact, Sender: senderID, Payload: p, URL: telegram.DeepLink(user, p)}, nil
}

// TelegramSetWebhook points a sender's bot at serve (publicURL + /webhooks/telegram,
// HERALD_PUBLIC_URL by default) with its secret token.
func TelegramSetWebhook(ctx context.Context, d *Deps, senderID, publicURL string) (string, error) {
	s, err := telegramSender(ctx, d, senderID)
	if err != nil {
		return "", err
	}
	cfg, err := telegram.ConfigOf(s)
	if err != nil {
		return "", err
	}
	key, err := d.TelegramKey(ctx)
	if err != nil {
		return "", err
	}
	if publicURL == "" {
		publicURL = d.Cfg.publicURL()
	}
	url := strings.TrimRight(publicURL, "/") + telegram.WebhookPath
	ch, err := d.Telegram()
	if err != nil {
		return "", err
	}
	if err := ch.SetWebhook(ctx, cfg.Token, url, telegram.WebhookSecret(key, telegram.BotID(cfg.Token))); err != nil {
		return "", fmt.Errorf("sender %s: setWebhook: %w", senderID, err)
	}
	return url, nil
}

func telegramSender(ctx context.Context, d *Deps, id string) (dispatcher.Sender, error) {
	c, err := d.Components()
	if err != nil {
		return dispatcher.Sender{}, err
	}
	s, err := c.Senders.Get(ctx, id)
	if err != nil {
		if errors.Is(err, dispatcher.ErrNotFound) {
			return s, fmt.Errorf("sender %s: %w", id, err)
		}
		return s, err
	}
	if s.Channel != telegram.ChannelName {
		return s, fmt.Errorf("sender %s is a %s sender, not a telegram bot", id, s.Channel)
	}
	return s, nil
}
