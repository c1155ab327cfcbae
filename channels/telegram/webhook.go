package telegram

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-dev/herald/dispatcher"
)

// MaxWebhookBody bounds an update Herald reads (a text update is about a kilobyte).
const MaxWebhookBody = 64 << 10

// ErrSecretMismatch is returned for an update whose secret-token header is missing or
// wrong.
var ErrSecretMismatch = errors.New("telegram webhook: secret token mismatch")

// secretRE is what setWebhook accepts as secret_token: 1-256 characters A-Z a-z 0-9 _ -.
var secretRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// ValidSecret reports whether s can be a webhook secret token.
func ValidSecret(s string) bool { return secretRE.MatchString(s) }

// VerifySecret checks the X-Telegram-Bot-Api-Secret-Token header against the secret
// given to setWebhook, in constant time.
func VerifySecret(secret, header string) error {
	if secret == "" || header == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(header)) != 1 {
		return ErrSecretMismatch
	}
	return nil
}

// Update is the part of a Bot API Update Herald reads.
type Update struct {
	UpdateID int64    `json:"update_id"`
	Message  *Message `json:"message"`
}

// Message is an incoming message.
type Message struct {
	MessageID int64  `json:"message_id"`
	Date      int64  `json:"date"`
	Text      string `json:"text"`
	Chat      struct {
		ID   int64  `json:"id"`
		Type string `json:"type"`
	} `json:"chat"`
	From *struct {
		ID       int64  `json:"id"`
		IsBot    bool   `json:"is_bot"`
		Username string `json:"username"`
	} `json:"from"`
	ReplyToMessage *struct {
		MessageID int64 `json:"message_id"`
	} `json:"reply_to_message"`
}

// Decoded is what an update says: a reply (Inbound), or a consent choice (Preference:
// /start grants, /stop revokes), with the deep-link payload of a /start.
type Decoded struct {
	Inbound     []dispatcher.Inbound
	Preferences []dispatcher.Preference
	// StartPayload is the payload of "/start <payload>" ("" for none): a signed contact
	// (ParsePayload) that the chat is to be linked to.
	StartPayload string
	ChatID       string
}

// Commands.
var (
	startRE = regexp.MustCompile(`^/start(?:@[A-Za-z0-9_]+)?(?:\s+([A-Za-z0-9_-]{1,64}))?\s*$`)
	stopRE  = regexp.MustCompile(`^/stop(?:@[A-Za-z0-9_]+)?\s*$`)
)

