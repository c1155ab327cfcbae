package sandbox

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

const (
	testToken  = "sandbox-token"
	testSecret = "app-secret"
	pnid       = "106540352242922"
)

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1750000000, 0)} }

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

// receiver is a webhook endpoint that checks signatures and keeps what it got.
type receiver struct {
	t     testing.TB
	srv   *httptest.Server
	fail  atomic.Int64 // answer 500 to this many more POSTs
	mu    sync.Mutex
	posts []*graph.Notification
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("read webhook: %v", err)
			return
		}
		if err := graph.VerifySignature(testSecret, body, req.Header.Get(graph.SignatureHeader)); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if r.fail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		n, err := graph.ParseNotification(body)
		if err != nil {
			t.Errorf("webhook body: %v\n%s", err, body)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.posts = append(r.posts, n)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) notifications() []*graph.Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*graph.Notification(nil), r.posts...)
}

// statuses returns every status received, in order, with the index of its POST.
func (r *receiver) statuses() (out []graph.Status, post []int) {
	for i, n := range r.notifications() {
		for _, e := range n.Entry {
			for _, c := range e.Changes {
				for _, s := range c.Value.Statuses {
					out = append(out, s)
					post = append(post, i)
				}
			}
		}
	}
	return out, post
}

// env is a sandbox served over loopback.
type env struct {
	sb   *Sandbox
	api  *httptest.Server
	recv *receiver
}

// newEnv starts a sandbox with cfg (Token, AppSecret and WebhookURL filled in when empty)
// without running it.
func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	e := &env{recv: newReceiver(t)}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.AppSecret == "" {
		cfg.AppSecret = testSecret
	}
	if cfg.WebhookURL == "" {
		cfg.WebhookURL = e.recv.srv.URL
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = time.Millisecond
		cfg.RetryMax = 5 * time.Millisecond
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

type reply struct {
	status int
	ok     graph.SendResponse
	err    graph.ErrorBody
	raw    string
}

// post sends body to path with the bearer token (auth "" sends none).
func (e *env) post(t testing.TB, path, auth, body string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.api.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(b)}
	if resp.StatusCode == http.StatusOK {
		_ = json.Unmarshal(b, &r.ok)
	} else if err := json.Unmarshal(b, &r.err); err != nil {
		t.Fatalf("error body is not Graph JSON: %s", b)
	}
	return r
}

func (e *env) send(t testing.TB, body string) reply {
	t.Helper()
	return e.post(t, "/v21.0/"+pnid+"/messages", testToken, body)
}

func templateBody(to, callback string) string {
	return `{"messaging_product":"whatsapp","recipient_type":"individual","to":"` + to + `","type":"template",
 "template":{"name":"order_confirmation","language":{"code":"en_US"},
  "components":[{"type":"body","parameters":[
   {"type":"text","parameter_name":"first_name","text":"Jessica"},
   {"type":"text","parameter_name":"order_number","text":"SKBUP2-4CPIG9"}]}]},
 "biz_opaque_callback_data":"` + callback + `"}`
}

var orderConfirmation = ApprovedTemplate{
	Name: "order_confirmation", Language: "en_US", Category: "UTILITY",
	Body: "Hi {{first_name}}, order {{order_number}} is confirmed.",
}
