package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The console is mounted at /console/ (and answers GET / and GET /console) when
// configured, and absent otherwise; it takes nothing else.
func TestConsoleMounted(t *testing.T) {
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "console "+r.URL.Path) })
	for _, tc := range []struct {
		console      http.Handler
		method, path string
		status       int
		body         string
	}{
		{console, "GET", "/console/app.js", 200, "console /console/app.js"},
		{console, "GET", "/console", 200, "console /console"},
		{console, "GET", "/", 200, "console /"},
		{console, "POST", "/console/", 405, ""},
		{console, "GET", "/elsewhere", 404, ""},
		{console, "GET", "/healthz", 200, "ok\n"},
		{nil, "GET", "/console/", 404, ""},
		{nil, "GET", "/", 404, ""},
	} {
		h := New(Config{Console: tc.console}).Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || (tc.body != "" && rec.Body.String() != tc.body) {
			t.Errorf("console %v, %s %s: %d %q", tc.console != nil, tc.method, tc.path, rec.Code, rec.Body.String())
		}
	}
}
