// Package sandbox is a Telegram Bot API simulator for tests, `herald dev` and the demo:
// getMe, setWebhook, sendMessage, sendPhoto and sendDocument with the Bot API's shapes
// and errors; its limits (1 message/s per chat after a small burst, 20/min per group,
// about 30/s per bot, 1,000/s with allow_paid_broadcast) answered with 429 and
// parameters.retry_after; blocked, deactivated and unknown chats; a real MarkdownV2 and
// HTML entity parser (Parse) that refuses malformed text as Telegram does. It records the
// truth (every accepted message, its chat and visible text, every 429) and pushes updates
// (/start, /stop, text) to the webhook set with setWebhook, with its secret token.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-dev/herald/channels/telegram"
)

// Config configures a Sandbox.
type Config struct {
	// Bots maps each accepted token to the bot's username; a token not here is 401.
	Bots map[string]string
	// Burst is how many messages a chat takes at once before the 1/s pace applies
	// (default 3); ChatInterval is that pace (default telegram.ChatInterval).
	Burst        int
	ChatInterval time.Duration
	// BotRate is a bot's messages per second (default telegram.DefaultRate); PaidRate with
	// allow_paid_broadcast (default telegram.PaidBroadcastRate). A negative BotRate
	// turns the bot limit off.
	BotRate, PaidRate float64
	// GroupPerMinute bounds messages to one group (negative chat id) per minute (default 20).
	GroupPerMinute int
	// Blocked, Deactivated and Unknown say whether a chat blocked the bot, is a deleted
	// account, or does not exist (nil: none).
	Blocked, Deactivated, Unknown func(chatID int64) bool
	Now                           func() time.Time
	HTTPClient                    *http.Client // pushes updates (default: 10 s timeout)
}

// Message is a message the sandbox accepted.
type Message struct {
	Bot       string // the bot's id
	ChatID    int64
	MessageID int64
	Method    string
	Text      string // as sent (text or caption)
	Visible   string // what the user reads: the text with its entities parsed
	ParseMode string
	Buttons   []telegram.InlineButton
	Media     string
	Paid      bool
	At        time.Time
}

// Stats counts what the sandbox answered.
type Stats struct {
	Requests   int64 // send requests
	Accepted   int64
	TooMany    int64 // 429s
	ParseFails int64 // 400 can't parse entities
}

// Sandbox is the simulator. Serve Handler.
type Sandbox struct {
	cfg Config
	hc  *http.Client

	mu       sync.Mutex
	msgs     []Message
	next     map[int64]int64 // message ids per chat
	chats    map[string]*bucket
	groups   map[string][]time.Time
	bots     map[string]*window
	stats    Stats
	webhooks map[string]webhook // by token
	updateID int64
	limited  []Limited
}

// Limited is one 429 the sandbox answered.
type Limited struct {
	ChatID     int64
	Why        string // chat, group or bot
	RetryAfter int
	At         time.Time
}

type webhook struct{ url, secret string }

type bucket struct {
	tokens float64
	at     time.Time
}

type window struct {
	start time.Time
	n     int
}

// New returns a sandbox.
func New(cfg Config) *Sandbox {
	if cfg.Burst <= 0 {
		cfg.Burst = 3
	}
	if cfg.ChatInterval <= 0 {
		cfg.ChatInterval = telegram.ChatInterval
	}
	if cfg.BotRate == 0 {
		cfg.BotRate = telegram.DefaultRate
	}
	if cfg.PaidRate <= 0 {
		cfg.PaidRate = telegram.PaidBroadcastRate
	}
	if cfg.GroupPerMinute <= 0 {
		cfg.GroupPerMinute = telegram.GroupPerMinute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Sandbox{cfg: cfg, hc: hc, next: map[int64]int64{}, chats: map[string]*bucket{}, groups: map[string][]time.Time{},
		bots: map[string]*window{}, webhooks: map[string]webhook{}}
}

// Handler serves the Bot API: POST /bot<token>/<method>.
func (s *Sandbox) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
		token, method, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 {
			writeErr(w, 404, "Not Found", nil)
			return
		}
		user, known := s.cfg.Bots[token]
		if !known {
			writeErr(w, 401, "Unauthorized", nil)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeErr(w, 400, "Bad Request: can't read the request", nil)
			return
		}
		var req telegram.Request
		if len(bytes.TrimSpace(body)) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				writeErr(w, 400, "Bad Request: can't parse JSON: "+err.Error(), nil)
				return
			}
		}
		switch method {
		case "getMe":
			writeOK(w, map[string]any{"id": botID(token), "is_bot": true, "first_name": user, "username": user})
		case "setWebhook":
			var wr struct {
				URL         string `json:"url"`
				SecretToken string `json:"secret_token"`
			}
			_ = json.Unmarshal(body, &wr)
			if wr.SecretToken != "" && !telegram.ValidSecret(wr.SecretToken) {
				writeErr(w, 400, "Bad Request: secret token contains unallowed characters", nil)
				return
			}
			s.mu.Lock()
			s.webhooks[token] = webhook{url: wr.URL, secret: wr.SecretToken}
			s.mu.Unlock()
			writeOK(w, true)
		case "sendMessage", "sendPhoto", "sendDocument":
			s.send(w, token, method, req)
		default:
			writeErr(w, 404, "Not Found: method not found", nil)
		}
	})
}

