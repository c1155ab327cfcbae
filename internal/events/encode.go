package events

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/herald-dev/herald/internal/jsonx"
)

// AppendJSON appends e encoded exactly as encoding/json encodes it (same keys, order,
// omitempty rules and escaping), without reflection: events are encoded once per message
// and status on the hot path. FuzzAppendJSON holds it to encoding/json byte for byte.
func (e *Event) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = jsonx.AppendString(b, e.ID)
	b = append(b, `,"kind":`...)
	b = jsonx.AppendString(b, string(e.Kind))
	b = append(b, `,"ts":`...)
	var err error
	if b, err = appendTime(b, e.Time); err != nil {
		return nil, err
	}
	b = jsonx.AppendField(b, "campaign", e.CampaignID)
	b = append(b, `,"contact":`...)
	b = strconv.AppendUint(b, uint64(e.ContactID), 10)
	b = jsonx.AppendField(b, "sender", e.SenderID)
	b = jsonx.AppendField(b, "channel", e.Channel)
	b = jsonx.AppendField(b, "template", e.Template)
	b = jsonx.AppendField(b, "variant", e.Variant)
	b = jsonx.AppendField(b, "country", e.Country)
	b = jsonx.AppendField(b, "provider_msg_id", e.ProviderMessageID)
	b = jsonx.AppendField(b, "reason", e.Reason)
	if e.ErrorCode != 0 {
		b = append(b, `,"error_code":`...)
		b = strconv.AppendInt(b, int64(e.ErrorCode), 10)
	}
	if e.Retryable {
		b = append(b, `,"retryable":true`...)
	}
	b = jsonx.AppendField(b, "consent_ref", e.ConsentRef)
	if !e.Until.IsZero() {
		b = append(b, `,"until":`...)
		if b, err = appendTime(b, e.Until); err != nil {
			return nil, err
		}
	}
	b = jsonx.AppendField(b, "order_id", e.OrderID)
	if e.Value != 0 {
		// Rare (conversions only): encoding/json's float format, by encoding/json.
		v, err := json.Marshal(e.Value)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"value":`...)
		b = append(b, v...)
	}
	b = jsonx.AppendField(b, "currency", e.Currency)
	b = jsonx.AppendField(b, "name", e.Name)
	b = jsonx.AppendField(b, "properties", e.Properties)
	b = jsonx.AppendField(b, "from_channel", e.FromChannel)
	return append(b, '}'), nil
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
