package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/herald-dev/herald/internal/provhttp"
)

// Defaults of ClientConfig.
const (
	DefaultBaseURL    = "https://graph.facebook.com"
	DefaultAPIVersion = "v21.0"
)

// ClientConfig configures a Client. The zero value talks to graph.facebook.com.
type ClientConfig struct {
	BaseURL    string       // default DefaultBaseURL; the sandbox's URL in dev and tests
	APIVersion string       // default DefaultAPIVersion
	HTTPClient *http.Client // default: a keep-alive client tuned for thousands of sends per second
}

// Client sends messages through the Cloud API. It is safe for concurrent use; make one per
// process and share it across senders (the token is per call).
type Client struct {
	hc   *http.Client
	base string // BaseURL + "/" + APIVersion + "/"
	bufs sync.Pool
}

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) *Client {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = DefaultHTTPClient()
	}
	return &Client{
		hc:   cfg.HTTPClient,
		base: strings.TrimRight(cfg.BaseURL, "/") + "/" + strings.Trim(cfg.APIVersion, "/") + "/",
		bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
}

// DefaultHTTPClient returns the client NewClient uses when none is given: keep-alive,
// up to 256 idle connections per host, bounded dial, TLS and response-header timeouts.
func DefaultHTTPClient() *http.Client {
	return provhttp.Client()
}

// SendResult is an accepted send. Accepted is not delivered: the outcome arrives later as
// status webhooks carrying MessageID.
type SendResult struct {
	MessageID string // wamid...
	WaID      string // the recipient's WhatsApp id; may differ from the number sent
	Status    string // message_status, usually "accepted"
}

// APIError is a Graph API error body. Branch on Code (see Classify), not on HTTPStatus.
type APIError struct {
	HTTPStatus int
	Code       int
	Subcode    int
	Type       string
	Message    string
	Details    string
	FBTraceID  string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "whatsapp: error %d", e.Code)
	if e.Subcode != 0 {
		fmt.Fprintf(&b, "/%d", e.Subcode)
	}
	fmt.Fprintf(&b, " (HTTP %d", e.HTTPStatus)
	if e.Type != "" {
		b.WriteString(", ")
		b.WriteString(e.Type)
	}
	b.WriteString(")")
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Details != "" {
		b.WriteString(": ")
		b.WriteString(e.Details)
	}
	if e.FBTraceID != "" {
		b.WriteString(" [fbtrace_id ")
		b.WriteString(e.FBTraceID)
		b.WriteString("]")
	}
	return b.String()
}

// TransportError is a failure below the Graph API: the request did not reach Meta, no
// answer came back, or the answer was not a Graph body (HTML error pages, 5xx, garbage).
// It is retryable; the message may or may not have been accepted (in doubt), so the status
// webhook settles it.
type TransportError struct {
	HTTPStatus int    // 0 when no response was read
	Body       string // the first bytes of an unexpected body
	Err        error  // the cause, if any (context errors, net errors, JSON errors)
}

func (e *TransportError) Error() string {
	switch {
	case e.HTTPStatus != 0 && e.Err != nil:
		return fmt.Sprintf("whatsapp transport: HTTP %d: %v: %q", e.HTTPStatus, e.Err, e.Body)
	case e.HTTPStatus != 0:
		return fmt.Sprintf("whatsapp transport: HTTP %d: %q", e.HTTPStatus, e.Body)
	default:
		return fmt.Sprintf("whatsapp transport: %v", e.Err)
	}
}

func (e *TransportError) Unwrap() error { return e.Err }

// ErrInvalidRequest is returned (wrapped) for a call Send refuses before any network work.
var ErrInvalidRequest = errors.New("invalid send request")

// sendReply decodes both shapes Graph may answer with.
type sendReply struct {
	Error    *ErrorObject      `json:"error"`
	Contacts []ResponseContact `json:"contacts"`
	Messages []ResponseMessage `json:"messages"`
}

// Send posts one message from phoneNumberID with token. It fills MessagingProduct
// ("whatsapp") and RecipientType ("individual") when empty. Errors are *APIError (Graph
// refused it; see Classify), *TransportError (retryable, in doubt), or ErrInvalidRequest.
func (c *Client) Send(ctx context.Context, phoneNumberID, token string, req SendRequest) (SendResult, error) {
	if phoneNumberID == "" || token == "" {
		return SendResult{}, fmt.Errorf("whatsapp send: phone-number id and token are required: %w", ErrInvalidRequest)
	}
	if req.MessagingProduct == "" {
		req.MessagingProduct = "whatsapp"
	}
	if req.RecipientType == "" {
		req.RecipientType = "individual"
	}

	body := c.getBuf()
	if err := json.NewEncoder(body).Encode(&req); err != nil {
		c.putBuf(body)
		return SendResult{}, fmt.Errorf("whatsapp send: encode request: %w: %w", ErrInvalidRequest, err)
	}
	// A *bytes.Reader body is one the transport knows is in memory: it writes headers and
	// body in one flush (one syscall) instead of flushing the headers first.
	payload := bytes.Clone(body.Bytes())
	c.putBuf(body)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+url.PathEscape(phoneNumberID)+"/messages", bytes.NewReader(payload))
	if err != nil {
		return SendResult{}, fmt.Errorf("whatsapp send: %w: %w", ErrInvalidRequest, err)
	}
	hreq.Header["Authorization"] = []string{"Bearer " + token}
	hreq.Header["Content-Type"] = []string{"application/json"}

	resp, err := c.hc.Do(hreq)
	if err != nil {
		return SendResult{}, &TransportError{Err: err}
	}
	out := c.getBuf()
	defer c.putBuf(out)
	_, rerr := out.ReadFrom(io.LimitReader(resp.Body, provhttp.MaxAnswer))
	// Drain what is left (bounded) so the connection goes back to the pool.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if rerr != nil {
		return SendResult{}, &TransportError{HTTPStatus: resp.StatusCode, Err: rerr}
	}
	return decodeReply(resp.StatusCode, out.Bytes())
}

func decodeReply(status int, b []byte) (SendResult, error) {
	var r sendReply
	if err := json.Unmarshal(b, &r); err != nil {
		return SendResult{}, &TransportError{HTTPStatus: status, Body: provhttp.Snippet(b), Err: err}
	}
	if r.Error != nil {
		e := &APIError{
			HTTPStatus: status,
			Code:       r.Error.Code,
			Subcode:    r.Error.ErrorSubcode,
			Type:       r.Error.Type,
			Message:    r.Error.Message,
			FBTraceID:  r.Error.FBTraceID,
		}
		if r.Error.ErrorData != nil {
			e.Details = r.Error.ErrorData.Details
		}
		return SendResult{}, e
	}
	if status < 200 || status > 299 || len(r.Messages) == 0 || r.Messages[0].ID == "" {
		return SendResult{}, &TransportError{HTTPStatus: status, Body: provhttp.Snippet(b), Err: errors.New("unexpected response without message id or error")}
	}
	res := SendResult{MessageID: r.Messages[0].ID, Status: r.Messages[0].MessageStatus}
	if len(r.Contacts) > 0 {
		res.WaID = r.Contacts[0].WaID
	}
	return res, nil
}

func (c *Client) getBuf() *bytes.Buffer {
	b := c.bufs.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func (c *Client) putBuf(b *bytes.Buffer) {
	if b.Cap() > 64<<10 {
		return // do not pin rare large buffers
	}
	c.bufs.Put(b)
}