func botID(token string) int64 {
	id, _ := strconv.ParseInt(telegram.BotID(token), 10, 64)
	return id
}

func (s *Sandbox) send(w http.ResponseWriter, token, method string, req telegram.Request) {
	s.mu.Lock()
	s.stats.Requests++
	s.mu.Unlock()
	chat, err := strconv.ParseInt(req.ChatID, 10, 64)
	if err != nil {
		writeErr(w, 400, "Bad Request: chat not found", nil)
		return
	}
	text := req.Text
	if method != "sendMessage" {
		text = req.Caption
		media := map[string]string{"sendPhoto": req.Photo, "sendDocument": req.Document}[method]
		if !strings.HasPrefix(media, "https://") {
			writeErr(w, 400, "Bad Request: wrong file identifier/HTTP URL specified", nil)
			return
		}
	} else if strings.TrimSpace(text) == "" {
		writeErr(w, 400, "Bad Request: message text is empty", nil)
		return
	}
	switch {
	case s.cfg.Unknown != nil && s.cfg.Unknown(chat):
		writeErr(w, 400, "Bad Request: chat not found", nil)
		return
	case s.cfg.Blocked != nil && s.cfg.Blocked(chat):
		writeErr(w, 403, "Forbidden: bot was blocked by the user", nil)
		return
	case s.cfg.Deactivated != nil && s.cfg.Deactivated(chat):
		writeErr(w, 403, "Forbidden: user is deactivated", nil)
		return
	}
	visible, err := Parse(text, req.ParseMode)
	if err != nil {
		s.mu.Lock()
		s.stats.ParseFails++
		s.mu.Unlock()
		writeErr(w, 400, err.Error(), nil)
		return
	}
	limit := 4096
	if method != "sendMessage" {
		limit = 1024
	}
	if n := len([]rune(visible)); n > limit {
		what := "message is too long"
		if method != "sendMessage" {
			what = "message caption is too long"
		}
		writeErr(w, 400, "Bad Request: "+what, nil)
		return
	}
	for _, row := range buttons(req) {
		if !strings.HasPrefix(row.URL, "https://") && !strings.HasPrefix(row.URL, "http://") && !strings.HasPrefix(row.URL, "tg://") {
			writeErr(w, 400, "Bad Request: BUTTON_URL_INVALID", nil)
			return
		}
	}
	now := s.cfg.Now()
	s.mu.Lock()
	if ra, why := s.admit(token, chat, req.AllowPaidBroadcast, now); ra > 0 {
		s.stats.TooMany++
		s.limited = append(s.limited, Limited{ChatID: chat, Why: why, RetryAfter: ra, At: now})
		s.mu.Unlock()
		writeErr(w, 429, fmt.Sprintf("Too Many Requests: retry after %d", ra), map[string]any{"retry_after": ra})
		return
	}
	s.next[chat]++
	m := Message{Bot: telegram.BotID(token), ChatID: chat, MessageID: s.next[chat], Method: method, Text: text, Visible: visible,
		ParseMode: req.ParseMode, Buttons: buttons(req), Media: req.Photo + req.Document, Paid: req.AllowPaidBroadcast, At: now}
	s.msgs = append(s.msgs, m)
	s.stats.Accepted++
	s.mu.Unlock()
	chatType := "private"
	if chat < 0 {
		chatType = "group"
	}
	res := map[string]any{"message_id": m.MessageID, "date": now.Unix(), "chat": map[string]any{"id": chat, "type": chatType}}
	if method == "sendMessage" {
		res["text"] = visible
	} else {
		res["caption"] = visible
	}
	writeOK(w, res)
}

