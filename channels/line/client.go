package line

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-dev/herald/internal/provhttp"

	"github.com/herald-dev/herald/dispatcher"
)

// ChannelName is the channel name LINE campaigns, senders and reports carry.
const ChannelName = "line"

// DefaultBaseURL is the Messaging API.
const DefaultBaseURL = "https://api.line.me"

// API paths.
const (
	PushPath      = "/v2/bot/message/push"
	MulticastPath = "/v2/bot/message/multicast"
	QuotaPath     = "/v2/bot/message/quota"
	ConsumedPath  = "/v2/bot/message/quota/consumption"
)

// Limits of the Messaging API.
const (
	MaxMulticast  = 500     // user ids in one multicast request
	MaxMessages   = 5       // message objects in one request
	MaxBody       = 2 << 20 // bytes of a request body (413 above)
	MaxTextChars  = 5000    // characters of a text message
	PushRate      = 2000    // push requests per second per channel
	MulticastRate = 200     // multicast requests per second per channel
)

// Header names.
const (
	RetryKeyHeader          = "X-Line-Retry-Key"
	RequestIDHeader         = "X-Line-Request-Id"
	AcceptedRequestIDHeader = "X-Line-Accepted-Request-Id"
)

// Config configures a Channel.
type Config struct {
	BaseURL    string       // default DefaultBaseURL; the sandbox's URL in dev and tests
	HTTPClient *http.Client // default DefaultHTTPClient()
	Now        func() time.Time
}

// Channel sends through the LINE Messaging API (or the sandbox, which speaks it). It
// implements dispatcher.Channel (push) and dispatcher.BatchChannel (multicast) and is
// safe for concurrent use: make one per process. A send authenticates with the
// dispatcher.Sender's Token, the channel access token.
type Channel struct {
	hc   *http.Client
	base string
	now  func() time.Time

	mu      sync.RWMutex
	secrets map[string]string // Herald sender id → channel secret (webhook signing key)
}

var (
	_ dispatcher.Channel      = (*Channel)(nil)
	_ dispatcher.BatchChannel = (*Channel)(nil)
)

// New returns a Channel for cfg, or an error naming what is wrong with it.
func New(cfg Config) (*Channel, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if u, err := url.Parse(cfg.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("line: base URL %q: want an absolute http(s) URL", cfg.BaseURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = DefaultHTTPClient()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Channel{hc: cfg.HTTPClient, base: strings.TrimRight(cfg.BaseURL, "/"), now: cfg.Now, secrets: map[string]string{}}, nil
}

// DefaultHTTPClient returns the client New uses when none is given: keep-alive, up to
// 256 idle connections per host, bounded dial, TLS and response-header timeouts.
func DefaultHTTPClient() *http.Client {
	return provhttp.Client()
}

// SetSecret registers the channel secret of Herald sender id: the key LINE signs that
// channel's webhooks with. An empty secret removes it.
func (c *Channel) SetSecret(senderID, secret string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if secret == "" {
		delete(c.secrets, senderID)
		return
	}
	c.secrets[senderID] = secret
}

// Secrets returns how many channel secrets are registered.
func (c *Channel) Secrets() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.secrets)
}

// RetryKey is the X-Line-Retry-Key of the message with callback data cb
// ("campaign:contact[:v.variant]"): a UUID (version 5 layout, SHA-256 based) derived
// from the campaign and contact only, so every retry of the job — after a timeout, a
// 5xx or a crash — carries the same key, and LINE takes it once.
func RetryKey(cb string) string {
	if campaign, contact, ok := dispatcher.ParseCallbackData(cb); ok {
		cb = dispatcher.CallbackData(campaign, contact)
	}
	return uuidOf("herald/line/push\x00" + cb)
}

// BatchRetryKey is the X-Line-Retry-Key of a multicast request to the messages with
// callback data cbs, in this order: the same members in the same order give the same
// key (SendBatch sorts them), so a re-sent batch is a 409 and never a second message.
func BatchRetryKey(cbs []string) string {
	h := sha256.New()
	h.Write([]byte("herald/line/multicast\x00"))
	for _, cb := range cbs {
		if campaign, contact, ok := dispatcher.ParseCallbackData(cb); ok {
			cb = dispatcher.CallbackData(campaign, contact)
		}
		h.Write([]byte(cb))
		h.Write([]byte{0})
	}
	return uuidFromSum(h.Sum(nil))
}

func uuidOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return uuidFromSum(sum[:])
}

