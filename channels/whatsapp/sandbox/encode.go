package sandbox

import (
	"encoding/json"
	"strconv"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/internal/jsonx"
)

// encodeNotification encodes a webhook body as encoding/json does, without reflection
// for the common batch: statuses only (no inbound messages, contacts, preferences or
// value errors), which encoding/json encodes instead. FuzzEncodeNotification holds it
// to encoding/json byte for byte.
func encodeNotification(n *graph.Notification) ([]byte, error) {
	for _, e := range n.Entry {
		for _, ch := range e.Changes {
			v := &ch.Value
			if len(v.Contacts) > 0 || len(v.Messages) > 0 || len(v.UserPreferences) > 0 || len(v.Errors) > 0 {
				return json.Marshal(n)
			}
		}
	}
	b := make([]byte, 0, 256+320*statusCount(n))
	b = append(b, `{"object":`...)
	b = jsonx.AppendString(b, n.Object)
	b = append(b, `,"entry":`...)
	if n.Entry == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, e := range n.Entry {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = jsonx.AppendString(b, e.ID)
			b = append(b, `,"changes":`...)
			if e.Changes == nil {
				b = append(b, "null"...)
			} else {
				b = append(b, '[')
				for j := range e.Changes {
					if j > 0 {
						b = append(b, ',')
					}
					b = appendChange(b, &e.Changes[j])
				}
				b = append(b, ']')
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func statusCount(n *graph.Notification) int {
	c := 0
	for _, e := range n.Entry {
		for _, ch := range e.Changes {
			c += len(ch.Value.Statuses)
		}
	}
	return c
}

func appendChange(b []byte, ch *graph.Change) []byte {
	v := &ch.Value
	b = append(b, `{"field":`...)
	b = jsonx.AppendString(b, ch.Field)
	b = append(b, `,"value":{"messaging_product":`...)
	b = jsonx.AppendString(b, v.MessagingProduct)
	b = append(b, `,"metadata":{"display_phone_number":`...)
	b = jsonx.AppendString(b, v.Metadata.DisplayPhoneNumber)
	b = append(b, `,"phone_number_id":`...)
	b = jsonx.AppendString(b, v.Metadata.PhoneNumberID)
	b = append(b, '}')
	if len(v.Statuses) > 0 {
		b = append(b, `,"statuses":[`...)
		for i := range v.Statuses {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStatus(b, &v.Statuses[i])
		}
		b = append(b, ']')
	}
	return append(b, '}', '}')
}

func appendStatus(b []byte, s *graph.Status) []byte {
	b = append(b, `{"id":`...)
	b = jsonx.AppendString(b, s.ID)
	b = append(b, `,"status":`...)
	b = jsonx.AppendString(b, s.Status)
	b = append(b, `,"timestamp":`...)
	b = jsonx.AppendString(b, s.Timestamp)
	b = append(b, `,"recipient_id":`...)
	b = jsonx.AppendString(b, s.RecipientID)
	b = jsonx.AppendField(b, "biz_opaque_callback_data", s.BizOpaqueCallbackData)
	if len(s.Errors) > 0 {
		b = append(b, `,"errors":[`...)
		for i, e := range s.Errors {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"code":`...)
			b = strconv.AppendInt(b, int64(e.Code), 10)
			b = append(b, `,"title":`...)
			b = jsonx.AppendString(b, e.Title)
			b = jsonx.AppendField(b, "message", e.Message)
			if e.ErrorData != nil {
				b = append(b, `,"error_data":{`...)
				if e.ErrorData.MessagingProduct != "" {
					b = append(b, `"messaging_product":`...)
					b = jsonx.AppendString(b, e.ErrorData.MessagingProduct)
					b = append(b, ',')
				}
				b = append(b, `"details":`...)
				b = jsonx.AppendString(b, e.ErrorData.Details)
				b = append(b, '}')
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if p := s.Pricing; p != nil {
		b = append(b, `,"pricing":{"billable":`...)
		b = strconv.AppendBool(b, p.Billable)
		b = append(b, `,"pricing_model":`...)
		b = jsonx.AppendString(b, p.PricingModel)
		b = jsonx.AppendField(b, "type", p.Type)
		b = append(b, `,"category":`...)
		b = jsonx.AppendString(b, p.Category)
		b = append(b, '}')
	}
	if c := s.Conversation; c != nil {
		b = append(b, `,"conversation":{"id":`...)
		b = jsonx.AppendString(b, c.ID)
		b = append(b, `,"origin":{"type":`...)
		b = jsonx.AppendString(b, c.Origin.Type)
		b = append(b, '}', '}')
	}
	return append(b, '}')
}