// DecodeUpdate decodes one webhook update for bot botRef (the sender's provider-side
// id: the bot id). Updates that are not messages (edits, callbacks, member changes)
// decode to nothing and no error; malformed bodies are an error.
func DecodeUpdate(body []byte, botRef string) (Decoded, error) {
	var out Decoded
	if len(body) > MaxWebhookBody {
		return out, fmt.Errorf("telegram update: %d bytes, more than %d", len(body), MaxWebhookBody)
	}
	if !utf8.Valid(body) {
		return out, errors.New("telegram update: the body is not UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	var u Update
	if err := d.Decode(&u); err != nil {
		return out, fmt.Errorf("telegram update: %w", err)
	}
	if d.More() {
		return out, errors.New("telegram update: trailing data after the update")
	}
	if u.UpdateID <= 0 {
		return out, errors.New("telegram update: no update_id")
	}
	m := u.Message
	if m == nil {
		return out, nil
	}
	switch {
	case m.MessageID <= 0:
		return out, errors.New("telegram update: a message without message_id")
	case m.Chat.ID == 0:
		return out, errors.New("telegram update: a message without chat id")
	case m.Date <= 0:
		return out, errors.New("telegram update: a message without date")
	case !utf8.ValidString(m.Text):
		return out, errors.New("telegram update: text is not UTF-8")
	case utf8.RuneCountInString(m.Text) > 4096:
		return out, errors.New("telegram update: text longer than 4096 characters")
	}
	if m.From != nil && m.From.IsBot {
		return out, nil
	}
	chat := strconv.FormatInt(m.Chat.ID, 10)
	at := time.Unix(m.Date, 0).UTC()
	msgID := chat + ":" + strconv.FormatInt(m.MessageID, 10)
	out.ChatID = chat
	proof := fmt.Sprintf("telegram message %s from chat %s at %s: %q", msgID, chat, at.Format(time.RFC3339), truncate(m.Text, 80))
	text := strings.TrimSpace(m.Text)
	if g := startRE.FindStringSubmatch(text); g != nil {
		out.StartPayload = g[1]
		out.Preferences = append(out.Preferences, dispatcher.Preference{Channel: ChannelName, From: chat, SenderRef: botRef,
			OptIn: true, Purpose: "marketing", ID: "tg:" + msgID, Proof: proof})
		return out, nil
	}
	if stopRE.MatchString(text) {
		out.Preferences = append(out.Preferences, dispatcher.Preference{Channel: ChannelName, From: chat, SenderRef: botRef,
			OptIn: false, Purpose: "marketing", ID: "tg:" + msgID, Proof: proof})
		return out, nil
	}
	in := dispatcher.Inbound{Channel: ChannelName, From: chat, SenderRef: botRef, MessageID: msgID, Type: "text", Text: m.Text, Time: at}
	if m.ReplyToMessage != nil {
		in.ReplyTo = chat + ":" + strconv.FormatInt(m.ReplyToMessage.MessageID, 10)
	}
	if m.Text == "" {
		in.Type = "other"
	}
	out.Inbound = append(out.Inbound, in)
	return out, nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// Deep-link payloads: base64url (no padding) of the contact id (4 bytes, big-endian) and
// the first 16 bytes of HMAC-SHA256(key, "telegram-start:" + those 4 bytes): 27
// characters of A-Za-z0-9_-, within /start's 64.

// ErrBadPayload is returned for a /start payload Herald did not sign.
var ErrBadPayload = errors.New("telegram: deep-link payload is not one Herald signed")

const payloadMAC = 16

// LinkPayload signs a contact id into a /start payload.
func LinkPayload(key []byte, contact uint32) string {
	b := make([]byte, 4, 4+payloadMAC)
	binary.BigEndian.PutUint32(b, contact)
	b = append(b, payloadSum(key, b[:4])...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParsePayload verifies a /start payload and returns the contact it names.
func ParsePayload(key []byte, payload string) (uint32, error) {
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(b) != 4+payloadMAC || len(key) == 0 {
		return 0, ErrBadPayload
	}
	if !hmac.Equal(b[4:], payloadSum(key, b[:4])) {
		return 0, ErrBadPayload
	}
	return binary.BigEndian.Uint32(b[:4]), nil
}

func payloadSum(key, id []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("telegram-start:"))
	m.Write(id)
	return m.Sum(nil)[:payloadMAC]
}

// DeepLink is the t.me link that opens the bot and sends /start <payload>.
func DeepLink(botUsername, payload string) string {
	return "https://t.me/" + strings.TrimPrefix(botUsername, "@") + "?start=" + payload
}

// Webhook secrets: Herald gives setWebhook the secret_token "<bot id>_<mac>", the mac
// being base64url(HMAC-SHA256(key, "telegram-webhook:" + bot id))[:32]. One route serves
// every bot: the header names the bot and proves the update came from Telegram, with no
// lookup.

// WebhookSecret is the secret_token Herald sets for bot botID.
func WebhookSecret(key []byte, botID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("telegram-webhook:" + botID))
	return botID + "_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))[:32]
}

// VerifyWebhookSecret checks an X-Telegram-Bot-Api-Secret-Token header against key, in
// constant time, and returns the bot it names.
func VerifyWebhookSecret(key []byte, header string) (string, error) {
	bot, _, ok := strings.Cut(header, "_")
	if !ok || len(key) == 0 || bot == "" {
		return "", ErrSecretMismatch
	}
	if _, err := strconv.ParseUint(bot, 10, 64); err != nil {
		return "", ErrSecretMismatch
	}
	if err := VerifySecret(WebhookSecret(key, bot), header); err != nil {
		return "", err
	}
	return bot, nil
}