func uuidFromSum(sum []byte) string {
	var u [16]byte
	copy(u[:], sum)
	u[6] = u[6]&0x0f | 0x50 // version 5 layout (name-based)
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// SentMessage is one message object LINE accepted in a push.
type SentMessage struct {
	ID         string `json:"id"`
	QuoteToken string `json:"quoteToken,omitempty"`
}

// Result is an accepted request.
type Result struct {
	RequestID    string        // x-line-request-id; for a 409, the accepted request's id
	SentMessages []SentMessage // push only
	// Duplicate: LINE had accepted this retry key before (409); nothing was sent now.
	Duplicate bool
}

// MessageID is the push's provider id: its first message's id, else the request id.
func (r Result) MessageID() string {
	if len(r.SentMessages) > 0 && r.SentMessages[0].ID != "" {
		return r.SentMessages[0].ID
	}
	return r.RequestID
}

// Detail is one entry of an error body's details.
type Detail struct {
	Message  string `json:"message"`
	Property string `json:"property"`
}

// APIError is a Messaging API error answer ({"message","details":[…]}), or a refusal
// Herald makes before sending under the status LINE would answer (RequestID "").
type APIError struct {
	Status    int
	Message   string
	Details   []Detail
	RequestID string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line: HTTP %d: %s", e.Status, e.Message)
	for _, d := range e.Details {
		fmt.Fprintf(&b, "; %s: %s", d.Property, d.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request %s)", e.RequestID)
	}
	return b.String()
}

func (e *APIError) properties() []string {
	out := make([]string, 0, len(e.Details))
	for _, d := range e.Details {
		out = append(out, d.Property)
	}
	return out
}

// TransportError is a failure below the Messaging API: no answer, or one that is not a
// Messaging API body. Retryable; the request may or may not have been accepted, so the
// retry carries the same retry key.
type TransportError struct {
	Status int
	Body   string
	Err    error
}

func (e *TransportError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("line transport: HTTP %d: %v: %q", e.Status, e.Err, e.Body)
	}
	return fmt.Sprintf("line transport: %v", e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Classify maps an error of Push or Multicast to what Herald does.
func Classify(err error) Class {
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ClassifyStatus(ae.Status, ae.Message, ae.properties())
	}
	if err == nil {
		return Class{Action: dispatcher.ActionNone}
	}
	transport := Class{Action: dispatcher.ActionTransport, Retryable: true}
	if te, ok := errors.AsType[*TransportError](err); ok {
		transport.Status = te.Status
		return transport
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return transport
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return transport
	}
	return Class{Action: dispatcher.ActionFailJob}
}

// sendError turns an error of Push or Multicast into the core's terms.
func (c *Channel) sendError(err error) *dispatcher.SendError {
	cl := Classify(err)
	se := &dispatcher.SendError{Code: cl.Status, Retryable: cl.Retryable, Action: cl.Action, Signal: cl.Signal, Err: err}
	switch {
	case cl.Status == http.StatusTooManyRequests && cl.Action == dispatcher.ActionPauseSender:
		se.RetryAfter = NextMonth(c.now()).Sub(c.now()) // the quota resets then
	case cl.Status == http.StatusTooManyRequests:
		se.RetryAfter = time.Second // a full rate window; LINE sends no Retry-After
	}
	return se
}

// Send pushes one rendered message to m.To (a LINE user id) from sender s, with the
// X-Line-Retry-Key of m's (campaign, contact). The provider id is LINE's id of the first
// message object; a 409 (the key was accepted before) is a success with the accepted
// request's message id.
func (c *Channel) Send(ctx context.Context, s dispatcher.Sender, m dispatcher.Message) (string, error) {
	msgs, err := Messages(m.Rendered)
	if err != nil {
		return "", c.sendError(err)
	}
	key := RetryKey(m.CallbackData)
	if m.CallbackData == "" {
		key = uuidOf(fmt.Sprintf("herald/line/adhoc\x00%s\x00%d", m.To, c.now().UnixNano()))
	}
	res, err := c.Push(ctx, s.Token, key, m.To, msgs)
	if err == nil {
		return res.MessageID(), nil
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return "", err
	}
	return "", c.sendError(err)
}

// MaxBatch is the most messages one SendBatch call takes (a multicast's user ids).
func (c *Channel) MaxBatch() int { return MaxMulticast }

// BatchKey is what messages must share to go in one multicast request: LINE sends the
// same message objects to every user id, so the rendered content, whole.
func (c *Channel) BatchKey(m dispatcher.Message) string {
	b, _ := json.Marshal(m.Rendered)
	return string(b)
}

// SendBatch multicasts ms (whose BatchKey is the same; at most MaxBatch) from sender s:
// one request per 500 user ids and under 2 MB, with the X-Line-Retry-Key of its exact
// members (sorted by callback data, so a re-sent batch carries the same key). The i-th
// result is ms[i]'s: LINE gives multicast no per-user message ids, so each contact's
// provider id is "<request id>:<index in the request>". A 400 naming bad user ids
// ("to[3]") fails those as undeliverable and sends the rest again without them.
func (c *Channel) SendBatch(ctx context.Context, s dispatcher.Sender, ms []dispatcher.Message) []dispatcher.BatchResult {
	out := make([]dispatcher.BatchResult, len(ms))
	if len(ms) == 0 {
		return out
	}
	msgs, err := Messages(ms[0].Rendered)
	if err != nil {
		se := c.sendError(err)
		for i := range out {
			out[i].Err = se
		}
		return out
	}
	order := make([]int, len(ms))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(ms[a].CallbackData, ms[b].CallbackData) })
	c.multicast(ctx, s, ms, order, msgs, out, 0)
	return out
}

