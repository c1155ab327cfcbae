package telegram

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/dispatcher"
)

// ChannelName is the channel's name in senders, templates and events.
const ChannelName = "telegram"

// Telegram's limits (Bot API FAQ: "My bot is hitting limits, how do I avoid this?").
const (
	// DefaultRate is a bot's overall pace for bulk notifications, in messages per second.
	DefaultRate = 30
	// PaidBroadcastRate is a bot's pace with allow_paid_broadcast (billed per message
	// above the free rate).
	PaidBroadcastRate = 1000
	// ChatInterval is the least time between two messages to one chat (short bursts are
	// tolerated, then 429).
	ChatInterval = time.Second
	// GroupPerMinute is the most messages a bot sends to one group per minute.
	GroupPerMinute = 20
)

// Webhook: the route Herald serves updates on, and the header that carries the secret
// token given to setWebhook.
const (
	WebhookPath  = "/webhooks/telegram"
	SecretHeader = "X-Telegram-Bot-Api-Secret-Token"
)

// SenderConfig is a bot: its token and whether it broadcasts paid.
type SenderConfig struct {
	Token         string // never printed
	PaidBroadcast bool   // send with allow_paid_broadcast
	Username      string // the bot's @username (deep links), optional
}

// String describes the bot without its token.
func (c SenderConfig) String() string {
	return fmt.Sprintf("telegram bot %s (token %s…)", cmpOr(c.Username, "?"), BotID(c.Token))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// BotID is the public part of a bot token (the bot's user id, before the colon).
func BotID(token string) string {
	id, _, _ := strings.Cut(token, ":")
	return id
}

// ConfigOf reads a sender's bot configuration from its registry entry: Token, and the
// settings paid_broadcast (true/false) and username.
func ConfigOf(s dispatcher.Sender) (SenderConfig, error) {
	c := SenderConfig{Token: s.Token, Username: strings.TrimPrefix(s.Settings["username"], "@")}
	if v := s.Settings["paid_broadcast"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("telegram sender %s: paid_broadcast %q: want true or false", s.ID, v)
		}
		c.PaidBroadcast = b
	}
	return c, c.Validate(s.ID)
}

// Validate checks a bot configuration; id names it in errors.
func (c SenderConfig) Validate(id string) error {
	bot, secret, ok := strings.Cut(c.Token, ":")
	if _, err := strconv.ParseUint(bot, 10, 64); c.Token == "" || !ok || err != nil || secret == "" || strings.ContainsAny(c.Token, "/?#% ") {
		return fmt.Errorf("telegram sender %s: the bot token is required, as BotFather gives it (123456:ABC-DEF…)", id)
	}
	return nil
}

// Rate is the bot's pace at Telegram in messages per second: DefaultRate, or
// PaidBroadcastRate with paid broadcast. Set dispatcher.Sender.Rate at most this.
func (c SenderConfig) Rate() float64 {
	if c.PaidBroadcast {
		return PaidBroadcastRate
	}
	return DefaultRate
}

// IsGroup reports whether a chat id is a group's (negative ids: groups, supergroups
// and channels), paced at GroupPerMinute.
func IsGroup(chatID string) bool { return strings.HasPrefix(chatID, "-") }

// ValidChatID reports whether s is a chat id (a signed 64-bit integer) or a channel's
// @username.
func ValidChatID(s string) bool {
	if strings.HasPrefix(s, "@") {
		return len(s) > 1 && len(s) <= 33
	}
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}
