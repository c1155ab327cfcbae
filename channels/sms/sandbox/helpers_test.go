package sandbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/sms"
)

const (
	testAccount = "AC0123456789abcdef0123456789abcdef"
	testToken   = "sandbox-auth-token"
	longCode    = "+14155550100"
	user        = "+14155550123"
)

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1750000000, 0).UTC()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// receiver is a webhook endpoint that checks X-Twilio-Signature and keeps what it got.
type receiver struct {
	t     testing.TB
	srv   *httptest.Server
	fail  atomic.Int64 // answer 500 to this many more POSTs
	mu    sync.Mutex
	forms []url.Values
	paths []string
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		form, err := sms.ReadForm(req.Body)
		if err != nil {
			t.Errorf("callback body: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		full := sms.FullURL(r.srv.URL, req.URL.RequestURI())
		if err := sms.VerifySignature(testToken, full, form, req.Header.Get(sms.SignatureHeader)); err != nil {
			t.Errorf("callback signature: %v", err)
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if r.fail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		r.mu.Lock()
		r.forms = append(r.forms, form)
		r.paths = append(r.paths, req.URL.RequestURI())
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() ([]url.Values, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]url.Values(nil), r.forms...), append([]string(nil), r.paths...)
}

// statuses returns the statuses received per message SID, in arrival order.
func (r *receiver) statuses() map[string][]url.Values {
	forms, _ := r.got()
	out := map[string][]url.Values{}
	for _, f := range forms {
		if f.Get("MessageStatus") != "" {
			out[f.Get("MessageSid")] = append(out[f.Get("MessageSid")], f)
		}
	}
	return out
}

// env is a sandbox served over loopback.
type env struct {
	sb   *Sandbox
	api  *httptest.Server
	recv *receiver
}

// newEnv starts a sandbox with cfg (account, token and inbound URL filled in when empty)
// without running it.
func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	e := &env{recv: newReceiver(t)}
	if cfg.AccountSID == "" {
		cfg.AccountSID = testAccount
	}
	if cfg.AuthToken == "" {
		cfg.AuthToken = testToken
	}
	if cfg.InboundURL == "" {
		cfg.InboundURL = e.recv.srv.URL + "/webhooks/sms/inbound"
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	}
	e.sb = New(cfg, nil)
	e.api = httptest.NewServer(e.sb.Handler())
	t.Cleanup(e.api.Close)
	return e
}

// run runs the sandbox until the test ends.
func (e *env) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.sb.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitIdle waits for delivery; the deadline only guards against a hang.
func (e *env) waitIdle(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.sb.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

func (e *env) callbackURL(cb string) string {
	return e.recv.srv.URL + "/webhooks/sms/status?cb=" + url.QueryEscape(cb)
}

type reply struct {
	status     int
	msg        message
	err        errorBody
	retryAfter string
	raw        string
}

// post sends form to the Messages endpoint of account with basic auth user:pass.
func (e *env) post(t testing.TB, account, user, pass string, form url.Values) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.api.URL+"/2010-04-01/Accounts/"+account+"/Messages.json", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(b), retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(b, &r.msg); err != nil {
			t.Fatalf("201 body is not a Message: %s", b)
		}
	} else if err := json.Unmarshal(b, &r.err); err != nil {
		t.Fatalf("error body is not Twilio JSON: %s", b)
	}
	return r
}

// send posts a message with the test credentials.
func (e *env) send(t testing.TB, form url.Values) reply {
	t.Helper()
	return e.post(t, testAccount, testAccount, testToken, form)
}

func msg(from, to, body string, extra ...string) url.Values {
	f := url.Values{"From": {from}, "To": {to}, "Body": {body}}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

// number returns the i-th test recipient (i < 8,000,000): a valid US number
// +1415 followed by 2000000+i.
func number(i int) string {
	return "+1415" + itoa(2000000+i)
}

// findNumber returns a test number for which pred holds.
func findNumber(t testing.TB, pred func(string) bool) string {
	t.Helper()
	for i := 1000; i < 200000; i++ {
		if n := number(i); pred(n) {
			return n
		}
	}
	t.Fatal("no such number")
	return ""
}
