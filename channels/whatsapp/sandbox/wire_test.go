package sandbox

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

// TestWirePoster: POSTs share one kept-alive connection, carry the body, signature and
// headers net/http would, survive the receiver closing an idle connection, and fail on
// an answer other than 200 without taking the connection's next POST down with it.
func TestWirePoster(t *testing.T) {
	var conns, posts atomic.Int64
	var status atomic.Int64
	status.Store(http.StatusOK)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.Method != http.MethodPost || r.URL.RequestURI() != "/webhooks/whatsapp?x=1":
			http.Error(w, "bad target "+r.Method+" "+r.URL.RequestURI(), http.StatusBadRequest)
		case r.Header.Get("Content-Type") != "application/json" || r.Header.Get("User-Agent") != "facebookexternalua":
			http.Error(w, "bad headers", http.StatusBadRequest)
		case graph.VerifySignature(testSecret, body, r.Header.Get(graph.SignatureHeader)) != nil:
			http.Error(w, "bad signature", http.StatusUnauthorized)
		default:
			w.WriteHeader(int(status.Load()))
			_, _ = w.Write([]byte("ok"))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	p := newWirePoster(srv.URL+"/webhooks/whatsapp?x=1", 5*time.Second)
	if p == nil {
		t.Fatal("no wire poster for a plain http URL")
	}
	defer p.close()
	ctx := context.Background()
	post := func(body string) error {
		return p.post(ctx, []byte(body), graph.Sign(testSecret, []byte(body)))
	}
	for i := 0; i < 50; i++ {
		if err := post(`{"object":"whatsapp_business_account","n":` + strings.Repeat("1", i+1) + `}`); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Fatalf("50 POSTs used %d connections, want 1 kept alive", got)
	}

	// The receiver drops idle connections: the next POST goes out on a fresh one.
	srv.CloseClientConnections()
	if err := post(`{"after":"close"}`); err != nil {
		t.Fatalf("post after the receiver closed the connection: %v", err)
	}
	if got := conns.Load(); got != 2 {
		t.Fatalf("connections after a close = %d, want 2", got)
	}

	status.Store(http.StatusServiceUnavailable)
	n := posts.Load()
	err := post(`{"refused":true}`)
	var se statusError
	if !errors.As(err, &se) || se.code != http.StatusServiceUnavailable {
		t.Fatalf("post answered 503: err = %v, want statusError 503", err)
	}
	if posts.Load() != n+1 {
		t.Fatalf("a refused POST was sent again by the poster (%d POSTs, want %d)", posts.Load(), n+1)
	}
	status.Store(http.StatusOK)
	if err := post(`{"again":true}`); err != nil {
		t.Fatalf("post after a 503: %v", err)
	}
	if posts.Load() != n+2 {
		t.Fatalf("%d POSTs after a refused one and a good one, want %d", posts.Load(), n+2)
	}

	// A wrong signature is the receiver's 401, not a transport error.
	if err := p.post(ctx, []byte(`{}`), "sha256=00"); !errors.As(err, &se) || se.code != http.StatusUnauthorized {
		t.Fatalf("badly signed post: err = %v, want statusError 401", err)
	}
}

// TestWirePosterOnlyPlainHTTP: https receivers go through net/http (as do proxied ones:
// net/http reads the proxy environment once per process, so that is not tested here).
func TestWirePosterOnlyPlainHTTP(t *testing.T) {
	if newWirePoster("https://example.com/hook", time.Second) != nil {
		t.Fatal("wire poster for https")
	}
	if newWirePoster("http://user:pw@example.com/hook", time.Second) != nil {
		t.Fatal("wire poster for a URL with credentials")
	}
}
