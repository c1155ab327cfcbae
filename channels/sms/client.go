package sms

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/herald-dev/herald/internal/provhttp"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// DefaultBaseURL is Twilio's REST API.
const DefaultBaseURL = "https://api.twilio.com"

// APIVersion is the version segment of the Messages API path.
const APIVersion = "2010-04-01"

// Config configures a Channel.
type Config struct {
	BaseURL string // default DefaultBaseURL; the sandbox's URL in dev and tests
	// PublicURL is Herald's public base URL as Twilio reaches it (https://herald.example.com):
	// every message's StatusCallback is PublicURL + StatusPath + "?cb=<callback data>".
	// Required.
	PublicURL string
	// Senders holds the SMS configuration of each Herald sender, keyed by
	// dispatcher.Sender.ID. A send from a sender missing here is refused with
	// ActionPauseAccount (ErrUnknownSender).
	Senders    map[string]SenderConfig
	HTTPClient *http.Client // default DefaultHTTPClient()
}

// Channel sends SMS through Twilio's Messages API (or the sandbox, which speaks it). It
// implements dispatcher.Channel and is safe for concurrent use: make one per process.
type Channel struct {
	hc      *http.Client
	base    string // BaseURL + "/2010-04-01/Accounts/"
	public  string
	mu      sync.RWMutex
	senders map[string]*sender
	tokens  map[string]string // account SID → auth token, for webhook verification
	bufs    sync.Pool
}

// sender is a SenderConfig with its request URL and Authorization header precomputed.
type sender struct {
	cfg      SenderConfig
	url      string
	auth     string
	fromPart string // "&From=…" or "&MessagingServiceSid=…", escaped
	validity string // "&ValidityPeriod=N" or ""
}

var _ dispatcher.Channel = (*Channel)(nil)

