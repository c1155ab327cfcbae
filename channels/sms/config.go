package sms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SenderType is the kind of number an SMS sender sends from; it sets the sender's
// default throughput (segments per second) at Twilio.
type SenderType string

// Sender types.
const (
	LongCode  SenderType = "long_code"  // a 10-digit (A2P 10DLC) or international long number
	TollFree  SenderType = "toll_free"  // a US/Canada toll-free number
	ShortCode SenderType = "short_code" // a 5-6 digit short code
)

// DefaultRate is the documented throughput of a sender type in message segments per
// second: US long code 1, toll-free 3 (unverified; configurable), short code 100.
func DefaultRate(t SenderType) float64 {
	switch t {
	case TollFree:
		return 3
	case ShortCode:
		return 100
	default:
		return 1
	}
}

// Valid reports whether t is a known sender type.
func (t SenderType) Valid() bool {
	return t == LongCode || t == TollFree || t == ShortCode
}

// MaxValidityPeriod is the longest ValidityPeriod Twilio accepts (10 hours), which is
// also how long a message may wait in a sender's queue.
const MaxValidityPeriod = 36000 * time.Second

// SenderConfig is what sending SMS from one Herald sender needs beyond dispatcher.Sender
// (whose fields are WhatsApp-shaped): the Twilio account, the number or Messaging
// Service it sends from, and its pace.
// Its JSON form is ParseSenders'.
type SenderConfig struct {
	AccountSID string // AC…
	AuthToken  string // never printed; also the key its webhooks are signed with
	// From is the sending number in E.164 (+15017122661) or a short code (12345).
	// Exactly one of From and MessagingServiceSID is set.
	From                string
	MessagingServiceSID string     // MG…: Twilio picks the number from the service's pool
	Type                SenderType // long_code, toll_free or short_code (default long_code)
	// Rate is the sender's throughput at Twilio in segments per second (default
	// DefaultRate(Type)). Herald's governor paces dispatcher.Sender.Rate in messages per
	// second: set that at most Rate divided by the campaign's segments per message.
	Rate float64
	// ValidityPeriod, when set, is sent with every message: Twilio fails a message still
	// queued after it (30036) instead of sending it late. 1 s to 10 h; 0 leaves Twilio's
	// default (10 h).
	ValidityPeriod time.Duration
}

// senderJSON is SenderConfig's JSON shape (validity_period in seconds).
type senderJSON struct {
	AccountSID          string     `json:"account_sid"`
	AuthToken           string     `json:"auth_token,omitempty"`
	From                string     `json:"from,omitempty"`
	MessagingServiceSID string     `json:"messaging_service_sid,omitempty"`
	Type                SenderType `json:"type,omitempty"`
	Rate                float64    `json:"rate,omitempty"`
	ValidityPeriod      int64      `json:"validity_period,omitempty"`
}

// MarshalJSON writes the configuration without the auth token.
func (c SenderConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(senderJSON{AccountSID: c.AccountSID, From: c.From, MessagingServiceSID: c.MessagingServiceSID,
		Type: c.Type, Rate: c.Rate, ValidityPeriod: int64(c.ValidityPeriod / time.Second)})
}

// UnmarshalJSON reads a configuration, auth_token included (see ParseSenders).
func (c *SenderConfig) UnmarshalJSON(b []byte) error {
	var j senderJSON
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return err
	}
	*c = SenderConfig{AccountSID: j.AccountSID, AuthToken: j.AuthToken, From: j.From, MessagingServiceSID: j.MessagingServiceSID,
		Type: j.Type, Rate: j.Rate, ValidityPeriod: time.Duration(j.ValidityPeriod) * time.Second}
	return nil
}

// String describes the sender without its auth token.
func (c SenderConfig) String() string {
	return fmt.Sprintf("sms sender %s (%s, account %s)", c.Ref(), c.Type, c.AccountSID)
}

// ParseSenders reads the SMS configuration of Herald's senders (Config.Senders) from
// JSON keyed by Herald sender id, and checks each:
//
//	{"sms-us-1": {"account_sid": "AC…", "auth_token": "…", "from": "+14155550100",
//	              "type": "long_code", "rate": 1, "validity_period": 3600},
//	 "sms-us-2": {"account_sid": "AC…", "auth_token": "…", "messaging_service_sid": "MG…"}}
//
// type is long_code (default), toll_free or short_code; rate is segments per second
// (default by type); validity_period is in seconds (optional). Marshalling a
// SenderConfig never writes the token back.
func ParseSenders(data []byte) (map[string]SenderConfig, error) {
	var m map[string]SenderConfig
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("sms senders: %w", err)
	}
	for id, c := range m {
		if err := c.Validate(id); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Ref is the provider-side sender: the From number, else the Messaging Service SID.
func (c SenderConfig) Ref() string {
	if c.From != "" {
		return c.From
	}
	return c.MessagingServiceSID
}

// Validate checks a sender configuration; id names it in errors.
func (c SenderConfig) Validate(id string) error {
	switch {
	case c.AccountSID == "":
		return fmt.Errorf("sms sender %s: the Twilio account SID is required", id)
	case c.AuthToken == "":
		return fmt.Errorf("sms sender %s: the Twilio auth token is required", id)
	case (c.From == "") == (c.MessagingServiceSID == ""):
		return fmt.Errorf("sms sender %s: set exactly one of from (a number or short code) and messaging_service_sid", id)
	case c.Type != "" && !c.Type.Valid():
		return fmt.Errorf("sms sender %s: type %q: want long_code, toll_free or short_code", id, c.Type)
	case c.Rate < 0 || c.Rate > 10000:
		return fmt.Errorf("sms sender %s: rate must be between 0 (the type's default) and 10000 segments/s, got %v", id, c.Rate)
	case c.ValidityPeriod < 0 || c.ValidityPeriod > MaxValidityPeriod || c.ValidityPeriod%time.Second != 0:
		return fmt.Errorf("sms sender %s: validity period must be whole seconds from 1 s to 10 h (0: Twilio's default), got %v", id, c.ValidityPeriod)
	}
	if strings.ContainsAny(c.AccountSID, "/?#% ") {
		return fmt.Errorf("sms sender %s: account SID %q is not a Twilio SID (AC followed by 32 hex digits)", id, c.AccountSID)
	}
	return nil
}

// withDefaults fills Type and Rate.
func (c SenderConfig) withDefaults() SenderConfig {
	if c.Type == "" {
		c.Type = LongCode
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate(c.Type)
	}
	return c
}

// Webhook routes Herald's HTTP server serves for SMS (see the package doc).
const (
	StatusPath  = "/webhooks/sms/status"
	InboundPath = "/webhooks/sms/inbound"
)

// StatusCallbackURL is the StatusCallback Herald sets on a message: publicURL (Herald's
// public base URL, as Twilio reaches it) + StatusPath + "?cb=" + the escaped callback
// data, so that every status names its campaign and contact.
func StatusCallbackURL(publicURL, callbackData string) string {
	return strings.TrimRight(publicURL, "/") + StatusPath + "?cb=" + url.QueryEscape(callbackData)
}

// ErrUnknownSender is wrapped by the SendError of a send from a sender that has no
// SenderConfig.
var ErrUnknownSender = errors.New("no SMS configuration for this sender")
