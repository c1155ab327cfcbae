package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-dev/herald/internal/provhttp"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// DefaultBaseURL is the Bot API.
const DefaultBaseURL = "https://api.telegram.org"

// Config configures a Channel.
type Config struct {
	BaseURL    string       // default DefaultBaseURL; the sandbox's URL in dev and tests
	HTTPClient *http.Client // default DefaultHTTPClient()
}

// Channel sends through the Bot API. It implements dispatcher.Channel and is safe for
// concurrent use: make one per process. A sender's bot token and settings come with
// every send (dispatcher.Sender), so senders added while workers run need no handover.
type Channel struct {
	hc   *http.Client
	base string // BaseURL + "/bot"
}

var _ dispatcher.Channel = (*Channel)(nil)

// New returns a Channel for cfg.
func New(cfg Config) (*Channel, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if u, err := url.Parse(cfg.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("telegram: base URL %q: want an absolute http(s) URL", cfg.BaseURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = DefaultHTTPClient()
	}
	return &Channel{hc: cfg.HTTPClient, base: strings.TrimRight(cfg.BaseURL, "/") + "/bot"}, nil
}

// DefaultHTTPClient returns the client New uses when none is given: keep-alive, many idle
// connections to the one host, bounded timeouts.
func DefaultHTTPClient() *http.Client {
	return provhttp.Client()
}

// InlineButton is an inline keyboard button that opens a URL.
type InlineButton struct {
	Text string `json:"text"`
	URL  string `json:"url"`
}

// ReplyMarkup is an inline keyboard.
type ReplyMarkup struct {
	InlineKeyboard [][]InlineButton `json:"inline_keyboard"`
}

// LinkPreviewOptions turns the link preview off.
type LinkPreviewOptions struct {
	IsDisabled bool `json:"is_disabled,omitempty"`
}

// Request is one sendMessage, sendPhoto or sendDocument call's JSON body.
type Request struct {
	ChatID             string              `json:"chat_id"`
	Text               string              `json:"text,omitempty"`     // sendMessage
	Photo              string              `json:"photo,omitempty"`    // sendPhoto: an https URL
	Document           string              `json:"document,omitempty"` // sendDocument: an https URL
	Caption            string              `json:"caption,omitempty"`  // sendPhoto, sendDocument
	ParseMode          string              `json:"parse_mode,omitempty"`
	ReplyMarkup        *ReplyMarkup        `json:"reply_markup,omitempty"`
	LinkPreviewOptions *LinkPreviewOptions `json:"link_preview_options,omitempty"`
	AllowPaidBroadcast bool                `json:"allow_paid_broadcast,omitempty"`
}

// Method is the Bot API method the request calls.
func (r Request) Method() string {
	switch {
	case r.Photo != "":
		return "sendPhoto"
	case r.Document != "":
		return "sendDocument"
	}
	return "sendMessage"
}

// RequestOf maps a rendered message to its Bot API request: the text (or the caption
// of a photo or document), the parse mode, the buttons as an inline keyboard (one per
// row), the link preview, and paid broadcast from the bot's configuration.
func RequestOf(chatID string, r templates.Rendered, paid bool) Request {
	req := Request{ChatID: chatID, Text: r.Text, AllowPaidBroadcast: paid}
	if tg := r.Telegram; tg != nil {
		req.ParseMode = tg.ParseMode
		for _, b := range tg.Buttons {
			if req.ReplyMarkup == nil {
				req.ReplyMarkup = &ReplyMarkup{}
			}
			req.ReplyMarkup.InlineKeyboard = append(req.ReplyMarkup.InlineKeyboard, []InlineButton{{Text: b.Text, URL: b.URL}})
		}
		if tg.Photo != "" || tg.Document != "" {
			req.Photo, req.Document, req.Caption, req.Text = tg.Photo, tg.Document, r.Text, ""
		} else if tg.NoLinkPreview {
			req.LinkPreviewOptions = &LinkPreviewOptions{IsDisabled: true}
		}
	}
	return req
}

// Send sends one rendered message from bot s to chat m.To and classifies a refusal by
// its error into a *dispatcher.SendError. The provider id is "<chat_id>:<message_id>".
func (c *Channel) Send(ctx context.Context, s dispatcher.Sender, m dispatcher.Message) (string, error) {
	cfg, err := ConfigOf(s)
	if err != nil {
		return "", &dispatcher.SendError{Action: dispatcher.ActionPauseAccount, Err: err}
	}
	res, err := c.SendRequest(ctx, cfg.Token, RequestOf(m.To, m.Rendered, cfg.PaidBroadcast))
	if err == nil {
		return res.ChatID + ":" + strconv.FormatInt(res.MessageID, 10), nil
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return "", err
	}
	cl := Classify(err)
	se := &dispatcher.SendError{Code: cl.Code, Retryable: cl.Retryable, Action: cl.Action, Signal: cl.Signal, Err: err}
	if ae, ok := errors.AsType[*APIError](err); ok && ae.RetryAfter > 0 && cl.Retryable {
		se.RetryAfter = ae.RetryAfter
	}
	return "", se
}

// Result is an accepted message.
type Result struct {
	ChatID    string
	MessageID int64
}

// APIError is a Bot API error answer ({"ok":false,"error_code","description",
// "parameters"}), or a refusal Herald makes before sending under the error Telegram
// would answer (Before). Branch on Classify.
type APIError struct {
	Code            int
	Description     string
	RetryAfter      time.Duration // parameters.retry_after
	MigrateToChatID int64         // parameters.migrate_to_chat_id
	Before          bool          // refused by Herald before any request
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("telegram: error %d: %s", e.Code, e.Description)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.Before {
		s += " (refused before sending)"
	}
	return s
}

// TransportError is a failure below the Bot API: no answer, or an answer that is not a
// Bot API body. Retryable; the message may or may not have been sent.
type TransportError struct {
	HTTPStatus int
	Body       string
	Err        error
}

func (e *TransportError) Error() string {
	if e.HTTPStatus != 0 {
		return fmt.Sprintf("telegram transport: HTTP %d: %v: %q", e.HTTPStatus, e.Err, e.Body)
	}
	return fmt.Sprintf("telegram transport: %v", e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Classify maps an error of SendRequest to what Herald does.
func Classify(err error) Class {
	if err == nil {
		return Class{Action: dispatcher.ActionNone}
	}
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ClassifyCode(ae.Code, ae.Description)
	}
	transport := Class{Action: dispatcher.ActionTransport, Retryable: true, Code: CodeTransport}
	if _, ok := errors.AsType[*TransportError](err); ok {
		return transport
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return transport
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return transport
	}
	return Class{Action: dispatcher.ActionFailJob, Code: CodeTransport}
}

// check refuses, before any request, what Telegram would refuse for the message itself:
// an empty or non-UTF-8 text, or a plain text (caption) longer than Telegram takes (with
// a parse mode Telegram counts the parsed text, and answers "message is too long").
func check(req Request) error {
	text, limit := req.Text, templates.MaxTelegramText
	if req.Method() != "sendMessage" {
		text, limit = req.Caption, templates.MaxTelegramCaption
	}
	switch n := utf8.RuneCountInString(text); {
	case req.Method() == "sendMessage" && strings.TrimSpace(text) == "":
		return &APIError{Code: 400, Description: "Bad Request: message text is empty", Before: true}
	case !utf8.ValidString(text):
		return &APIError{Code: 400, Description: "Bad Request: text must be encoded in UTF-8", Before: true}
	case n > limit && req.ParseMode == "":
		what := "message is too long"
		if req.Method() != "sendMessage" {
			what = "message caption is too long"
		}
		return &APIError{Code: 400, Description: fmt.Sprintf("Bad Request: %s (%d characters; the limit is %d)", what, n, limit), Before: true}
	case !ValidChatID(req.ChatID):
		return &APIError{Code: 400, Description: fmt.Sprintf("Bad Request: chat not found (%q is not a chat id)", req.ChatID), Before: true}
	}
	return nil
}

// SendRequest calls the request's method for the bot with token. Errors are *APIError
// (see Classify) or *TransportError.
func (c *Channel) SendRequest(ctx context.Context, token string, req Request) (Result, error) {
	if err := check(req); err != nil {
		return Result{}, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Result{}, fmt.Errorf("telegram: encode request: %w", err)
	}
	var res struct {
		MessageID int64 `json:"message_id"`
		Chat      struct {
			ID int64 `json:"id"`
		} `json:"chat"`
	}
	if err := c.Call(ctx, token, req.Method(), body, &res); err != nil {
		return Result{}, err
	}
	chat := req.ChatID
	if res.Chat.ID != 0 {
		chat = strconv.FormatInt(res.Chat.ID, 10)
	}
	return Result{ChatID: chat, MessageID: res.MessageID}, nil
}

// Call posts a JSON body to a Bot API method and decodes its result into out.
func (c *Channel) Call(ctx context.Context, token, method string, body []byte, out any) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+token+"/"+method, bytes.NewReader(body))
	if err != nil {
		return &TransportError{Err: err}
	}
	hreq.Header["Content-Type"] = []string{"application/json"}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return &TransportError{Err: redact(err, token)}
	}
	b, rerr := provhttp.ReadAnswer(resp)
	if rerr != nil {
		return &TransportError{HTTPStatus: resp.StatusCode, Err: rerr}
	}
	return decodeReply(resp.StatusCode, b, out)
}

