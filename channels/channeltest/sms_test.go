package channeltest_test

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/herald-dev/herald/channels/channeltest"
	"github.com/herald-dev/herald/channels/sms"
	smssandbox "github.com/herald-dev/herald/channels/sms/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// The SMS adapter against its Twilio-style sandbox.
func TestSMSConformance(t *testing.T) {
	const account, token, from = "AC0123456789abcdef0123456789abcdef", "tok", "12345" // a short code: drains 100/s
	const unsub, landline = 0.2, 0.2
	sb := smssandbox.New(smssandbox.Config{AccountSID: account, AuthToken: token, UnsubscribedRate: unsub, LandlineRate: landline,
		AllowedCountries: []string{"US"}, DelayScale: -1}, nil)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	sc := sms.SenderConfig{AccountSID: account, AuthToken: token, From: from, Type: sms.ShortCode}
	ch, err := sms.New(sms.Config{BaseURL: srv.URL, PublicURL: "https://herald.example.com", Senders: map[string]sms.SenderConfig{"s1": sc}})
	if err != nil {
		t.Fatal(err)
	}
	// Recipients the sandbox treats as plain mobiles, and one of each refusal.
	var ok []string
	var unsubscribed, fixed string
	for i := 0; len(ok) < 1100 || unsubscribed == "" || fixed == ""; i++ {
		to := fmt.Sprintf("+1415555%04d", i)
		switch {
		case smssandbox.Unsubscribed(to, unsub):
			unsubscribed = to
		case smssandbox.Landline(to, landline):
			fixed = to
		default:
			ok = append(ok, to)
		}
	}
	var actions []string
	for _, c := range sms.Codes {
		actions = append(actions, c.Action)
	}
	channeltest.Run(t, channeltest.Harness{
		Channel: ch,
		Sender:  dispatcher.Sender{ID: "s1", Channel: "sms", Token: token, Rate: 100},
		Message: func(to, cb string) dispatcher.Message {
			return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "sms", Kind: templates.KindText, Text: "Hi, 20% off today"}}
		},
		Recipient: func(i int) string { return ok[i] },
		Accepted: func() []string {
			var out []string
			for _, r := range sb.Records() {
				out = append(out, r.CallbackData)
			}
			return out
		},
		Actions: actions,
		Refusals: []channeltest.Refusal{
			{Name: "unsubscribed (21610)", To: unsubscribed, Action: dispatcher.ActionOptOut},
			{Name: "landline (21614)", To: fixed, Action: dispatcher.ActionUndeliverable},
			{Name: "country not allowed (21408)", To: "+447911123456", Action: dispatcher.ActionSkipCountry},
		},
	})
}
