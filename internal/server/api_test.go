package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The /v1 API is mounted under /v1/ when configured, for every method, and absent
// otherwise.
func TestAPIMounted(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api "+r.Method+" "+r.URL.Path) })
	for _, tc := range []struct {
		api        http.Handler
		status     int
		body, path string
	}{
		{api, 200, "api POST /v1/campaigns/7/launch", "/v1/campaigns/7/launch"},
		{nil, 404, "", "/v1/campaigns/7/launch"},
	} {
		h := New(Config{API: tc.api}).Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", tc.path, nil))
		if rec.Code != tc.status || (tc.body != "" && rec.Body.String() != tc.body) {
			t.Errorf("API %v: %d %q", tc.api != nil, rec.Code, rec.Body.String())
		}
	}
}
