package provhttp

import (
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
)

// An answer over MaxAnswer is cut there, and the connection goes back to the pool: the
// next request reuses it.
func TestReadAnswerBoundsAndReuses(t *testing.T) {
	big := strings.Repeat("x", MaxAnswer+1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write([]byte(big))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	hc := Client()
	reused := 0
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			reused++
		}
	}}
	for i, path := range []string{"/big", "/small", "/small"} {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, srv.URL+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ReadAnswer(resp)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"/big": MaxAnswer, "/small": 11}[path]; len(b) != want {
			t.Fatalf("request %d %s: read %d bytes, want %d", i, path, len(b), want)
		}
	}
	if reused != 2 {
		// The big answer's unread rest (1,000 bytes) is drained, so all three requests
		// share one connection.
		t.Fatalf("%d requests reused a connection, want 2", reused)
	}
}

func TestSnippet(t *testing.T) {
	if s := Snippet([]byte(strings.Repeat("é", 200))); len(s) != 256 {
		t.Fatalf("snippet of 400 bytes is %d bytes, want 256", len(s))
	}
	if s := Snippet([]byte("short")); s != "short" {
		t.Fatalf("snippet %q", s)
	}
}
