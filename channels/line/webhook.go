package line

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-dev/herald/dispatcher"
)

// WebhookPath is the route Herald's HTTP server serves LINE webhooks at.
const WebhookPath = "/webhooks/line"

// SignatureHeader carries the webhook's signature.
const SignatureHeader = "X-Line-Signature"

// MaxWebhookBody bounds a webhook request body: LINE batches events, each a kilobyte or
// two, and a text message holds at most 5,000 characters.
const MaxWebhookBody = 1 << 20

// Webhook errors; Verify and Decode wrap them with detail.
var (
	ErrBadWebhook         = errors.New("bad LINE webhook")
	ErrNoSecret           = errors.New("no channel secret configured")
	ErrSignatureMissing   = errors.New("missing " + SignatureHeader + " header")
	ErrSignatureMalformed = errors.New("malformed " + SignatureHeader + " header")
	ErrSignatureMismatch  = errors.New(SignatureHeader + " does not match the body under any configured channel secret")
)

// Sign returns the X-Line-Signature of body under a channel secret: base64 of
// HMAC-SHA256 over the raw body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// VerifySignature checks header against body under secret in constant time.
func VerifySignature(secret string, body []byte, header string) error {
	if secret == "" {
		return fmt.Errorf("verify webhook signature: %w", ErrNoSecret)
	}
	sig, err := decodeSignature(header)
	if err != nil {
		return err
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	if !hmac.Equal(sig, m.Sum(nil)) {
		return fmt.Errorf("verify webhook signature: %w", ErrSignatureMismatch)
	}
	return nil
}

func decodeSignature(header string) ([]byte, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return nil, fmt.Errorf("verify webhook signature: %w", ErrSignatureMissing)
	}
	sig, err := base64.StdEncoding.DecodeString(header)
	if err != nil || len(sig) != sha256.Size {
		return nil, fmt.Errorf("verify webhook signature: %w", ErrSignatureMalformed)
	}
	return sig, nil
}

// Verify checks a webhook body against every configured channel secret (constant time
// each) and returns the Herald sender whose secret signed it.
func (c *Channel) Verify(body []byte, header string) (senderID string, err error) {
	sig, err := decodeSignature(header)
	if err != nil {
		return "", err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.secrets) == 0 {
		return "", fmt.Errorf("verify webhook signature: %w", ErrNoSecret)
	}
	for id, secret := range c.secrets {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		if hmac.Equal(sig, m.Sum(nil)) {
			senderID = id
		}
	}
	if senderID == "" {
		return "", fmt.Errorf("verify webhook signature: %w", ErrSignatureMismatch)
	}
	return senderID, nil
}

// ReadBody reads a webhook body of at most MaxWebhookBody bytes.
func ReadBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxWebhookBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %w", ErrBadWebhook, err)
	}
	if len(b) > MaxWebhookBody {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrBadWebhook, MaxWebhookBody)
	}
	return b, nil
}

// Event is a webhook event, the fields Herald reads.
type Event struct {
	Type            string `json:"type"`
	Mode            string `json:"mode"`
	Timestamp       int64  `json:"timestamp"` // ms
	WebhookEventID  string `json:"webhookEventId"`
	DeliveryContext struct {
		IsRedelivery bool `json:"isRedelivery"`
	} `json:"deliveryContext"`
	Source struct {
		Type   string `json:"type"`
		UserID string `json:"userId"`
	} `json:"source"`
	Message *struct {
		ID              string `json:"id"`
		Type            string `json:"type"`
		Text            string `json:"text"`
		QuotedMessageID string `json:"quotedMessageId"`
	} `json:"message,omitempty"`
	Follow *struct {
		IsUnblocked bool `json:"isUnblocked"`
	} `json:"follow,omitempty"`
}

// Payload is a webhook request body.
type Payload struct {
	Destination string  `json:"destination"` // the bot's user id
	Events      []Event `json:"events"`
}

// Decoded is what a webhook says in the core's terms.
type Decoded struct {
	Inbound     []dispatcher.Inbound
	Preferences []dispatcher.Preference
}

