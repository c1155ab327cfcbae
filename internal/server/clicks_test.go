package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates/links"
)

func TestClickHandler(t *testing.T) {
	codec, err := links.NewCodec([]byte("click-key-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	pub := &memPublisher{}
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	mux := http.NewServeMux()
	mux.Handle("/c/", NewClickHandler(ClickConfig{Codec: codec, Events: pub, Now: func() time.Time { return at }}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	get := func(path, ua string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if ua != "" {
			req.Header.Set("User-Agent", ua)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	tok0, _ := codec.Token(links.Click{Campaign: "spring", Contact: 42, Index: 0, URL: "https://shop.example.com/sale?x=1"})
	tok1, _ := codec.Token(links.Click{Campaign: "spring", Contact: 42, Index: 1, URL: "https://example.com/b"})

	for _, tc := range []struct {
		path, ua string
		status   int
		location string
	}{
		{"/c/" + tok0, "Mozilla/5.0", http.StatusFound, "https://shop.example.com/sale?x=1"},
		{"/c/" + tok0, "Mozilla/5.0", http.StatusFound, "https://shop.example.com/sale?x=1"}, // again: same event id
		{"/c/" + tok1, "", http.StatusFound, "https://example.com/b"},
		{"/c/" + tok1, "WhatsApp/2.23.20 A", http.StatusFound, "https://example.com/b"}, // a preview fetch: no event
		{"/c/" + tok0[:len(tok0)-2] + "AA", "", http.StatusNotFound, ""},                // forged
		{"/c/", "", http.StatusNotFound, ""},
	} {
		resp := get(tc.path, tc.ua)
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
		}
	}
	evs := pub.events(t)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3 (two clicks on link 0, one on link 1): %+v", len(evs), evs)
	}
	for i, e := range evs {
		link := "0"
		if i == 2 {
			link = "1"
		}
		if e.Kind != events.Clicked || e.CampaignID != "spring" || e.ContactID != 42 || !e.Time.Equal(at) ||
			e.ID != events.ID("spring", 42, events.Clicked, link) {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	if evs[0].ID != evs[1].ID || evs[0].ID == evs[2].ID {
		t.Errorf("event ids: a link must count once per contact, and links apart: %s %s %s", evs[0].ID, evs[1].ID, evs[2].ID)
	}

	// Kafka down: the visitor is still redirected
	pub.fail = true
	if resp := get("/c/"+tok1, ""); resp.StatusCode != http.StatusFound {
		t.Errorf("with Kafka down: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/c/"+tok0, nil)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp, err)
	}
}
