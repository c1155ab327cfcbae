package app

import (
	"context"
	"errors"

	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/segments"
)

// telegramIdentities wires the contacts' Telegram chat ids into serve's Telegram
// webhook: a chat is found by its identity, and a signed /start links it. A payload
// naming a contact that no longer exists links nothing (the update is still taken).
func telegramIdentities(h *server.TelegramConfig, c *Components) *server.TelegramConfig {
	h.Lookup = func(ctx context.Context, chat string) (uint32, error) {
		id, err := c.Contacts.LookupIdentity(ctx, telegram.ChannelName, chat)
		if errors.Is(err, segments.ErrUnknownContact) {
			return 0, nil
		}
		return id, err
	}
	h.Link = func(ctx context.Context, contact uint32, chat string) error {
		err := c.Contacts.LinkIdentity(ctx, contact, telegram.ChannelName, chat)
		if errors.Is(err, segments.ErrUnknownContact) {
			return nil
		}
		return err
	}
	h.Taken = segments.ErrIdentityTaken
	return h
}