// multicast sends the members idx of ms (in that order), splitting what one request
// cannot hold, and fills their results.
func (c *Channel) multicast(ctx context.Context, s dispatcher.Sender, ms []dispatcher.Message, idx []int, msgs []json.RawMessage, out []dispatcher.BatchResult, depth int) {
	if len(idx) == 0 {
		return
	}
	if len(idx) > MaxMulticast {
		c.multicast(ctx, s, ms, idx[:MaxMulticast], msgs, out, depth)
		c.multicast(ctx, s, ms, idx[MaxMulticast:], msgs, out, depth)
		return
	}
	to := make([]string, len(idx))
	cbs := make([]string, len(idx))
	for i, j := range idx {
		to[i], cbs[i] = ms[j].To, ms[j].CallbackData
	}
	body := multicastBody(to, msgs)
	if len(body) > MaxBody && len(idx) > 1 {
		h := len(idx) / 2
		c.multicast(ctx, s, ms, idx[:h], msgs, out, depth)
		c.multicast(ctx, s, ms, idx[h:], msgs, out, depth)
		return
	}
	res, err := c.post(ctx, MulticastPath, s.Token, BatchRetryKey(cbs), body)
	if err == nil {
		for i, j := range idx {
			out[j].ProviderID = res.RequestID + ":" + strconv.Itoa(i)
		}
		return
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		for _, j := range idx {
			out[j].Err = err
		}
		return
	}
	// A 400 naming user ids: those are undeliverable, the rest goes again without them.
	if ae, ok := errors.AsType[*APIError](err); ok && ae.Status == http.StatusBadRequest && depth < 2 {
		bad := map[int]bool{}
		for _, d := range ae.Details {
			if n, ok := toIndex(d.Property); ok && n < len(idx) {
				bad[n] = true
			}
		}
		if len(bad) > 0 && len(bad) == len(ae.Details) {
			var rest []int
			for i, j := range idx {
				if bad[i] {
					out[j].Err = c.sendError(&APIError{Status: ae.Status, Message: ae.Message, Details: []Detail{{Property: "to", Message: "invalid user id"}}, RequestID: ae.RequestID})
				} else {
					rest = append(rest, j)
				}
			}
			c.multicast(ctx, s, ms, rest, msgs, out, depth+1)
			return
		}
	}
	se := c.sendError(err)
	for _, j := range idx {
		out[j].Err = se
	}
}

// toIndex reads "to[3]".
func toIndex(p string) (int, bool) {
	if !strings.HasPrefix(p, "to[") || !strings.HasSuffix(p, "]") {
		return 0, false
	}
	n, err := strconv.Atoi(p[3 : len(p)-1])
	return n, err == nil && n >= 0
}

func multicastBody(to []string, msgs []json.RawMessage) []byte {
	b, _ := json.Marshal(struct {
		To       []string          `json:"to"`
		Messages []json.RawMessage `json:"messages"`
	}{to, msgs})
	return b
}

// Push sends msgs (message objects, at most 5) to one user id with retryKey. A 409 for
// an accepted key is a Result with Duplicate set.
func (c *Channel) Push(ctx context.Context, token, retryKey, to string, msgs []json.RawMessage) (Result, error) {
	b, _ := json.Marshal(struct {
		To       string            `json:"to"`
		Messages []json.RawMessage `json:"messages"`
	}{to, msgs})
	return c.post(ctx, PushPath, token, retryKey, b)
}

