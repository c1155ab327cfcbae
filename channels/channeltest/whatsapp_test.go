package channeltest_test

// Everything WhatsApp-specific about the conformance suite is in this file: the adapter
// (channels/whatsapp, its Graph API wire channels/whatsapp/graph), its sandbox
// (channels/whatsapp/sandbox) and serve's reader of its webhook (server.ReadWhatsApp).

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/channeltest"
	"github.com/herald-dev/herald/channels/whatsapp"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// WhatsApp's adapter against its sandbox, which posts its signed status and inbound
// webhooks to a Recorder; each is read, verified and decoded by serve's own code.
func TestWhatsAppConformance(t *testing.T) {
	const token, appSecret = "tok", "app-secret"
	const pnid, busyID = "106540352242922", "106540352240000"
	const undeliverable, stopped = 0.1, 0.1
	clk := newClock()
	rec := channeltest.NewRecorder(t)
	promo := sandbox.ApprovedTemplate{Name: "promo", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}
	sb := sandbox.New(sandbox.Config{Token: token, AppSecret: appSecret, WebhookURL: rec.URL() + "/webhooks/whatsapp",
		Throughput: 1e6, PairInterval: -1, DelayScale: -1, UndeliverableRate: undeliverable, MarketingStopRate: stopped,
		Templates: []sandbox.ApprovedTemplate{promo}}, nil)
	run(t, sb.Run)
	// A second phone number on a sandbox of its own: 1 message/s, a pair every 6 s, on
	// the test's clock; fault holds the error it answers, while set.
	var fault atomic.Pointer[[2]int]
	busy := sandbox.New(sandbox.Config{Token: token, Throughput: 1, PairInterval: 6 * time.Second, DelayScale: -1, Now: clk.now,
		Templates: []sandbox.ApprovedTemplate{promo},
		Fault: func() (int, int) {
			if f := fault.Load(); f != nil {
				return f[0], f[1]
			}
			return 0, 0
		}}, nil)
	// One Graph endpoint for both numbers, as Meta's.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/"+busyID+"/") {
			busy.Handler().ServeHTTP(w, r)
			return
		}
		sb.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ch := whatsapp.New(graph.NewClient(graph.ClientConfig{BaseURL: srv.URL}))

	template := func(name string) func(to, cb string) dispatcher.Message {
		return func(to, cb string) dispatcher.Message {
			return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "whatsapp", Kind: templates.KindWhatsAppTemplate,
				WhatsApp: &graph.Template{Name: name, Language: graph.Language{Code: "en_US"},
					Components: []graph.Component{{Type: "body", Parameters: []graph.Parameter{{Type: "text", ParameterName: "first_name", Text: "Ana"}}}}}}}
		}
	}
	promoTo := func(to string) func(cb string) dispatcher.Message {
		return func(cb string) dispatcher.Message { return template("promo")(to, cb) }
	}
	freeText := func(to, body string) func(cb string) dispatcher.Message {
		return func(cb string) dispatcher.Message {
			return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "whatsapp", Kind: templates.KindText, Text: body, FreeForm: true}}
		}
	}
	// Numbers the sandbox delivers to, and one of each fate.
	var ok []string
	var gone, stoppedMarketing string
	for i := 0; len(ok) < 1000 || gone == "" || stoppedMarketing == ""; i++ {
		to := fmt.Sprintf("+6681%07d", i+1)
		switch {
		case sandbox.Undeliverable(to, undeliverable):
			gone = to
		case sandbox.MarketingStopped(to, stopped):
			stoppedMarketing = to
		default:
			ok = append(ok, to)
		}
	}
	// A user who wrote to us: free-form text may go to them for 24 hours.
	chatting := ok[900]
	if err := sb.Inbound(context.Background(), pnid, chatting, "Hi, is the sale still on?"); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range graph.Actions() {
		actions = append(actions, a.String())
	}
	sender := dispatcher.Sender{ID: pnid, Channel: "whatsapp", PhoneNumberID: pnid, Token: token, Rate: 80}
	busySender := dispatcher.Sender{ID: busyID, Channel: "whatsapp", PhoneNumberID: busyID, Token: token, Rate: 1}
	send := func(t *testing.T, s dispatcher.Sender, m dispatcher.Message) {
		t.Helper()
		if _, err := ch.Send(context.Background(), s, m); err != nil {
			t.Fatal(err)
		}
	}
	lift := func(*testing.T) { fault.Store(nil); clk.add(2 * time.Second) }

	// Webhook payloads the sandbox does not produce, shaped as Meta's.
	notification := func(field, value string) string {
		return `{"object":"whatsapp_business_account","entry":[{"id":"100000000000001","changes":[{"field":"` + field + `","value":{` +
			`"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"` + pnid + `"},` + value + `}}]}]}`
	}
	preference := func(waID, value string) string {
		return notification("user_preferences", `"contacts":[{"profile":{"name":"Sheena"},"wa_id":"`+waID+`"}],`+
			`"user_preferences":[{"wa_id":"`+waID+`","detail":"User requested to `+value+` marketing messages","category":"marketing_messages","value":"`+value+`","timestamp":1750030073}]`)
	}
	sample := preference("16505551234", "resume")
	tapped := func(from, value string) func(t *testing.T) {
		return func(t *testing.T) {
			if err := sb.Preference(context.Background(), pnid, from, value); err != nil {
				t.Fatal(err)
			}
		}
	}
	texted := func(from, text string) func(t *testing.T) {
		return func(t *testing.T) {
			if err := sb.Inbound(context.Background(), pnid, from, text); err != nil {
				t.Fatal(err)
			}
		}
	}
	var consent []channeltest.ConsentCase
	for i, c := range []struct {
		text string
		want channeltest.Effect
	}{
		{"STOP", channeltest.OptOut}, {"stop", channeltest.OptOut}, {" Unsubscribe \n", channeltest.OptOut},
		{"STOP ALL", channeltest.OptOut}, {"START", channeltest.OptIn}, {"stop sending me the old catalogue", channeltest.NoEffect},
		{"hello", channeltest.NoEffect},
	} {
		from := ok[950+i]
		consent = append(consent, channeltest.ConsentCase{Name: fmt.Sprintf("texted %q", c.text), Subject: from, Provoke: texted(from, c.text), Want: c.want})
	}
	consent = append(consent,
		channeltest.ConsentCase{Name: "user_preferences stop (the user taps Stop promotions)", Subject: "+16505550001",
			Provoke: tapped("+16505550001", "stop"), Want: channeltest.OptOut},
		channeltest.ConsentCase{Name: "user_preferences resume", Subject: "+16505550002",
			Provoke: tapped("+16505550002", "resume"), Want: channeltest.OptIn},
		channeltest.ConsentCase{Name: "user_preferences stop, as Meta shaped it in its docs (by hand)", Subject: "+16505550003",
			Payload: preference("16505550003", "stop"), Want: channeltest.OptOut},
		channeltest.ConsentCase{Name: "marketing stopped by the user (failed 131050)", Subject: "consent:1",
			Provoke: func(t *testing.T) { send(t, sender, template("promo")(stoppedMarketing, "consent:1")) }, Want: channeltest.OptOut},
		channeltest.ConsentCase{Name: "not on WhatsApp (failed 131026)", Subject: "consent:2",
			Provoke: func(t *testing.T) { send(t, sender, template("promo")(gone, "consent:2")) }, Want: channeltest.Undeliverable},
	)

	channeltest.Run(t, channeltest.Harness{
		Channel:   ch,
		Sender:    sender,
		Message:   template("promo"),
		Recipient: func(i int) string { return ok[i] },
		Accepted: func() []channeltest.Landed {
			var out []channeltest.Landed
			for _, r := range append(sb.Records(), busy.Records()...) {
				out = append(out, channeltest.Landed{Callback: r.CallbackData, ID: r.MessageID})
			}
			return out
		},
		Actions: actions,
		Refusals: []channeltest.Refusal{
			{Name: "template missing (132001)", Message: func(cb string) dispatcher.Message { return template("nope")("+66810000001", cb) },
				Action: dispatcher.ActionPauseCampaign},
			{Name: "free text outside the window (131047)", Message: freeText("+66810000002", "hi"), Action: dispatcher.ActionConvertToTemplate},
			{Name: "not a phone number (100)", To: "12", Action: dispatcher.ActionFailJob},
		},
		Transients: []channeltest.Transient{
			{Name: "throughput (130429)", Sender: &busySender, Message: promoTo(ok[70]),
				Refuse: func(t *testing.T) {
					clk.add(2 * time.Second)
					send(t, busySender, template("promo")(ok[71], "fill:1")) // this second's one message
				},
				Lift:   lift,
				Action: dispatcher.ActionRetry, Signal: throttle.SignalSlowSender, MinRetryAfter: time.Second, MaxRetryAfter: time.Second},
			{Name: "pair rate (131056)", Sender: &busySender, Message: promoTo(ok[72]),
				Refuse: func(t *testing.T) {
					clk.add(2 * time.Second)
					send(t, busySender, template("promo")(ok[72], "fill:2"))
					clk.add(time.Second) // throughput again, but not 6 s for the pair
				},
				Lift:   func(*testing.T) { clk.add(6 * time.Second) },
				Action: dispatcher.ActionBackoffRecipient, Signal: throttle.SignalBackoffRecipient, MinRetryAfter: 4 * time.Second, MaxRetryAfter: 4 * time.Second},
			{Name: "service unavailable (500, 131000)", Sender: &busySender, Message: promoTo(ok[73]),
				Refuse: func(*testing.T) { fault.Store(&[2]int{http.StatusInternalServerError, 131000}) }, Lift: lift,
				Action: dispatcher.ActionRetry, MinRetryAfter: time.Second, MaxRetryAfter: time.Second},
			{Name: "bare 503 (no Graph error)", Sender: &busySender, Message: promoTo(ok[74]),
				Refuse: func(*testing.T) { fault.Store(&[2]int{http.StatusServiceUnavailable, 0}) }, Lift: lift,
				Action: dispatcher.ActionRetry, MinRetryAfter: time.Second, MaxRetryAfter: time.Second},
		},
		Idempotency: channeltest.Idempotency{None: "the Cloud API takes no idempotency key: a repeated send is a second message with a new wamid; " +
			"the core's claim on (campaign, contact), settled by the status webhooks' biz_opaque_callback_data, is the only guard"},
		Reports: channeltest.Reports{
			Keyword: server.New(server.Config{}).Keyword,
			Webhook: &channeltest.Webhook{
				Header: graph.SignatureHeader, Key: appSecret,
				Sign:     func(key string, _ *http.Request, body []byte) string { return graph.Sign(key, body) },
				Captured: rec.Captured,
				Request: func(body []byte) *http.Request {
					r := httptest.NewRequest(http.MethodPost, rec.URL()+"/webhooks/whatsapp", strings.NewReader(string(body)))
					r.Header.Set("Content-Type", "application/json")
					return r
				},
				Receive: func(r *http.Request) (channeltest.Decoded, error) {
					b, err := server.ReadWhatsApp(r, appSecret)
					return channeltest.Decoded{Reports: b.Reports, Inbound: b.Inbound, Preferences: b.Preferences}, err
				},
			},
			Sample: sample,
			Malformed: []string{
				sample[:len(sample)/2],
				"not JSON",
				strings.Replace(sample, "whatsapp_business_account", "page", 1),
				notification("messages", `"statuses":[{"id":"wamid.x","status":"exploded","timestamp":"1750030073","recipient_id":"16505551234"}]`),
				notification("messages", `"messages":[{"id":"wamid.y","timestamp":"1750030073","type":"text","text":{"body":"STOP"}}]`), // no from
				notification("messages", `"statuses":[{"id":"wamid.z","status":"sent","timestamp":"yesterday","recipient_id":"16505551234"}]`),
			},
			Oversized: `{"padding":"` + strings.Repeat("a", server.MaxBody) + `",` + sample[1:],
			MaxBody:   server.MaxBody,
		},
		Consent: consent,
		Limits: channeltest.Limits{
			Rate: 80, // per phone number, by default (1,000 after Meta's upgrade)
			Cases: []channeltest.Limit{
				{Name: "an approved template, any time", Message: promoTo(ok[80]), Parts: 1},
				{Name: "free-form text inside the 24h window", Message: freeText(chatting, "Yes, until Sunday!"), Parts: 1},
				{Name: "free-form text outside the window needs a template (131047)", Message: freeText(ok[81], "hi"),
					Action: dispatcher.ActionConvertToTemplate},
				// Meta would refuse them (100): the adapter refuses them before sending.
				{Name: "free-form text over 4096 characters (100)", Message: freeText(chatting, strings.Repeat("a", 4097)),
					Action: dispatcher.ActionFailJob, Before: true},
				{Name: "free-form text of 4096 characters", Message: freeText(chatting, strings.Repeat("é", 4096)), Parts: 1},
				{Name: "an empty text body (100)", Message: freeText(chatting, ""), Action: dispatcher.ActionFailJob, Before: true},
				{Name: "callback data over 512 characters (100)", Message: func(cb string) dispatcher.Message {
					m := freeText(chatting, "hi")(cb)
					m.CallbackData += ":" + strings.Repeat("x", 512)
					return m
				}, Action: dispatcher.ActionFailJob, Before: true},
			},
			Attempts: func() int64 { return sb.Stats().Requests + busy.Stats().Requests },
		},
	})

	wrong := whatsapp.New(graph.NewClient(graph.ClientConfig{BaseURL: srv.URL}))
	t.Run("a bad token pauses the account", func(t *testing.T) {
		channeltest.Run(t, channeltest.Harness{Channel: wrong, Sender: dispatcher.Sender{ID: "x", Channel: "whatsapp", PhoneNumberID: "x", Token: "wrong", Rate: 1},
			Message: template("promo"), Recipient: func(i int) string { return "+66810000003" }, Accepted: func() []channeltest.Landed { return nil },
			Refusals: []channeltest.Refusal{{Name: "token (190)", To: "+66810000003", Action: dispatcher.ActionPauseAccount}}, SkipSends: true})
	})
}
