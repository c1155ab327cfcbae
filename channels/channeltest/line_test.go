package channeltest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/channeltest"
	"github.com/herald-dev/herald/channels/line"
	linesandbox "github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// lineKeys maps the retry keys the adapter derives back to the callback data of the
// messages the suite built: LINE carries no callback data, the retry key is how it
// knows a request again.
type lineKeys struct {
	mu sync.Mutex
	m  map[string]string
}

func (k *lineKeys) add(cb string) {
	k.mu.Lock()
	k.m[line.RetryKey(cb)] = cb
	k.mu.Unlock()
}

func (k *lineKeys) landed(sb *linesandbox.Sandbox) []channeltest.Landed {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []channeltest.Landed
	for _, r := range sb.Records() {
		out = append(out, channeltest.Landed{Callback: k.m[r.RetryKey], ID: r.ProviderID()})
	}
	return out
}

func lineText(keys *lineKeys, to, body string) func(cb string) dispatcher.Message {
	return func(cb string) dispatcher.Message {
		keys.add(cb)
		return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "line", Kind: templates.KindText, Text: body}}
	}
}

// The LINE adapter against its Messaging API sandbox, which posts its signed follow,
// unfollow and message events to a Recorder; each is read, verified and decoded by
// serve's own code (server.ReadLINE).
func TestLINEConformance(t *testing.T) {
	const token, secret = "line-token", "line-channel-secret"
	clk := newClock()
	rec := channeltest.NewRecorder(t)
	var failing atomic.Value // the user the platform answers 500 for, while set
	failing.Store("")
	sb := linesandbox.New(linesandbox.Config{Token: token, ChannelSecret: secret, WebhookURL: rec.URL() + line.WebhookPath, Now: clk.now,
		Fault: func(path string, to []string) linesandbox.Fault {
			if len(to) == 1 && to[0] == failing.Load() {
				return linesandbox.Fault{Status: http.StatusInternalServerError, Message: "Internal Server Error"}
			}
			return linesandbox.Fault{}
		}})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	ch, err := line.New(line.Config{BaseURL: srv.URL, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ch.SetSecret("l1", secret)
	keys := &lineKeys{m: map[string]string{}}
	user := func(i int) string { return linesandbox.UserID(fmt.Sprint(i)) }
	ctx := context.Background()
	// Users add the account before it writes to them: the first signed deliveries.
	for i := range 2 {
		if _, err := sb.Follow(ctx, user(5000+i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sb.Message(ctx, user(5002), "hello there", ""); err != nil {
		t.Fatal(err)
	}

	receive := func(r *http.Request) (channeltest.Decoded, error) {
		b, err := server.ReadLINE(r, &server.LINEConfig{Channel: ch})
		return channeltest.Decoded{Reports: b.Reports, Inbound: b.Inbound, Preferences: b.Preferences}, err
	}
	event := func(typ, userID, extra string) string {
		return `{"destination":"Ubot","events":[{"type":"` + typ + `","mode":"active","timestamp":1772712000000,` +
			`"source":{"type":"user","userId":"` + userID + `"},"webhookEventId":"01JTESTEVENT` + typ + `",` +
			`"deliveryContext":{"isRedelivery":true}` + extra + `}]}`
	}
	var actions []string
	for _, c := range line.Codes {
		actions = append(actions, c.Action)
	}
	did := func(f func(context.Context, string) (string, error), u string) func(t *testing.T) {
		return func(t *testing.T) {
			if _, err := f(context.Background(), u); err != nil {
				t.Fatal(err)
			}
		}
	}
	wrote := func(u, text string) func(t *testing.T) {
		return func(t *testing.T) {
			if _, err := sb.Message(context.Background(), u, text, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	big := strings.Repeat("a", line.MaxWebhookBody)
	channeltest.Run(t, channeltest.Harness{
		Channel: ch,
		Sender:  dispatcher.Sender{ID: "l1", Channel: "line", Token: token, Rate: line.PushRate},
		Message: func(to, cb string) dispatcher.Message {
			return lineText(keys, to, "Hi, 20% off today")(cb)
		},
		Recipient: user,
		Accepted:  func() []channeltest.Landed { return keys.landed(sb) },
		Actions:   actions,
		Refusals: []channeltest.Refusal{
			{Name: "not a LINE user id (400, to)", To: "U123", Action: dispatcher.ActionUndeliverable},
			{Name: "a WhatsApp template is no LINE message", Message: func(cb string) dispatcher.Message {
				keys.add(cb)
				return dispatcher.Message{To: user(70), CallbackData: cb, Rendered: templates.Rendered{Kind: templates.KindWhatsAppTemplate}}
			}, Action: dispatcher.ActionFailJob},
		},
		Transients: []channeltest.Transient{
			{Name: "too many requests (429, push window full)", Message: lineText(keys, user(60), "hi"),
				Refuse: func(*testing.T) { sb.Saturate("push") }, Lift: func(*testing.T) { clk.add(time.Second) },
				Action: dispatcher.ActionRetry, Signal: throttle.SignalSlowSender, MinRetryAfter: time.Second, MaxRetryAfter: time.Second},
			{Name: "platform error (500), retried with the same key", Message: lineText(keys, user(61), "hi"),
				Refuse: func(*testing.T) { failing.Store(user(61)) }, Lift: func(*testing.T) { failing.Store("") },
				Action: dispatcher.ActionRetry, Signal: throttle.SignalNone},
		},
		Idempotency: channeltest.Idempotency{Key: "X-Line-Retry-Key, a UUID derived from (campaign, contact): a repeat is answered 409 " +
			"with x-line-accepted-request-id and the accepted push's sentMessages, and nothing is sent again"},
		Reports: channeltest.Reports{
			NoReports: "LINE reports no delivery status for push or multicast: the 200 (or the 409 naming the accepted request) is final, " +
				"and a user who blocked the account is answered 200 and gets nothing (their unfollow event says so)",
			Keyword: server.New(server.Config{}).Keyword,
			Webhook: &channeltest.Webhook{
				Header: line.SignatureHeader, Key: secret,
				Sign:     func(key string, _ *http.Request, body []byte) string { return line.Sign(key, body) },
				Captured: rec.Captured,
				Request: func(body []byte) *http.Request {
					r := httptest.NewRequest(http.MethodPost, rec.URL()+line.WebhookPath, strings.NewReader(string(body)))
					r.Header.Set("Content-Type", "application/json")
					return r
				},
				Receive: receive,
			},
			Sample: event("message", user(7000), `,"message":{"id":"5000001","type":"text","text":"thanks!"}`),
			Malformed: []string{
				"not json",
				`{"destination":"Ubot"}`, // no events
				event("follow", "U123", ""),
				event("message", user(7000), `,"message":{"type":"text","text":"no id"}`),
				strings.Replace(event("unfollow", user(7000), ""), `"timestamp":1772712000000,`, "", 1),
				event("message", user(7000), `,"message":{"id":"5000002","type":"text","text":"`+strings.Repeat("a", line.MaxTextChars+1)+`"}`),
				event("follow", user(7000), "") + "{}",
			},
			Oversized: event("message", user(7000), `,"message":{"id":"5000003","type":"text","text":"hi"},"pad":"`+big+`"`),
			MaxBody:   line.MaxWebhookBody,
		},
		Consent: []channeltest.ConsentCase{
			{Name: "follow (added as a friend)", Subject: user(8000), Provoke: did(sb.Follow, user(8000)), Want: channeltest.OptIn},
			{Name: "unfollow (blocked the account)", Subject: user(8001), Provoke: did(sb.Unfollow, user(8001)), Want: channeltest.OptOut},
			{Name: "a reply opens nothing", Subject: user(8002), Provoke: wrote(user(8002), "Is the sale on Sunday too?"), Want: channeltest.NoEffect},
			{Name: "STOP written in the chat", Subject: user(8003), Provoke: wrote(user(8003), "STOP"), Want: channeltest.OptOut},
			{Name: "a redelivered unblock", Subject: user(8004), Payload: event("follow", user(8004), `,"follow":{"isUnblocked":true}`), Want: channeltest.OptIn},
		},
		Limits: channeltest.Limits{
			Rate: line.PushRate, // requests/s; a push carries one contact's message
			Cases: []channeltest.Limit{
				{Name: "5,000 characters: the most a text message holds", Message: lineText(keys, user(50), strings.Repeat("あ", line.MaxTextChars)), Parts: 1},
				{Name: "a link becomes a button (buttons template)", Message: lineText(keys, user(50), "Sale: https://h.example/c/abc"), Parts: 1},
				{Name: "long text with a link: a flex bubble", Message: lineText(keys, user(50), strings.Repeat("Sale! ", 40)+"https://h.example/c/abc"), Parts: 1},
				{Name: "5,001 characters", Message: lineText(keys, user(50), strings.Repeat("a", line.MaxTextChars+1)), Action: dispatcher.ActionFailJob, Before: true},
				{Name: "empty text", Message: lineText(keys, user(50), ""), Action: dispatcher.ActionFailJob, Before: true},
			},
			Attempts: func() int64 { return sb.Stats().Requests },
		},
	})
}

// Refusals of the account and of the plan, each from a sandbox in that state.
func TestLINEConformanceAccountRefusals(t *testing.T) {
	const token = "line-token"
	var actions []string
	for _, c := range line.Codes {
		actions = append(actions, c.Action)
	}
	keys := &lineKeys{m: map[string]string{}}
	for _, c := range []struct {
		name, token string
		quota       int64
		refusal     channeltest.Refusal
	}{
		{"bad token", "expired", 0, channeltest.Refusal{Name: "invalid channel access token (401)", Action: dispatcher.ActionPauseAccount}},
		{"quota used up", token, 1, channeltest.Refusal{Name: "monthly limit (429 " + line.MonthlyLimitMessage + ")", Action: dispatcher.ActionPauseSender}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sb := linesandbox.New(linesandbox.Config{Token: token, MonthlyQuota: c.quota})
			srv := httptest.NewServer(sb.Handler())
			t.Cleanup(srv.Close)
			ch, err := line.New(line.Config{BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			s := dispatcher.Sender{ID: "l1", Channel: "line", Token: c.token, Rate: 10}
			if c.quota > 0 { // the month's one message
				if _, err := ch.Send(context.Background(), s, lineText(keys, linesandbox.UserID("first"), "hi")("q:1")); err != nil {
					t.Fatal(err)
				}
			}
			c.refusal.To = linesandbox.UserID("r")
			channeltest.Run(t, channeltest.Harness{Channel: ch, Sender: s, SkipSends: true, Actions: actions,
				Message:   func(to, cb string) dispatcher.Message { return lineText(keys, to, "hi")(cb) },
				Recipient: func(i int) string { return linesandbox.UserID(fmt.Sprint(i)) },
				Refusals:  []channeltest.Refusal{c.refusal}})
		})
	}
}
