package channeltest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/herald-dev/herald/channels/channeltest"
	"github.com/herald-dev/herald/channels/email"
	emailsandbox "github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// The email adapter against its SMTP sandbox.
func TestEmailConformance(t *testing.T) {
	cfg := emailsandbox.Config{UnknownUserRate: 0.2}
	sb := emailsandbox.New(cfg)
	if err := sb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	host, port := splitAddr(t, sb.Addr())
	ch, err := email.New(email.Config{Senders: map[string]email.SenderConfig{"news": {Host: host, Port: port, TLS: email.TLSNone, From: "news@shop.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	var ok []string
	var unknown string
	for i := 0; len(ok) < 1000 || unknown == ""; i++ {
		addr := fmt.Sprintf("user%d@example.com", i)
		switch cfg.FateOf(addr) {
		case emailsandbox.FateUnknownUser:
			unknown = addr
		case emailsandbox.FateDeliver:
			ok = append(ok, addr)
		}
	}
	channeltest.Run(t, channeltest.Harness{
		Channel: ch,
		Sender:  dispatcher.Sender{ID: "news", Channel: "email", Rate: 100},
		Message: func(to, cb string) dispatcher.Message {
			return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "email", Kind: templates.KindEmail,
				Email: &templates.RenderedEmail{Subject: "Spring sale", Text: "20% off"}}}
		},
		Recipient: func(i int) string { return ok[i] },
		Accepted: func() []string {
			var out []string
			for _, r := range sb.Records() {
				out = append(out, r.Callback)
			}
			return out
		},
		Actions:  email.Actions(),
		Refusals: []channeltest.Refusal{{Name: "unknown user (550 5.1.1)", To: unknown, Action: dispatcher.ActionUndeliverable}},
	})
}