// Multicast sends msgs to up to 500 user ids with retryKey (no splitting: SendBatch
// splits). A 409 for an accepted key is a Result with Duplicate set.
func (c *Channel) Multicast(ctx context.Context, token, retryKey string, to []string, msgs []json.RawMessage) (Result, error) {
	return c.post(ctx, MulticastPath, token, retryKey, multicastBody(to, msgs))
}

func (c *Channel) post(ctx context.Context, path, token, retryKey string, body []byte) (Result, error) {
	if len(body) > MaxBody {
		return Result{}, &APIError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("the request body is %d bytes, over the 2 MB LINE accepts (refused before sending)", len(body))}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return Result{}, &TransportError{Err: err}
	}
	req.Header["Authorization"] = []string{"Bearer " + token}
	req.Header["Content-Type"] = []string{"application/json"}
	if retryKey != "" {
		req.Header[RetryKeyHeader] = []string{retryKey}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Result{}, &TransportError{Err: err}
	}
	b, err := provhttp.ReadAnswer(resp)
	if err != nil {
		return Result{}, &TransportError{Status: resp.StatusCode, Err: err}
	}
	return decodeAnswer(resp.StatusCode, resp.Header, b)
}

// answer holds the fields of a Messaging API answer Herald reads.
type answer struct {
	Message      string        `json:"message"`
	Details      []Detail      `json:"details"`
	SentMessages []SentMessage `json:"sentMessages"`
}

func decodeAnswer(status int, h http.Header, b []byte) (Result, error) {
	var a answer
	jerr := json.Unmarshal(b, &a)
	switch {
	case status == http.StatusOK:
		if jerr != nil && len(bytes.TrimSpace(b)) > 0 {
			// Accepted all the same: the status says so; the ids are lost.
			return Result{RequestID: h.Get(RequestIDHeader)}, nil
		}
		return Result{RequestID: h.Get(RequestIDHeader), SentMessages: a.SentMessages}, nil
	case status == http.StatusConflict && h.Get(AcceptedRequestIDHeader) != "":
		return Result{RequestID: h.Get(AcceptedRequestIDHeader), SentMessages: a.SentMessages, Duplicate: true}, nil
	case jerr != nil && status != http.StatusTooManyRequests && status != http.StatusRequestEntityTooLarge:
		if status >= 400 && status < 500 {
			return Result{}, &APIError{Status: status, Message: provhttp.Snippet(b), RequestID: h.Get(RequestIDHeader)}
		}
		return Result{}, &TransportError{Status: status, Body: provhttp.Snippet(b), Err: jerr}
	}
	if a.Message == "" {
		a.Message = http.StatusText(status)
	}
	return Result{}, &APIError{Status: status, Message: a.Message, Details: a.Details, RequestID: h.Get(RequestIDHeader)}
}

// Quota is the channel's monthly message quota (GET /v2/bot/message/quota).
type Quota struct {
	Type  string `json:"type"`            // none (unlimited) or limited
	Value int64  `json:"value,omitempty"` // messages a month when limited
}

// Quota reads the channel's monthly quota.
func (c *Channel) Quota(ctx context.Context, token string) (Quota, error) {
	var q Quota
	return q, c.get(ctx, QuotaPath, token, &q)
}

// Consumption reads how many messages the channel sent this month
// (GET /v2/bot/message/quota/consumption).
func (c *Channel) Consumption(ctx context.Context, token string) (int64, error) {
	var v struct {
		TotalUsage int64 `json:"totalUsage"`
	}
	return v.TotalUsage, c.get(ctx, ConsumedPath, token, &v)
}

func (c *Channel) get(ctx context.Context, path, token string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return &TransportError{Err: err}
	}
	b, err := provhttp.ReadAnswer(resp)
	if err != nil {
		return &TransportError{Status: resp.StatusCode, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		_, err := decodeAnswer(resp.StatusCode, resp.Header, b)
		return err
	}
	return json.Unmarshal(b, into)
}

// BatchRate is the multicast endpoint's request limit per channel (requests per second):
// the worker takes one slot of it per SendBatch request, apart from the messages'.
func (c *Channel) BatchRate() float64 { return MulticastRate }

var _ dispatcher.BatchRater = (*Channel)(nil)
