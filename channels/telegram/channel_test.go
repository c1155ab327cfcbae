package telegram_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/channels/telegram/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

const token = "777:secret-token"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func setup(t *testing.T, cfg sandbox.Config) (*telegram.Channel, *sandbox.Sandbox, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)}
	cfg.Bots = map[string]string{token: "herald_bot"}
	cfg.Now = clk.now
	sb := sandbox.New(cfg)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	ch, err := telegram.New(telegram.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return ch, sb, clk
}

var bot = dispatcher.Sender{ID: "tg", Channel: "telegram", Token: token, Rate: 30}

func text(to, s string) dispatcher.Message {
	return dispatcher.Message{To: to, Rendered: templates.Rendered{Channel: "telegram", Kind: templates.KindText, Text: s}}
}

// A rendered template with a parse mode, buttons and a photo becomes the Bot API request
// Telegram documents, and the provider id names the chat and the message.
func TestSendShapes(t *testing.T) {
	var got []map[string]any
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Error(err)
		}
		got, paths = append(got, m), append(paths, r.URL.Path)
		io.WriteString(w, `{"ok":true,"result":{"message_id":99,"date":1,"chat":{"id":42,"type":"private"}}}`)
	}))
	defer srv.Close()
	ch, _ := telegram.New(telegram.Config{BaseURL: srv.URL})
	m := text("42", "*Hi* Ann")
	m.Rendered.Telegram = &templates.RenderedTelegram{ParseMode: "MarkdownV2", NoLinkPreview: true,
		Buttons: []templates.TelegramButton{{Text: "Shop", URL: "https://go.example/c/1"}}}
	paid := bot
	paid.Settings = map[string]string{"paid_broadcast": "true"}
	id, err := ch.Send(context.Background(), paid, m)
	if err != nil || id != "42:99" {
		t.Fatalf("Send = %q, %v; want 42:99", id, err)
	}
	m.Rendered.Telegram.Photo = "https://cdn.example/p.jpg"
	if _, err := ch.Send(context.Background(), bot, m); err != nil {
		t.Fatal(err)
	}
	if paths[0] != "/bot"+token+"/sendMessage" || paths[1] != "/bot"+token+"/sendPhoto" {
		t.Fatalf("paths %v", paths)
	}
	want := `{"allow_paid_broadcast":true,"chat_id":"42","link_preview_options":{"is_disabled":true},"parse_mode":"MarkdownV2","reply_markup":{"inline_keyboard":[[{"text":"Shop","url":"https://go.example/c/1"}]]},"text":"*Hi* Ann"}`
	if b, _ := json.Marshal(got[0]); string(b) != want {
		t.Fatalf("sendMessage body\n%s\nwant\n%s", b, want)
	}
	if got[1]["caption"] != "*Hi* Ann" || got[1]["photo"] != "https://cdn.example/p.jpg" || got[1]["text"] != nil || got[1]["allow_paid_broadcast"] != nil {
		t.Fatalf("sendPhoto body %v", got[1])
	}
}

// The sandbox's limits: a chat takes a burst then 1/s, a group 20 per minute, a bot 30
// per second (1,000 with paid broadcast); each refusal is a 429 whose retry_after the
// adapter turns into a back-off of that recipient only.
func TestSandboxLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("chat", func(t *testing.T) {
		ch, sb, clk := setup(t, sandbox.Config{Burst: 3})
		for i := range 3 {
			if _, err := ch.Send(ctx, bot, text("5", "hi")); err != nil {
				t.Fatalf("burst %d: %v", i, err)
			}
		}
		_, err := ch.Send(ctx, bot, text("5", "hi"))
		var se *dispatcher.SendError
		if !errors.As(err, &se) || se.Action != dispatcher.ActionBackoffRecipient || se.Signal != throttle.SignalBackoffRecipient || se.RetryAfter != time.Second || !se.Retryable {
			t.Fatalf("4th message at once: %v (%+v)", err, se)
		}
		if _, err := ch.Send(ctx, bot, text("6", "hi")); err != nil {
			t.Fatalf("another chat is held too: %v", err)
		}
		clk.add(time.Second)
		if _, err := ch.Send(ctx, bot, text("5", "hi")); err != nil {
			t.Fatalf("a second later: %v", err)
		}
		if l := sb.Limited(); len(l) != 1 || l[0].Why != "chat" || l[0].ChatID != 5 {
			t.Fatalf("429s recorded %+v", l)
		}
	})
	t.Run("group", func(t *testing.T) {
		ch, sb, clk := setup(t, sandbox.Config{Burst: 100})
		for i := range telegram.GroupPerMinute {
			if _, err := ch.Send(ctx, bot, text("-100", "hi")); err != nil {
				t.Fatalf("group message %d: %v", i, err)
			}
			clk.add(time.Second)
		}
		if _, err := ch.Send(ctx, bot, text("-100", "hi")); err == nil {
			t.Fatal("21st group message in a minute accepted")
		}
		clk.add(41 * time.Second)
		if _, err := ch.Send(ctx, bot, text("-100", "hi")); err != nil {
			t.Fatalf("a minute after the first: %v", err)
		}
		if n := len(sb.Limited()); n != 1 {
			t.Fatalf("%d 429s", n)
		}
	})
	t.Run("bot", func(t *testing.T) {
		for _, c := range []struct {
			paid bool
			rate int
		}{{false, telegram.DefaultRate}, {true, telegram.PaidBroadcastRate}} {
			ch, sb, _ := setup(t, sandbox.Config{})
			s := bot
			if c.paid {
				s.Settings = map[string]string{"paid_broadcast": "true"}
			}
			for i := range c.rate {
				if _, err := ch.Send(ctx, s, text(strconv.Itoa(1000+i), "hi")); err != nil {
					t.Fatalf("paid %v: message %d of the second: %v", c.paid, i, err)
				}
			}
			if _, err := ch.Send(ctx, s, text("1", "hi")); err == nil {
				t.Fatalf("paid %v: message %d in one second accepted", c.paid, c.rate+1)
			}
			if l := sb.Limited(); len(l) != 1 || l[0].Why != "bot" {
				t.Fatalf("429s %+v", l)
			}
		}
	})
}

