package events

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e encoded exactly as encoding/json encodes it (same keys, order,
// omitempty rules and escaping), without reflection: events are encoded once per message
// and status on the hot path. FuzzAppendJSON holds it to encoding/json byte for byte.
func (e *Event) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(e.Kind))
	b = append(b, `,"ts":`...)
	var err error
	if b, err = appendTime(b, e.Time); err != nil {
		return nil, err
	}
	b = appendField(b, "campaign", e.CampaignID)
	b = append(b, `,"contact":`...)
	b = strconv.AppendUint(b, uint64(e.ContactID), 10)
	b = appendField(b, "sender", e.SenderID)
	b = appendField(b, "channel", e.Channel)
	b = appendField(b, "template", e.Template)
	b = appendField(b, "variant", e.Variant)
	b = appendField(b, "country", e.Country)
	b = appendField(b, "provider_msg_id", e.ProviderMessageID)
	b = appendField(b, "reason", e.Reason)
	if e.ErrorCode != 0 {
		b = append(b, `,"error_code":`...)
		b = strconv.AppendInt(b, int64(e.ErrorCode), 10)
	}
	if e.Retryable {
		b = append(b, `,"retryable":true`...)
	}
	b = appendField(b, "consent_ref", e.ConsentRef)
	if !e.Until.IsZero() {
		b = append(b, `,"until":`...)
		if b, err = appendTime(b, e.Until); err != nil {
			return nil, err
		}
	}
	b = appendField(b, "order_id", e.OrderID)
	if e.Value != 0 {
		// Rare (conversions only): encoding/json's float format, by encoding/json.
		v, err := json.Marshal(e.Value)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"value":`...)
		b = append(b, v...)
	}
	b = appendField(b, "currency", e.Currency)
	return append(b, '}'), nil
}

// appendField appends ,"name":"v" unless v is empty (omitempty).
func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

var errYearRange = errors.New("events: time year outside of range [0,9999]")

// appendTime appends t as time.Time.MarshalJSON does (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, errYearRange
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendString appends s as a JSON string. Plain text is copied as is; anything
// encoding/json would escape (control characters, quotes, backslashes, <, >, &, U+2028,
// U+2029, invalid UTF-8) sends the whole string through encoding/json, which knows its
// own rules best.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			if c >= utf8.RuneSelf && plainUTF8(s[i:]) {
				break
			}
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainUTF8 reports whether s is valid UTF-8 without U+2028, U+2029 or any ASCII that
// JSON must escape.
func plainUTF8(s string) bool {
	for _, r := range s {
		switch {
		case r == utf8.RuneError, r == '\u2028', r == '\u2029':
			return false // RuneError: invalid UTF-8 (or a literal U+FFFD: encoding/json copies that as is, as do we after the fallback)
		case r < 0x20, r == '"', r == '\\', r == '<', r == '>', r == '&':
			return false
		}
	}
	return true
}