var (
	userIDRe  = regexp.MustCompile(`^U[0-9a-f]{32}$`)
	eventIDRe = regexp.MustCompile(`^[0-9A-Za-z]{1,64}$`)
)

// ValidUserID reports whether id has the shape of a LINE user id (U and 32 hex digits).
func ValidUserID(id string) bool { return userIDRe.MatchString(id) }

// Decode decodes a webhook body (verify its signature first); senderRef names the
// Herald sender whose secret signed it (Channel.Verify). A follow event is an opt-in to
// LINE marketing with the event as proof, an unfollow (the user blocked the account)
// an opt-out; both carry the webhookEventId as their id, so a redelivery
// (deliveryContext.isRedelivery) collapses. A message event is an Inbound, a reply for
// analytics; LINE has no customer-service window, so it opens none. Events of groups
// and rooms, standby-mode events and other types say nothing about a contact and are
// left out. A body that is not a webhook, or an event Herald reads that is malformed,
// rejects the whole body.
func Decode(body []byte, senderRef string) (Decoded, error) {
	var p Payload
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(&p); err != nil {
		return Decoded{}, fmt.Errorf("%w: %w", ErrBadWebhook, err)
	}
	if d.More() {
		return Decoded{}, fmt.Errorf("%w: data after the JSON body", ErrBadWebhook)
	}
	if p.Events == nil {
		return Decoded{}, fmt.Errorf("%w: no events array", ErrBadWebhook)
	}
	var out Decoded
	for i, e := range p.Events {
		if e.Source.Type != "user" || e.Mode == "standby" {
			continue
		}
		switch e.Type {
		case "follow", "unfollow", "message":
		default:
			continue
		}
		if !ValidUserID(e.Source.UserID) {
			return Decoded{}, fmt.Errorf("%w: event %d: source.userId %q is not a LINE user id", ErrBadWebhook, i, e.Source.UserID)
		}
		if !eventIDRe.MatchString(e.WebhookEventID) {
			return Decoded{}, fmt.Errorf("%w: event %d: webhookEventId %q", ErrBadWebhook, i, e.WebhookEventID)
		}
		if e.Timestamp <= 0 {
			return Decoded{}, fmt.Errorf("%w: event %d: no timestamp", ErrBadWebhook, i)
		}
		at := time.UnixMilli(e.Timestamp).UTC()
		switch e.Type {
		case "follow", "unfollow":
			verb := "added the account as a friend"
			if e.Type == "unfollow" {
				verb = "blocked the account"
			} else if e.Follow != nil && e.Follow.IsUnblocked {
				verb = "unblocked the account"
			}
			out.Preferences = append(out.Preferences, dispatcher.Preference{Channel: ChannelName, From: e.Source.UserID, SenderRef: senderRef,
				OptIn: e.Type == "follow", Create: e.Type == "follow", Purpose: "marketing", ID: e.WebhookEventID,
				Proof: fmt.Sprintf("LINE %s event %s at %s: user %s %s", e.Type, e.WebhookEventID, at.Format(time.RFC3339Nano), e.Source.UserID, verb)})
		case "message":
			m := e.Message
			if m == nil || m.ID == "" || m.Type == "" {
				return Decoded{}, fmt.Errorf("%w: event %d: message event without a message id and type", ErrBadWebhook, i)
			}
			if !utf8.ValidString(m.Text) || utf8.RuneCountInString(m.Text) > MaxTextChars {
				return Decoded{}, fmt.Errorf("%w: event %d: message text is not valid UTF-8 or over %d characters", ErrBadWebhook, i, MaxTextChars)
			}
			out.Inbound = append(out.Inbound, dispatcher.Inbound{Channel: ChannelName, From: e.Source.UserID, SenderRef: senderRef,
				MessageID: m.ID, Type: m.Type, Text: m.Text, ReplyTo: m.QuotedMessageID, Time: at})
		}
	}
	return out, nil
}
