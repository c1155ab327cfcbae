package channeltest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/channeltest"
	"github.com/herald-dev/herald/channels/telegram"
	tgsandbox "github.com/herald-dev/herald/channels/telegram/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// The Telegram adapter against its Bot API sandbox, which pushes updates to a Recorder
// with the bot's secret token; each is read, verified and decoded by serve's own code
// (server.ReadTelegram). The Bot API carries no callback data: the harness's messages
// carry theirs in the text ("cb=<data>;"), and the sandbox's record is read back by it.
func TestTelegramConformance(t *testing.T) {
	const token = "123456:AAtest-token"
	const blocked, deactivated, unknown = 666, 667, 404
	key := []byte("telegram-conformance-key")
	clk := newClock()
	rec := channeltest.NewRecorder(t)
	sb := tgsandbox.New(tgsandbox.Config{Bots: map[string]string{token: "herald_test_bot"}, Now: clk.now,
		Blocked:     func(c int64) bool { return c == blocked },
		Deactivated: func(c int64) bool { return c == deactivated },
		Unknown:     func(c int64) bool { return c == unknown }})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	ch, err := telegram.New(telegram.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := ch.SetWebhook(ctx, token, rec.URL()+telegram.WebhookPath, telegram.WebhookSecret(key, telegram.BotID(token))); err != nil {
		t.Fatal(err)
	}
	// Paid broadcast (1,000/s): the suite sends 40 messages at once, over the free 30/s
	// (TestSandboxLimits in channels/telegram holds the free rate).
	sender := dispatcher.Sender{ID: "tg1", Channel: telegram.ChannelName, Token: token, Rate: telegram.PaidBroadcastRate,
		Settings: map[string]string{"paid_broadcast": "true"}}
	chat := func(i int) string { return strconv.Itoa(100000 + i) }
	msg := func(to, cb, mode, text string, tg *templates.RenderedTelegram) dispatcher.Message {
		if tg == nil {
			tg = &templates.RenderedTelegram{}
		}
		tg.ParseMode = mode
		return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: telegram.ChannelName, Kind: templates.KindText, Text: text, Telegram: tg}}
	}
	// padded is a plain text of n characters that carries cb.
	padded := func(cb string, n int) string {
		s := "cb=" + cb + ";"
		return s + strings.Repeat("a", max(0, n-len(s)))
	}
	text := func(to, t string) func(cb string) dispatcher.Message {
		return func(cb string) dispatcher.Message { return msg(to, cb, "", "cb="+cb+"; "+t, nil) }
	}

	hooks := &server.TelegramConfig{Key: key}
	receive := func(r *http.Request) (channeltest.Decoded, error) {
		b, _, err := server.ReadTelegram(r, hooks)
		return channeltest.Decoded{Reports: b.Reports, Inbound: b.Inbound, Preferences: b.Preferences}, err
	}
	update := func(chatID int64, text string) string {
		return fmt.Sprintf(`{"update_id":7,"message":{"message_id":9,"date":1767000000,"chat":{"id":%d,"type":"private"},"from":{"id":%d,"is_bot":false,"first_name":"A"},"text":%q}}`, chatID, chatID, text)
	}
	pushed := func(chatID int64, text string) func(t *testing.T) {
		return func(t *testing.T) {
			if _, err := sb.Push(context.Background(), token, chatID, text); err != nil {
				t.Fatal(err)
			}
		}
	}
	var consent []channeltest.ConsentCase
	for i, c := range []struct {
		text string
		want channeltest.Effect
	}{
		{"/start", channeltest.OptIn}, {"/start " + telegram.LinkPayload(key, 42), channeltest.OptIn},
		{"/start@herald_test_bot", channeltest.OptIn}, {"/stop", channeltest.OptOut}, {"/stop@herald_test_bot", channeltest.OptOut},
		{"STOP", channeltest.OptOut}, {"hello, is the sale still on?", channeltest.NoEffect}, {"/stopping", channeltest.NoEffect},
	} {
		id := int64(200000 + i)
		consent = append(consent, channeltest.ConsentCase{Name: fmt.Sprintf("sent %q", c.text), Subject: strconv.FormatInt(id, 10), Provoke: pushed(id, c.text), Want: c.want})
	}
	busy := chat(60)
	channeltest.Run(t, channeltest.Harness{
		Channel:   ch,
		Sender:    sender,
		Message:   func(to, cb string) dispatcher.Message { return text(to, "Hi, 20% off today")(cb) },
		Recipient: chat,
		Accepted: func() []channeltest.Landed {
			var out []channeltest.Landed
			for _, m := range sb.Messages() {
				cb, _, _ := strings.Cut(strings.TrimPrefix(m.Visible, "cb="), ";")
				out = append(out, channeltest.Landed{Callback: cb, ID: strconv.FormatInt(m.ChatID, 10) + ":" + strconv.FormatInt(m.MessageID, 10)})
			}
			return out
		},
		Actions: func() []string {
			var a []string
			for _, c := range telegram.Codes {
				a = append(a, c.Action)
			}
			return a
		}(),
		Refusals: []channeltest.Refusal{
			{Name: "blocked by the user (403)", To: strconv.Itoa(blocked), Action: dispatcher.ActionOptOut},
			{Name: "user is deactivated (403)", To: strconv.Itoa(deactivated), Action: dispatcher.ActionOptOut},
			{Name: "chat not found (400)", To: strconv.Itoa(unknown), Action: dispatcher.ActionUndeliverable},
			{Name: "can't parse entities (400)", Message: func(cb string) dispatcher.Message {
				return msg(chat(70), cb, templates.ParseModeMarkdownV2, "cb="+cb+"; 20% off. *bold", nil)
			}, Action: dispatcher.ActionPauseCampaign},
		},
		Transients: []channeltest.Transient{
			{Name: "flood control of one chat (429, retry_after 1)", Message: text(busy, "hi"),
				Refuse: func(t *testing.T) {
					// The chat's burst, then the next message is over 1/s.
					for i := 0; ; i++ {
						_, err := ch.Send(context.Background(), sender, text(busy, "fill")(fmt.Sprintf("fill:%d", i)))
						if err != nil {
							return // refused: the bucket is empty (this fill did not land)
						}
						if i > 10 {
							t.Fatal("the sandbox never limited the chat")
						}
					}
				},
				Lift:   func(*testing.T) { clk.add(2 * time.Second) },
				Action: dispatcher.ActionBackoffRecipient, Signal: throttle.SignalBackoffRecipient, MinRetryAfter: time.Second, MaxRetryAfter: time.Second},
		},
		Idempotency: channeltest.Idempotency{None: "the Bot API has no idempotency key: a repeated sendMessage is a second message " +
			"with a new message_id; the core's claim on (campaign, contact) is the only guard"},
		Reports: channeltest.Reports{
			NoReports: "Telegram gives bots no delivery or read receipts",
			Unsigned: "Telegram signs no update: each carries the secret token given to setWebhook (a shared secret, not a signature " +
				"of the body); serve refuses a missing or forged token with 401 (TestTelegramWebhook in internal/server)",
			Keyword: server.New(server.Config{}).Keyword,
			Received: func() ([]channeltest.Decoded, error) {
				var out []channeltest.Decoded
				for _, c := range rec.Captured() {
					d, err := receive(c.Request())
					if err != nil {
						return out, fmt.Errorf("Herald refused an update the sandbox sent (%s): %w", c.URL, err)
					}
					out = append(out, d)
				}
				return out, nil
			},
			Deliver: func(body []byte) (channeltest.Decoded, error) {
				r := httptest.NewRequest(http.MethodPost, rec.URL()+telegram.WebhookPath, strings.NewReader(string(body)))
				r.Header.Set(telegram.SecretHeader, telegram.WebhookSecret(key, telegram.BotID(token)))
				return receive(r)
			},
			Sample: update(300001, "/start"),
			Malformed: []string{
				`{"update_id":7}x`, `{}`, `[1]`, `{"update_id":7,"message":{"message_id":0,"date":1,"chat":{"id":1}}}`,
				`{"update_id":7,"message":{"message_id":1,"date":1,"chat":{"id":0}}}`,
				update(300002, strings.Repeat("a", 4097)), "{\"update_id\":7,\"message\":{\"message_id\":1,\"date\":1,\"chat\":{\"id\":1},\"text\":\"\xff\"}}",
			},
			Oversized: update(300003, "hi"+strings.Repeat(" ", telegram.MaxWebhookBody)),
			MaxBody:   telegram.MaxWebhookBody,
		},
		Consent: consent,
		Limits: channeltest.Limits{
			Rate: telegram.PaidBroadcastRate,
			Cases: []channeltest.Limit{
				{Name: "4096 characters: the most a message holds", Message: func(cb string) dispatcher.Message { return msg(chat(80), cb, "", padded(cb, 4096), nil) }, Parts: 1},
				{Name: "4096 visible characters of MarkdownV2 (escapes are free)", Message: func(cb string) dispatcher.Message {
					return msg(chat(81), cb, templates.ParseModeMarkdownV2, templates.EscapeMarkdownV2("cb="+cb+";")+strings.Repeat(`\.`, 4096-len("cb="+cb+";")), nil)
				}, Parts: 1},
				{Name: "4097 characters", Message: func(cb string) dispatcher.Message { return msg(chat(82), cb, "", padded(cb, 4097), nil) }, Action: dispatcher.ActionFailJob, Before: true},
				{Name: "4097 visible characters of MarkdownV2", Message: func(cb string) dispatcher.Message {
					return msg(chat(83), cb, templates.ParseModeMarkdownV2, templates.EscapeMarkdownV2("cb="+cb+";")+strings.Repeat(`\.`, 4097-len("cb="+cb+";")), nil)
				}, Action: dispatcher.ActionFailJob},
				{Name: "empty text", Message: func(cb string) dispatcher.Message { return msg(chat(84), cb, "", "", nil) }, Action: dispatcher.ActionFailJob, Before: true},
				{Name: "a photo's caption of 1024 characters", Message: func(cb string) dispatcher.Message {
					return msg(chat(85), cb, "", padded(cb, 1024), &templates.RenderedTelegram{Photo: "https://example.com/p.jpg"})
				}, Parts: 1},
				{Name: "a document's caption of 1025 characters", Message: func(cb string) dispatcher.Message {
					return msg(chat(86), cb, "", padded(cb, 1025), &templates.RenderedTelegram{Document: "https://example.com/d.pdf"})
				}, Action: dispatcher.ActionFailJob, Before: true},
			},
			Attempts: func() int64 { return sb.Stats().Requests },
		},
	})
}
