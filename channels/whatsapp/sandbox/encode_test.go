package sandbox

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

// encodeNotification writes what encoding/json writes, byte for byte, for status batches
// of any content, and hands other bodies to encoding/json.
func FuzzEncodeNotification(f *testing.F) {
	f.Add("whatsapp_business_account", "102290129340398", "106540352242922", "wamid.HBgL=", "delivered", "1750030071", "66812345678", "7:42:B", 0, "", "", false, "", uint8(7))
	f.Add("<&>", "", "", "\u2028", "failed", "", "", "", 131026, "Message undeliverable", "ไทย\"", true, "\xff", uint8(0xff))
	f.Fuzz(func(t *testing.T, object, waba, pnid, id, status, ts, rcpt, cb string, code int, title, details string, billable bool, convo string, shape uint8) {
		st := graph.Status{ID: id, Status: status, Timestamp: ts, RecipientID: rcpt, BizOpaqueCallbackData: cb}
		if shape&1 != 0 {
			st.Errors = []graph.WebhookError{{Code: code, Title: title, Message: details}}
			if shape&2 != 0 {
				st.Errors[0].ErrorData = &graph.ErrorData{Details: details, MessagingProduct: title}
			}
		}
		if shape&4 != 0 {
			st.Pricing = &graph.Pricing{Billable: billable, PricingModel: "PMP", Type: convo, Category: title}
		}
		if shape&8 != 0 {
			st.Conversation = &graph.Conversation{ID: convo}
			st.Conversation.Origin.Type = details
		}
		v := graph.Value{MessagingProduct: "whatsapp", Metadata: graph.Metadata{DisplayPhoneNumber: rcpt, PhoneNumberID: pnid}}
		if shape&16 != 0 {
			v.Statuses = []graph.Status{st, st}
		}
		if shape&32 != 0 {
			v.Messages = []graph.InboundMessage{{From: rcpt, ID: id, Type: "text", Text: &graph.InboundText{Body: details}}}
		}
		n := &graph.Notification{Object: object}
		switch {
		case shape&64 != 0:
			n.Entry = []graph.Entry{{ID: waba, Changes: []graph.Change{{Field: "messages", Value: v}, {Field: title}}}}
		case shape&128 != 0:
			n.Entry = []graph.Entry{{ID: waba}, {ID: waba, Changes: []graph.Change{}}}
		}
		want, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeNotification(n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encodeNotification\n%s\nencoding/json\n%s", got, want)
		}
	})
}