// New returns a Channel for cfg, or an error naming what is wrong with it.
func New(cfg Config) (*Channel, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if u, err := url.Parse(cfg.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sms: base URL %q: want an absolute http(s) URL", cfg.BaseURL)
	}
	if u, err := url.Parse(cfg.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("sms: public URL %q: want Herald's absolute http(s) base URL as Twilio reaches it, without a query", cfg.PublicURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = DefaultHTTPClient()
	}
	c := &Channel{
		hc:      cfg.HTTPClient,
		base:    strings.TrimRight(cfg.BaseURL, "/") + "/" + APIVersion + "/Accounts/",
		public:  strings.TrimRight(cfg.PublicURL, "/"),
		senders: make(map[string]*sender, len(cfg.Senders)),
		tokens:  make(map[string]string, len(cfg.Senders)),
		bufs:    sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
	for id, sc := range cfg.Senders {
		if err := c.SetSender(id, sc); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// SetSender adds or replaces the configuration of Herald sender id (senders are added
// while workers run: the registry in Redis is the source).
func (c *Channel) SetSender(id string, sc SenderConfig) error {
	if err := sc.Validate(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok, ok := c.tokens[sc.AccountSID]; ok && tok != sc.AuthToken {
		if old, had := c.senders[id]; !had || old.cfg.AccountSID != sc.AccountSID {
			return fmt.Errorf("sms sender %s: account %s is configured with two different auth tokens", id, sc.AccountSID)
		}
	}
	c.tokens[sc.AccountSID] = sc.AuthToken
	sc = sc.withDefaults()
	s := &sender{
		cfg:  sc,
		url:  c.base + url.PathEscape(sc.AccountSID) + "/Messages.json",
		auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(sc.AccountSID+":"+sc.AuthToken)),
	}
	if sc.From != "" {
		s.fromPart = "&From=" + url.QueryEscape(sc.From)
	} else {
		s.fromPart = "&MessagingServiceSid=" + url.QueryEscape(sc.MessagingServiceSID)
	}
	if sc.ValidityPeriod > 0 {
		s.validity = "&ValidityPeriod=" + strconv.FormatInt(int64(sc.ValidityPeriod/time.Second), 10)
	}
	c.senders[id] = s
	return nil
}

// DefaultHTTPClient returns the client New uses when none is given: keep-alive, up to
// 256 idle connections per host (as the WhatsApp client), bounded dial, TLS and
// response-header timeouts.
func DefaultHTTPClient() *http.Client {
	return provhttp.Client()
}

// SenderConfig returns the configuration of Herald sender id, with defaults filled.
func (c *Channel) SenderConfig(id string) (SenderConfig, bool) {
	c.mu.RLock()
	s, ok := c.senders[id]
	c.mu.RUnlock()
	if !ok {
		return SenderConfig{}, false
	}
	return s.cfg, true
}

// AuthToken returns the auth token of a configured Twilio account: the key its webhooks
// are signed with.
func (c *Channel) AuthToken(accountSID string) (string, bool) {
	c.mu.RLock()
	tok, ok := c.tokens[accountSID]
	c.mu.RUnlock()
	return tok, ok
}

// Verify checks a webhook (status callback or inbound message) against the auth token of
// the account it names (its AccountSid parameter): see VerifySignature. fullURL is the
// URL as Twilio requested it (FullURL).
func (c *Channel) Verify(fullURL string, form url.Values, header string) error {
	tok, ok := c.AuthToken(form.Get("AccountSid"))
	if !ok {
		return fmt.Errorf("verify webhook signature: %w: AccountSid %q is not a configured account", ErrSignatureMismatch, form.Get("AccountSid"))
	}
	return VerifySignature(tok, fullURL, form, header)
}

// Send sends one rendered message (m.Rendered.Text) from sender s and classifies a
// refusal by its Twilio code into a *dispatcher.SendError. The message's StatusCallback
// carries m.CallbackData (none is set without callback data: its statuses could not be
// attributed).
func (c *Channel) Send(ctx context.Context, s dispatcher.Sender, m dispatcher.Message) (string, error) {
	req := Request{To: m.To, Body: m.Rendered.Text}
	if m.CallbackData != "" {
		req.StatusCallback = StatusCallbackURL(c.public, m.CallbackData)
	}
	res, err := c.SendMessage(ctx, s.ID, req)
	if err == nil {
		return res.SID, nil
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return "", err
	}
	if errors.Is(err, ErrUnknownSender) {
		return "", &dispatcher.SendError{Action: dispatcher.ActionPauseAccount, Err: err}
	}
	cl := Classify(err)
	se := &dispatcher.SendError{Code: cl.Code, Retryable: cl.Retryable, Action: cl.Action, Err: err}
	if cl.SlowSender {
		se.Signal = throttle.SignalSlowSender // the governor lowers the sender's pace
	}
	switch {
	case !cl.Retryable:
	case retryAfterOf(err) > 0: // Twilio's hint wins
		se.RetryAfter = retryAfterOf(err)
	case queueCode(cl.Code): // a full queue drains at its own pace
		se.RetryAfter = RetryAfter(cl.Code, 1)
	} // else 0: the worker's back-off
	return "", se
}

// Request is one message to send.
type Request struct {
	To             string // E.164
	Body           string
	StatusCallback string // "" for none
}

// Result is an accepted send. Accepted is not delivered: the outcome arrives later as
// status callbacks naming SID.
type Result struct {
	SID         string // SM…
	Status      string // queued, or accepted when sent through a Messaging Service
	NumSegments int    // 0 until a Messaging Service picked the number
	From        string
}

// APIError is a Twilio error body ({"code","message","more_info","status"}), or a
// refusal Herald makes before sending under the code Twilio would answer (HTTPStatus 0).
// Branch on Code (see Classify).
type APIError struct {
	HTTPStatus int
	Code       int
	Message    string
	MoreInfo   string
	RetryAfter time.Duration // the Retry-After header, when sent
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sms: twilio error %d", e.Code)
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.HTTPStatus)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.MoreInfo != "" {
		b.WriteString(" [")
		b.WriteString(e.MoreInfo)
		b.WriteString("]")
	}
	return b.String()
}

// TransportError is a failure below the Messages API: the request did not reach Twilio,
// no answer came back, or the answer was not a Twilio body (5xx pages, garbage). It is
// retryable; the message may or may not have been accepted (in doubt), so the status
// callback settles it.
type TransportError struct {
	HTTPStatus int    // 0 when no response was read
	Body       string // the first bytes of an unexpected body
	Err        error
	RetryAfter time.Duration
}

func (e *TransportError) Error() string {
	switch {
	case e.HTTPStatus != 0 && e.Err != nil:
		return fmt.Sprintf("sms transport: HTTP %d: %v: %q", e.HTTPStatus, e.Err, e.Body)
	case e.HTTPStatus != 0:
		return fmt.Sprintf("sms transport: HTTP %d: %q", e.HTTPStatus, e.Body)
	default:
		return fmt.Sprintf("sms transport: %v", e.Err)
	}
}

func (e *TransportError) Unwrap() error { return e.Err }

// Classify maps an error of SendMessage to what Herald does: an *APIError by its code
// (an unknown code on an HTTP 5xx answer is retried as transport), a *TransportError,
// network or context error is ActionTransport (retryable), anything else fails the job.
func Classify(err error) Class {
	if err == nil {
		return Class{Action: dispatcher.ActionNone}
	}
	transport := Class{Action: dispatcher.ActionTransport, Retryable: true, Code: CodeTransport}
	if ae, ok := errors.AsType[*APIError](err); ok {
		if _, known := codeIndex[ae.Code]; !known && ae.HTTPStatus >= 500 {
			transport.Code = ae.Code
			return transport
		}
		return ClassifyCode(ae.Code)
	}
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

func retryAfterOf(err error) time.Duration {
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.RetryAfter
	}
	if te, ok := errors.AsType[*TransportError](err); ok {
		return te.RetryAfter
	}
	return 0
}

// SendMessage posts one message from Herald sender senderID. Errors are *APIError
// (Twilio refused it; see Classify), *TransportError (retryable, in doubt), or wrap
// ErrUnknownSender.
func (c *Channel) SendMessage(ctx context.Context, senderID string, req Request) (Result, error) {
	c.mu.RLock()
	s, ok := c.senders[senderID]
	c.mu.RUnlock()
	if !ok {
		return Result{}, fmt.Errorf("sms send from sender %q: %w", senderID, ErrUnknownSender)
	}
	if err := checkBody(req.Body); err != nil {
		return Result{}, err
	}
	body := c.getBuf()
	body.WriteString("To=")
	body.WriteString(url.QueryEscape(req.To))
	body.WriteString(s.fromPart)
	body.WriteString("&Body=")
	body.WriteString(url.QueryEscape(req.Body))
	if req.StatusCallback != "" {
		body.WriteString("&StatusCallback=")
		body.WriteString(url.QueryEscape(req.StatusCallback))
	}
	body.WriteString(s.validity)
	// A *bytes.Reader body lets the transport write headers and body in one flush.
	payload := bytes.Clone(body.Bytes())
	c.putBuf(body)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(payload))
	if err != nil {
		return Result{}, &TransportError{Err: err}
	}
	hreq.Header["Authorization"] = []string{s.auth}
	hreq.Header["Content-Type"] = []string{"application/x-www-form-urlencoded"}
	hreq.Header["Accept"] = []string{"application/json"}

	resp, err := c.hc.Do(hreq)
	if err != nil {
		return Result{}, &TransportError{Err: err}
	}
	out := c.getBuf()
	defer c.putBuf(out)
	_, rerr := out.ReadFrom(io.LimitReader(resp.Body, provhttp.MaxAnswer))
	// Drain what is left (bounded) so the connection goes back to the pool.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if rerr != nil {
		return Result{}, &TransportError{HTTPStatus: resp.StatusCode, Err: rerr}
	}
	return decodeReply(resp.StatusCode, resp.Header.Get("Retry-After"), out.Bytes(), time.Now())
}

// checkBody refuses, before any request, a body Twilio would refuse: empty or not UTF-8
// (21602), or longer than templates.MaxSMSChars characters (21617). The *APIError
// carries Twilio's code and no HTTP status.
func checkBody(body string) error {
	switch n := utf8.RuneCountInString(body); {
	case body == "":
		return &APIError{Code: 21602, Message: "Message body is required (refused before sending)"}
	case !utf8.ValidString(body):
		return &APIError{Code: 21602, Message: "Message body is not valid UTF-8 (refused before sending)"}
	case n > templates.MaxSMSChars:
		return &APIError{Code: 21617, Message: fmt.Sprintf("The message body has %d characters, more than the %d a concatenated SMS may hold (refused before sending)", n, templates.MaxSMSChars)}
	}
	return nil
}

// messageReply holds the fields of a Message resource or a Twilio error body that
// SendMessage reads.
type messageReply struct {
	SID         string          `json:"sid"`
	Status      json.RawMessage `json:"status"` // a string in a Message, the HTTP status in an error
	NumSegments string          `json:"num_segments"`
	From        string          `json:"from"`
	// Error bodies.
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
}

func decodeReply(status int, retryAfter string, b []byte, now time.Time) (Result, error) {
	ra := parseRetryAfter(retryAfter, now)
	var r messageReply
	if err := json.Unmarshal(b, &r); err != nil {
		if status == http.StatusTooManyRequests {
			return Result{}, &APIError{HTTPStatus: status, Code: 20429, Message: "Too Many Requests", RetryAfter: ra}
		}
		return Result{}, &TransportError{HTTPStatus: status, Body: provhttp.Snippet(b), Err: err, RetryAfter: ra}
	}
	if status >= 200 && status <= 299 && r.SID != "" {
		n, _ := strconv.Atoi(r.NumSegments)
		var st string
		_ = json.Unmarshal(r.Status, &st)
		return Result{SID: r.SID, Status: st, NumSegments: n, From: r.From}, nil
	}
	if r.Code == 0 && status == http.StatusTooManyRequests {
		r.Code, r.Message = 20429, "Too Many Requests"
	}
	if r.Code != 0 && (status < 200 || status > 299) {
		return Result{}, &APIError{HTTPStatus: status, Code: r.Code, Message: r.Message, MoreInfo: r.MoreInfo, RetryAfter: ra}
	}
	return Result{}, &TransportError{HTTPStatus: status, Body: provhttp.Snippet(b), Err: errors.New("unexpected answer without message sid or error code"), RetryAfter: ra}
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

func (c *Channel) getBuf() *bytes.Buffer {
	b := c.bufs.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func (c *Channel) putBuf(b *bytes.Buffer) {
	if b.Cap() > 64<<10 {
		return // do not pin rare large buffers
	}
	c.bufs.Put(b)
}
