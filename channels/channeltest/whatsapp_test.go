package channeltest_test

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/herald-dev/herald/channels/channeltest"
	"github.com/herald-dev/herald/channels/whatsapp"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// WhatsApp's adapter against its sandbox.
func TestWhatsAppConformance(t *testing.T) {
	sb := sandbox.New(sandbox.Config{Token: "tok", Throughput: 1e6, PairInterval: -1, DelayScale: -1,
		Templates: []sandbox.ApprovedTemplate{{Name: "promo", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}}, nil)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	ch := whatsapp.New(graph.NewClient(graph.ClientConfig{BaseURL: srv.URL}))
	template := func(name string) func(to, cb string) dispatcher.Message {
		return func(to, cb string) dispatcher.Message {
			return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "whatsapp", Kind: templates.KindWhatsAppTemplate,
				WhatsApp: &graph.Template{Name: name, Language: graph.Language{Code: "en_US"},
					Components: []graph.Component{{Type: "body", Parameters: []graph.Parameter{{Type: "text", ParameterName: "first_name", Text: "Ana"}}}}}}}
		}
	}
	var actions []string
	for _, a := range graph.Actions() {
		actions = append(actions, a.String())
	}
	channeltest.Run(t, channeltest.Harness{
		Channel:   ch,
		Sender:    dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: "tok", Rate: 80},
		Message:   template("promo"),
		Recipient: func(i int) string { return fmt.Sprintf("+6681%07d", i+1) },
		Accepted: func() []string {
			var out []string
			for _, r := range sb.Records() {
				out = append(out, r.CallbackData)
			}
			return out
		},
		Actions: actions,
		Refusals: []channeltest.Refusal{
			{Name: "template missing (132001)", Message: func(cb string) dispatcher.Message { return template("nope")("+66810000001", cb) },
				Action: dispatcher.ActionPauseCampaign},
			{Name: "free text outside the window (131047)", Message: func(cb string) dispatcher.Message {
				return dispatcher.Message{To: "+66810000002", CallbackData: cb, Rendered: templates.Rendered{Channel: "whatsapp", Kind: templates.KindText, Text: "hi", FreeForm: true}}
			}, Action: dispatcher.ActionConvertToTemplate},
			{Name: "not a phone number (100)", To: "12", Action: dispatcher.ActionFailJob},
		},
	})
	wrong := whatsapp.New(graph.NewClient(graph.ClientConfig{BaseURL: srv.URL}))
	t.Run("a bad token pauses the account", func(t *testing.T) {
		channeltest.Run(t, channeltest.Harness{Channel: wrong, Sender: dispatcher.Sender{ID: "x", Channel: "whatsapp", PhoneNumberID: "x", Token: "wrong", Rate: 1},
			Message: template("promo"), Recipient: func(i int) string { return "+66810000003" }, Accepted: func() []string { return nil },
			Refusals: []channeltest.Refusal{{Name: "token (190)", To: "+66810000003", Action: dispatcher.ActionPauseAccount}}, SkipSends: true})
	})
}
