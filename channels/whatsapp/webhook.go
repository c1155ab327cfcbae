package whatsapp

import (
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
)

var statusKinds = map[string]events.Kind{graph.StatusSent: events.Sent, graph.StatusDelivered: events.Delivered,
	graph.StatusRead: events.Read, graph.StatusPlayed: events.Read, graph.StatusFailed: events.Failed}

// Decode turns a webhook notification (verified with graph.VerifySignature, parsed with
// graph.ParseNotification) into the core's terms: Reports of the statuses of Herald's
// messages (those whose callback data is Herald's; others are left out), with a failed
// status's code classified like a send's; Inbound messages; and Preferences, the user's
// own "Stop promotions" or resume of marketing messages.
func Decode(n *graph.Notification) (reports []dispatcher.Report, inbound []dispatcher.Inbound, prefs []dispatcher.Preference) {
	for _, e := range n.Entry {
		for _, ch := range e.Changes {
			v := ch.Value
			phoneID := v.Metadata.PhoneNumberID
			for _, st := range v.Statuses {
				kind, ok := statusKinds[st.Status]
				campaign, contact, variant, ours := dispatcher.ParseCallbackVariant(st.BizOpaqueCallbackData)
				if !ok || !ours {
					continue // not a Herald campaign message (or a status we do not track)
				}
				at, err := graph.ParseTimestamp(st.Timestamp)
				if err != nil {
					at = time.Now()
				}
				r := dispatcher.Report{Kind: kind, Key: dispatcher.Key{Campaign: campaign, Contact: contact}, Variant: variant,
					Channel: ChannelName, SenderRef: phoneID, MessageID: st.ID, Time: at}
				if kind == events.Failed && len(st.Errors) > 0 {
					r.Code = st.Errors[0].Code
					cl := graph.ClassifyCode(r.Code)
					r.Action, r.Signal = cl.Action.String(), cl.Signal
				}
				reports = append(reports, r)
			}
			// A user who taps "Stop promotions" (or resumes them) in WhatsApp: Meta tells the
			// business, and Herald records it in the ledger like a STOP or START keyword.
			for _, up := range v.UserPreferences {
				if up.Category != "marketing_messages" || (up.Value != "stop" && up.Value != "resume") {
					continue
				}
				proof := "whatsapp user_preferences " + up.Value + " at " + strconv.FormatInt(up.Timestamp, 10)
				if up.Detail != "" {
					proof += ": " + up.Detail
				}
				prefs = append(prefs, dispatcher.Preference{Channel: ChannelName, From: "+" + strings.TrimPrefix(up.WaID, "+"),
					SenderRef: phoneID, OptIn: up.Value == "resume", ID: "user_preferences:" + strconv.FormatInt(up.Timestamp, 10), Proof: proof})
			}
			for _, m := range v.Messages {
				at, err := graph.ParseTimestamp(m.Timestamp)
				if err != nil {
					at = time.Now()
				}
				in := dispatcher.Inbound{Channel: ChannelName, From: "+" + strings.TrimPrefix(m.From, "+"), SenderRef: phoneID,
					MessageID: m.ID, Type: m.Type, Text: inboundText(m), Time: at}
				if m.Context != nil {
					in.ReplyTo = m.Context.ID
				}
				inbound = append(inbound, in)
			}
		}
	}
	return reports, inbound, prefs
}

// inboundText is what an inbound message says: its text, or the title of the button or
// list row the user tapped.
func inboundText(m graph.InboundMessage) string {
	switch {
	case m.Text != nil:
		return m.Text.Body
	case m.Button != nil:
		return m.Button.Text
	case m.Interactive != nil && m.Interactive.ButtonReply != nil:
		return m.Interactive.ButtonReply.Title
	case m.Interactive != nil && m.Interactive.ListReply != nil:
		return m.Interactive.ListReply.Title
	}
	return ""
}