// redact removes the bot token from a transport error (url.Error quotes the URL).
func redact(err error, token string) error {
	if token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return &url.Error{Op: ue.Op, URL: strings.ReplaceAll(ue.URL, token, BotID(token)+":…"), Err: ue.Err}
	}
	return errors.New(strings.ReplaceAll(err.Error(), token, BotID(token)+":…"))
}

// reply is a Bot API answer.
type reply struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  *struct {
		RetryAfter      int64 `json:"retry_after"`
		MigrateToChatID int64 `json:"migrate_to_chat_id"`
	} `json:"parameters"`
}

func decodeReply(status int, b []byte, out any) error {
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		return &TransportError{HTTPStatus: status, Body: provhttp.Snippet(b), Err: err}
	}
	if r.OK {
		if out != nil && len(r.Result) > 0 {
			if err := json.Unmarshal(r.Result, out); err != nil {
				return &TransportError{HTTPStatus: status, Body: provhttp.Snippet(b), Err: err}
			}
		}
		return nil
	}
	if r.ErrorCode == 0 {
		return &TransportError{HTTPStatus: status, Body: provhttp.Snippet(b), Err: errors.New("an error answer without error_code")}
	}
	ae := &APIError{Code: r.ErrorCode, Description: r.Description}
	if p := r.Parameters; p != nil {
		if p.RetryAfter > 0 {
			ae.RetryAfter = min(time.Duration(p.RetryAfter)*time.Second, maxRetryAfter)
		}
		ae.MigrateToChatID = p.MigrateToChatID
	}
	if ae.Code == 429 && ae.RetryAfter == 0 {
		ae.RetryAfter = retryBase
	}
	return ae
}

// SetWebhook points the bot's updates at url with the secret token Telegram will send in
// SecretHeader (setWebhook; Herald's secret is WebhookSecret).
func (c *Channel) SetWebhook(ctx context.Context, token, url, secret string) error {
	body, err := json.Marshal(map[string]any{"url": url, "secret_token": secret, "allowed_updates": []string{"message"}})
	if err != nil {
		return err
	}
	return c.Call(ctx, token, "setWebhook", body, nil)
}

// Me is the bot getMe describes.
type Me struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
}

// GetMe returns the bot's id and username.
func (c *Channel) GetMe(ctx context.Context, token string) (Me, error) {
	var me Me
	err := c.Call(ctx, token, "getMe", nil, &me)
	return me, err
}
