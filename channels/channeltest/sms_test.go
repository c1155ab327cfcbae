package channeltest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/channeltest"
	"github.com/herald-dev/herald/channels/sms"
	smssandbox "github.com/herald-dev/herald/channels/sms/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// The SMS adapter against its Twilio-style sandbox, which posts its signed status
// callbacks and inbound messages to a Recorder; each is read, verified and decoded by
// serve's own code (server.ReadSMS).
func TestSMSConformance(t *testing.T) {
	const account, token = "AC0123456789abcdef0123456789abcdef", "tok"
	const shortCode, longCode = "12345", "+14155550100" // 100 and 1 segments/s
	const unsub, landline = 0.2, 0.2
	const maxQueue = 10 * time.Second
	clk := newClock()
	rec := channeltest.NewRecorder(t)
	var busy atomic.Value // the recipient Twilio answers 429 for, while set
	busy.Store("")
	sb := smssandbox.New(smssandbox.Config{AccountSID: account, AuthToken: token, UnsubscribedRate: unsub, LandlineRate: landline,
		AllowedCountries: []string{"US"}, DelayScale: -1, Now: clk.now, MaxQueueTime: maxQueue, InboundURL: rec.URL() + sms.InboundPath,
		Fault: func(to string) smssandbox.Fault {
			if to != "" && to == busy.Load() {
				return smssandbox.Fault{Status: http.StatusTooManyRequests, Code: 20429, RetryAfter: time.Second}
			}
			return smssandbox.Fault{}
		}}, nil)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	run(t, sb.Run)
	ch, err := sms.New(sms.Config{BaseURL: srv.URL, PublicURL: rec.URL(), Senders: map[string]sms.SenderConfig{
		"s1": {AccountSID: account, AuthToken: token, From: shortCode, Type: sms.ShortCode},
		"lc": {AccountSID: account, AuthToken: token, From: longCode, Type: sms.LongCode}}})
	if err != nil {
		t.Fatal(err)
	}
	// Recipients the sandbox treats as plain mobiles, and one of each refusal.
	var ok []string
	var unsubscribed, fixed string
	for i := 0; len(ok) < 1300 || unsubscribed == "" || fixed == ""; i++ {
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
	text := func(to, body string) func(cb string) dispatcher.Message {
		return func(cb string) dispatcher.Message {
			return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "sms", Kind: templates.KindText, Text: body}}
		}
	}
	lc := dispatcher.Sender{ID: "lc", Channel: "sms", Rate: 1}

	// serve's SMS webhook, short of ingesting: read, verify, decode.
	hooks := &server.SMSConfig{Channel: ch, PublicURL: rec.URL()}
	receive := func(r *http.Request) (channeltest.Decoded, error) {
		b, err := server.ReadSMS(r, hooks, r.URL.Path == sms.InboundPath)
		return channeltest.Decoded{Reports: b.Reports, Inbound: b.Inbound, Preferences: b.Preferences}, err
	}
	inboundForm := func(from, body string, extra ...string) string {
		f := url.Values{"AccountSid": {account}, "MessageSid": {"SM" + strings.Repeat("7", 32)}, "From": {from}, "To": {shortCode}, "Body": {body}}
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return f.Encode()
	}
	texted := func(from, body string) func(t *testing.T) {
		return func(t *testing.T) {
			if _, err := sb.Inbound(context.Background(), from, shortCode, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	var consent []channeltest.ConsentCase
	for i, c := range []struct {
		text string
		want channeltest.Effect
	}{
		{"STOP", channeltest.OptOut}, {"stop", channeltest.OptOut}, {"  Stop \n", channeltest.OptOut},
		{"UNSUBSCRIBE", channeltest.OptOut}, {"end", channeltest.OptOut}, {"Quit", channeltest.OptOut},
		{"STOPALL", channeltest.OptOut}, {"revoke", channeltest.OptOut}, {"OPTOUT", channeltest.OptOut},
		{" cancel", channeltest.OptOut}, {"START", channeltest.OptIn}, {"unstop\n", channeltest.OptIn},
		{"stop by the store", channeltest.NoEffect}, {"Hello, when do you open?", channeltest.NoEffect},
	} {
		from := ok[1200+i]
		consent = append(consent, channeltest.ConsentCase{Name: fmt.Sprintf("texted %q", c.text), Subject: from, Provoke: texted(from, c.text), Want: c.want})
	}

	limit := func(name, body string, parts int) channeltest.Limit {
		return channeltest.Limit{Name: name, Message: text(ok[50], body), Parts: parts}
	}
	channeltest.Run(t, channeltest.Harness{
		Channel:   ch,
		Sender:    dispatcher.Sender{ID: "s1", Channel: "sms", Token: token, Rate: 100},
		Message:   func(to, cb string) dispatcher.Message { return text(to, "Hi, 20% off today")(cb) },
		Recipient: func(i int) string { return ok[i] },
		Accepted: func() []channeltest.Landed {
			var out []channeltest.Landed
			for _, r := range sb.Records() {
				out = append(out, channeltest.Landed{Callback: r.CallbackData, ID: r.SID})
			}
			return out
		},
		Actions: actions,
		Refusals: []channeltest.Refusal{
			{Name: "unsubscribed (21610)", To: unsubscribed, Action: dispatcher.ActionOptOut},
			{Name: "landline (21614)", To: fixed, Action: dispatcher.ActionUndeliverable},
			{Name: "country not allowed (21408)", To: "+447911123456", Action: dispatcher.ActionSkipCountry},
		},
		Transients: []channeltest.Transient{
			{Name: "too many requests (429, 20429, Retry-After: 1)", Message: text(ok[60], "hi"),
				Refuse: func(*testing.T) { busy.Store(ok[60]) }, Lift: func(*testing.T) { busy.Store("") },
				Action: dispatcher.ActionRetry, Signal: throttle.SignalSlowSender, MinRetryAfter: time.Second, MaxRetryAfter: time.Second},
			{Name: "sender queue full (21611)", Sender: &lc, Message: text(ok[61], "hi"),
				Refuse: func(t *testing.T) {
					// A long code drains 1 segment/s: fill more than maxQueue's worth.
					for i := 0; sb.QueueWait(longCode) <= maxQueue; i++ {
						if _, err := ch.Send(context.Background(), lc, text(ok[100+i], "hi")(fmt.Sprintf("fill:%d", i))); err != nil {
							t.Fatalf("filling the queue: %v", err)
						}
					}
				},
				Lift:   func(*testing.T) { clk.add(time.Minute) }, // the queue drains on the sandbox's clock
				Action: dispatcher.ActionRetry, Signal: throttle.SignalSlowSender, MinRetryAfter: time.Minute, MaxRetryAfter: time.Minute},
		},
		Idempotency: channeltest.Idempotency{None: "Twilio's Messages API documents no idempotency key: a repeated POST is a second message " +
			"(the SID is Twilio's, new per message); the core's claim on (campaign, contact) is the only guard"},
		Reports: channeltest.Reports{
			Keyword: server.New(server.Config{}).Keyword,
			Webhook: &channeltest.Webhook{
				Header: sms.SignatureHeader, Key: token, SignsURL: true,
				Sign: func(key string, r *http.Request, body []byte) string {
					form, _ := url.ParseQuery(string(body))
					return sms.Sign(key, r.URL.String(), form)
				},
				Captured: rec.Captured,
				Request: func(body []byte) *http.Request {
					r := httptest.NewRequest(http.MethodPost, rec.URL()+sms.InboundPath, strings.NewReader(string(body)))
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					return r
				},
				Receive: receive,
			},
			Sample: inboundForm("+14155559999", "hello"),
			Malformed: []string{
				"AccountSid=" + account + "&MessageSid=%zz",
				"AccountSid=" + account + "&From=%2B14155559999&To=" + shortCode + "&Body=hi", // no MessageSid
				inboundForm("+14155559999", "hi", "To", ""),                                   // no To
				inboundForm("+14155559999", strings.Repeat("a", templates.MaxSMSChars+1)),
				inboundForm("+14155559999", "\xff\xfe"),
			},
			Oversized: inboundForm("+14155559999", "hello", "Pad", strings.Repeat("a", sms.MaxWebhookBody)),
			MaxBody:   sms.MaxWebhookBody,
		},
		Consent: consent,
		Limits: channeltest.Limits{
			Rate: sms.DefaultRate(sms.ShortCode), // segments/s
			Cases: []channeltest.Limit{
				limit("GSM-7, 160 characters: one segment", strings.Repeat("a", 160), 1),
				limit("GSM-7, 161 characters: two segments of 153", strings.Repeat("a", 161), 2),
				limit("GSM-7, 306 characters: two segments", strings.Repeat("a", 306), 2),
				limit("GSM-7, 307 characters: three segments", strings.Repeat("a", 307), 3),
				limit("GSM-7 extension characters count twice: 80 €", strings.Repeat("€", 80), 1),
				limit("GSM-7 extension characters count twice: 81 €", strings.Repeat("€", 81), 2),
				limit("UCS-2, 70 characters: one segment", strings.Repeat("ж", 70), 1),
				limit("UCS-2, 71 characters: two segments of 67", strings.Repeat("ж", 71), 2),
				limit("UCS-2, 134 characters: two segments", strings.Repeat("ж", 134), 2),
				limit("UCS-2, 135 characters: three segments", strings.Repeat("ж", 135), 3),
				limit("one emoji makes it UCS-2 and counts two units: 35", strings.Repeat("😀", 35), 1),
				limit("one emoji makes it UCS-2 and counts two units: 36", strings.Repeat("😀", 36), 2),
				limit("1600 characters: the most Twilio takes", strings.Repeat("a", templates.MaxSMSChars), 11),
				{Name: "1601 characters (21617)", Message: text(ok[50], strings.Repeat("a", templates.MaxSMSChars+1)), Action: dispatcher.ActionFailJob, Before: true},
				{Name: "empty body (21602)", Message: text(ok[50], ""), Action: dispatcher.ActionFailJob, Before: true},
			},
			Parts: func(cb string) int {
				for _, r := range sb.Records() {
					if r.CallbackData == cb {
						return r.Segments
					}
				}
				return 0
			},
			Attempts: func() int64 { return sb.Stats().Requests },
		},
	})
}