func buttons(req telegram.Request) []telegram.InlineButton {
	if req.ReplyMarkup == nil {
		return nil
	}
	var out []telegram.InlineButton
	for _, row := range req.ReplyMarkup.InlineKeyboard {
		out = append(out, row...)
	}
	return out
}

// admit applies the limits (s.mu held): the bot's per-second window, the group's
// per-minute window, the chat's token bucket; only an admitted message counts against
// them. It returns the retry_after of a refusal and which limit refused, or 0.
func (s *Sandbox) admit(token string, chat int64, paid bool, now time.Time) (int, string) {
	key := telegram.BotID(token) + "/" + strconv.FormatInt(chat, 10)
	bw := s.bots[token]
	if bw == nil || now.Sub(bw.start) >= time.Second {
		bw = &window{start: now.Truncate(time.Second)}
		s.bots[token] = bw
	}
	if s.cfg.BotRate > 0 {
		rate := s.cfg.BotRate
		if paid {
			rate = s.cfg.PaidRate
		}
		if float64(bw.n+1) > rate {
			return retryAfter(bw.start.Add(time.Second).Sub(now)), "bot"
		}
	}
	var ts []time.Time
	if chat < 0 {
		ts = s.groups[key]
		i := 0
		for i < len(ts) && now.Sub(ts[i]) >= time.Minute {
			i++
		}
		ts = ts[i:]
		s.groups[key] = ts
		if len(ts) >= s.cfg.GroupPerMinute {
			return retryAfter(ts[0].Add(time.Minute).Sub(now)), "group"
		}
	}
	b := s.chats[key]
	if b == nil {
		b = &bucket{tokens: float64(s.cfg.Burst), at: now}
		s.chats[key] = b
	}
	b.tokens = math.Min(float64(s.cfg.Burst), b.tokens+now.Sub(b.at).Seconds()/s.cfg.ChatInterval.Seconds())
	b.at = now
	if b.tokens < 1 {
		return retryAfter(time.Duration((1 - b.tokens) * float64(s.cfg.ChatInterval))), "chat"
	}
	b.tokens--
	bw.n++
	if chat < 0 {
		s.groups[key] = append(ts, now)
	}
	return 0, ""
}

func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

func writeOK(w http.ResponseWriter, result any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "result": result})
}

func writeErr(w http.ResponseWriter, code int, desc string, params map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	body := map[string]any{"ok": false, "error_code": code, "description": desc}
	if params != nil {
		body["parameters"] = params
	}
	_ = json.NewEncoder(w).Encode(body)
}

// Messages returns every accepted message, in order.
func (s *Sandbox) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// Limited returns every 429 the sandbox answered.
func (s *Sandbox) Limited() []Limited {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.limited)
}

// Stats returns the counts so far.
func (s *Sandbox) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Webhook returns the URL and secret token setWebhook set for a bot.
func (s *Sandbox) Webhook(token string) (url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.webhooks[token]
	return h.url, h.secret
}

// SetWebhook sets a bot's webhook as setWebhook does.
func (s *Sandbox) SetWebhook(token, url, secret string) {
	s.mu.Lock()
	s.webhooks[token] = webhook{url: url, secret: secret}
	s.mu.Unlock()
}

// Push delivers a text message from a user's private chat to the bot's webhook as an
// Update, with the secret token header; "/start <payload>" and "/stop" are commands as
// Telegram clients send them. It returns the update's body.
func (s *Sandbox) Push(ctx context.Context, token string, chatID int64, text string) ([]byte, error) {
	s.mu.Lock()
	h := s.webhooks[token]
	s.updateID++
	s.next[chatID]++
	uid, mid := s.updateID, s.next[chatID]
	now := s.cfg.Now()
	s.mu.Unlock()
	if h.url == "" {
		return nil, fmt.Errorf("telegram sandbox: no webhook set for bot %s", telegram.BotID(token))
	}
	msg := map[string]any{"message_id": mid, "date": now.Unix(), "text": text,
		"chat": map[string]any{"id": chatID, "type": "private"},
		"from": map[string]any{"id": chatID, "is_bot": false, "first_name": "User"}}
	if strings.HasPrefix(text, "/") {
		cmd, _, _ := strings.Cut(text, " ")
		msg["entities"] = []map[string]any{{"type": "bot_command", "offset": 0, "length": len([]rune(cmd))}}
	}
	body, _ := json.Marshal(map[string]any{"update_id": uid, "message": msg})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if h.secret != "" {
		req.Header.Set(telegram.SecretHeader, h.secret)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return body, fmt.Errorf("telegram sandbox: push update: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("telegram sandbox: webhook answered %s", resp.Status)
	}
	return body, nil
}
