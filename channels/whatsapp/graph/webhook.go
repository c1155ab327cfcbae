package graph

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the header Meta signs webhook POSTs with.
const SignatureHeader = "X-Hub-Signature-256"

const signaturePrefix = "sha256="

// Signature errors; VerifySignature wraps them with detail.
var (
	ErrNoAppSecret        = errors.New("no app secret configured")
	ErrSignatureMissing   = errors.New("missing " + SignatureHeader + " header")
	ErrSignatureMalformed = errors.New("malformed " + SignatureHeader + " header")
	ErrSignatureMismatch  = errors.New(SignatureHeader + " does not match the body")
)

// Sign returns the X-Hub-Signature-256 value for body: "sha256=" and the hex HMAC-SHA256
// of the raw bytes under appSecret.
func Sign(appSecret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write(body)
	var sum [sha256.Size]byte
	dst := make([]byte, len(signaturePrefix)+hex.EncodedLen(sha256.Size))
	copy(dst, signaturePrefix)
	hex.Encode(dst[len(signaturePrefix):], m.Sum(sum[:0]))
	return string(dst)
}

// VerifySignature checks header (the X-Hub-Signature-256 value) against the raw body in
// constant time. Verify before parsing: a forged or altered body must change nothing.
func VerifySignature(appSecret string, body []byte, header string) error {
	if appSecret == "" {
		return fmt.Errorf("verify webhook signature: %w", ErrNoAppSecret)
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return fmt.Errorf("verify webhook signature: %w", ErrSignatureMissing)
	}
	if len(header) < len(signaturePrefix) || !strings.EqualFold(header[:len(signaturePrefix)], signaturePrefix) {
		return fmt.Errorf("verify webhook signature: %w: want %q followed by 64 hex digits", ErrSignatureMalformed, signaturePrefix)
	}
	hexSig := header[len(signaturePrefix):]
	if len(hexSig) != hex.EncodedLen(sha256.Size) {
		return fmt.Errorf("verify webhook signature: %w: want 64 hex digits after %q, got %d characters", ErrSignatureMalformed, signaturePrefix, len(hexSig))
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(hexSig)); err != nil {
		return fmt.Errorf("verify webhook signature: %w: %w", ErrSignatureMalformed, err)
	}
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write(body)
	var want [sha256.Size]byte
	if !hmac.Equal(got[:], m.Sum(want[:0])) {
		return fmt.Errorf("verify webhook signature: %w", ErrSignatureMismatch)
	}
	return nil
}

// VerifyChallenge answers Meta's subscription check (GET with hub.mode=subscribe,
// hub.verify_token and hub.challenge): it returns the challenge to echo with HTTP 200 when
// the token matches verifyToken. An empty verifyToken never matches.
func VerifyChallenge(q url.Values, verifyToken string) (challenge string, ok bool) {
	if verifyToken == "" || q.Get("hub.mode") != "subscribe" {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("hub.verify_token")), []byte(verifyToken)) != 1 {
		return "", false
	}
	challenge = q.Get("hub.challenge")
	if challenge == "" {
		return "", false
	}
	return challenge, true
}

// ObjectWhatsApp is the Notification.Object of WhatsApp Business Account webhooks.
const ObjectWhatsApp = "whatsapp_business_account"

// Status values of a Status.
const (
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
	StatusFailed    = "failed"
	StatusPlayed    = "played"
)

// ErrBadNotification is wrapped by every ParseNotification error.
var ErrBadNotification = errors.New("bad webhook notification")

// ParseNotification decodes and checks a webhook body (verify its signature first). It
// rejects bodies that are not JSON of the expected shape, an object other than whatsapp_business_account, no entries, statuses
// without id, status or recipient_id, unknown status values, inbound messages without from
// or id, and unparseable timestamps. Unknown fields are ignored.
func ParseNotification(body []byte) (*Notification, error) {
	n, fast := decodeStatuses(body) // the common status batch, without reflection
	if !fast {
		n = Notification{}
		if err := json.Unmarshal(body, &n); err != nil {
			return nil, fmt.Errorf("%w: decode JSON: %w", ErrBadNotification, err)
		}
	}
	if n.Object != ObjectWhatsApp {
		return nil, fmt.Errorf("%w: object is %q, want %q", ErrBadNotification, n.Object, ObjectWhatsApp)
	}
	if len(n.Entry) == 0 {
		return nil, fmt.Errorf("%w: no entry", ErrBadNotification)
	}
	for i, e := range n.Entry {
		for j, ch := range e.Changes {
			if err := checkValue(&ch.Value); err != nil {
				return nil, fmt.Errorf("%w: entry[%d].changes[%d].value.%w", ErrBadNotification, i, j, err)
			}
		}
	}
	return &n, nil
}

func checkValue(v *Value) error {
	for k, s := range v.Statuses {
		switch {
		case s.ID == "":
			return fmt.Errorf("statuses[%d]: missing id", k)
		case s.Status == "":
			return fmt.Errorf("statuses[%d] (%s): missing status", k, s.ID)
		case s.RecipientID == "":
			return fmt.Errorf("statuses[%d] (%s): missing recipient_id", k, s.ID)
		}
		switch s.Status {
		case StatusSent, StatusDelivered, StatusRead, StatusFailed, StatusPlayed:
		default:
			return fmt.Errorf("statuses[%d] (%s): unknown status %q", k, s.ID, s.Status)
		}
		if _, err := ParseTimestamp(s.Timestamp); err != nil {
			return fmt.Errorf("statuses[%d] (%s): %w", k, s.ID, err)
		}
	}
	for k, m := range v.Messages {
		switch {
		case m.ID == "":
			return fmt.Errorf("messages[%d]: missing id", k)
		case m.From == "":
			return fmt.Errorf("messages[%d] (%s): missing from", k, m.ID)
		}
		if _, err := ParseTimestamp(m.Timestamp); err != nil {
			return fmt.Errorf("messages[%d] (%s): %w", k, m.ID, err)
		}
	}
	return nil
}

// maxUnix is 9999-12-31T23:59:59Z.
const maxUnix = 253402300799

// ParseTimestamp parses a webhook timestamp: unix seconds as a decimal string.
func ParseTimestamp(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing timestamp")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, fmt.Errorf("timestamp %q: want unix seconds", s)
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > maxUnix {
		return time.Time{}, fmt.Errorf("timestamp %q: out of range", s)
	}
	return time.Unix(v, 0).UTC(), nil
}
