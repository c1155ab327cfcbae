package api

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// checkCSRF lets a mutating request through only with the session's token and, when
// it names an Origin, from the API's own host; reads always pass.
func FuzzCheckCSRF(f *testing.F) {
	f.Add("POST", "tok", "tok", "", "herald.example")
	f.Add("POST", "tok", "tok", "https://herald.example", "herald.example")
	f.Add("DELETE", "tok", "tok", "https://evil.example", "herald.example")
	f.Add("PUT", "tok", "", "", "herald.example")
	f.Add("GET", "tok", "", "https://evil.example", "herald.example")
	f.Add("POST", "", "", "", "herald.example")
	f.Add("POST", "tok", "tok", "null", "herald.example")
	f.Add("POST", "tok", "tok", "https://herald.example:8443", "herald.example:8443")
	f.Fuzz(func(t *testing.T, method, token, sent, origin, host string) {
		switch method {
		case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH":
		default:
			return
		}
		if strings.ContainsAny(sent+origin+host, "\r\n\x00") || host == "" || strings.ContainsAny(host, " /?#@") {
			return
		}
		r := httptest.NewRequest(method, "http://"+url.PathEscape("h")+"/v1/campaigns", nil)
		r.Host = host
		r.Header.Set(CSRFHeader, sent)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		p := checkCSRF(r, token)
		if method == "GET" || method == "HEAD" {
			if p != nil {
				t.Fatalf("%s refused: %v", method, p)
			}
			return
		}
		sameOrigin := true
		if origin != "" {
			u, err := url.Parse(origin)
			sameOrigin = err == nil && strings.EqualFold(u.Host, host)
		}
		want := token != "" && sent == token && sameOrigin
		if (p == nil) != want {
			t.Fatalf("%s token %q sent %q origin %q host %q: refused=%v, want allowed=%v", method, token, sent, origin, host, p != nil, want)
		}
		if p != nil && (p.Status != 403 || p.Type != problemPrefix+"csrf") {
			t.Fatalf("refusal %+v", p)
		}
	})
}

// wantsCSV takes any Accept header without panicking, and prefers CSV only when
// text/csv comes before JSON or */*.
func FuzzWantsCSV(f *testing.F) {
	for _, s := range []string{"", "text/csv", "application/json", "text/csv;q=0.9, application/json", "*/*", "application/json, text/csv", ";;,", "text/csv; charset=utf-8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		got := wantsCSV(accept)
		if got && !strings.Contains(strings.ToLower(accept), "text/csv") {
			t.Fatalf("%q: CSV without text/csv", accept)
		}
	})
}