// A bad token pauses the account; a send of a MarkdownV2 text that does not parse is
// refused with Telegram's own words and pauses the campaign.
func TestRefusals(t *testing.T) {
	ch, sb, _ := setup(t, sandbox.Config{})
	ctx := context.Background()
	bad := bot
	bad.Token = "777:wrong"
	var se *dispatcher.SendError
	if _, err := ch.Send(ctx, bad, text("5", "hi")); !errors.As(err, &se) || se.Action != dispatcher.ActionPauseAccount {
		t.Fatalf("bad token: %v", err)
	}
	bad.Token = "not a token"
	if _, err := ch.Send(ctx, bad, text("5", "hi")); !errors.As(err, &se) || se.Action != dispatcher.ActionPauseAccount {
		t.Fatalf("malformed token: %v", err)
	}
	m := text("5", "Sale ends 5.3!")
	m.Rendered.Telegram = &templates.RenderedTelegram{ParseMode: "MarkdownV2"}
	_, err := ch.Send(ctx, bot, m)
	if !errors.As(err, &se) || se.Action != dispatcher.ActionPauseCampaign || se.Code != 400 {
		t.Fatalf("unescaped MarkdownV2: %v", err)
	}
	if want := "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if n := len(sb.Messages()); n != 0 {
		t.Fatalf("%d messages landed", n)
	}
}

// Deep-link payloads name the contact they were signed for, fit /start's 64 characters of
// A-Za-z0-9_-, and anything else is refused; the webhook secret names its bot.
func TestPayloadsAndSecrets(t *testing.T) {
	key := []byte("k1")
	for _, id := range []uint32{0, 1, 42, 1<<32 - 1} {
		p := telegram.LinkPayload(key, id)
		if len(p) > 64 || !telegram.ValidSecret(p) {
			t.Fatalf("payload %q", p)
		}
		got, err := telegram.ParsePayload(key, p)
		if err != nil || got != id {
			t.Fatalf("ParsePayload(%q) = %d, %v; want %d", p, got, err, id)
		}
		if _, err := telegram.ParsePayload([]byte("k2"), p); !errors.Is(err, telegram.ErrBadPayload) {
			t.Fatalf("payload under another key: %v", err)
		}
	}
	for _, p := range []string{"", "abc", telegram.LinkPayload(key, 7) + "A", "!!!!"} {
		if _, err := telegram.ParsePayload(key, p); !errors.Is(err, telegram.ErrBadPayload) {
			t.Fatalf("ParsePayload(%q): %v", p, err)
		}
	}
	s := telegram.WebhookSecret(key, "777")
	if !telegram.ValidSecret(s) {
		t.Fatalf("secret %q is not one setWebhook takes", s)
	}
	if b, err := telegram.VerifyWebhookSecret(key, s); err != nil || b != "777" {
		t.Fatalf("VerifyWebhookSecret = %q, %v", b, err)
	}
	for _, h := range []string{"", "777", "777_", s + "x", telegram.WebhookSecret([]byte("other"), "777"), "778" + s[3:]} {
		if _, err := telegram.VerifyWebhookSecret(key, h); !errors.Is(err, telegram.ErrSecretMismatch) {
			t.Fatalf("header %q: %v", h, err)
		}
	}
	if got := telegram.DeepLink("@herald_bot", "abc"); got != "https://t.me/herald_bot?start=abc" {
		t.Fatal(got)
	}
}
