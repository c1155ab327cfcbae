package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/line"
	"github.com/herald-dev/herald/channels/line/sandbox"
)

func push(t *testing.T, url, key, to string) (int, http.Header) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"to": to, "messages": []any{map[string]any{"type": "text", "text": "hi"}}})
	req, _ := http.NewRequest(http.MethodPost, url+line.PushPath, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set(line.RetryKeyHeader, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// A retry key is taken once for 24 hours (409 naming the accepted request), then it is
// a new request; a malformed key is a 400.
func TestRetryKeys(t *testing.T) {
	now := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sb := sandbox.New(sandbox.Config{Token: "tok", Now: clock})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	u := sandbox.UserID("1")
	key := line.RetryKey("c:1")
	code, h := push(t, srv.URL, key, u)
	if code != 200 {
		t.Fatalf("first push: %d", code)
	}
	first := h.Get(line.RequestIDHeader)
	code, h = push(t, srv.URL, key, u)
	if code != http.StatusConflict || h.Get(line.AcceptedRequestIDHeader) != first {
		t.Fatalf("a repeat within 24 h: %d, accepted id %q, want 409 naming %q", code, h.Get(line.AcceptedRequestIDHeader), first)
	}
	mu.Lock()
	now = now.Add(24 * time.Hour)
	mu.Unlock()
	if code, _ = push(t, srv.URL, key, u); code != 200 {
		t.Fatalf("after 24 h: %d, want a new request", code)
	}
	if code, _ = push(t, srv.URL, "not-a-uuid", u); code != http.StatusBadRequest {
		t.Fatalf("a malformed key: %d, want 400", code)
	}
	if n := len(sb.Records()); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
}

// Events are signed with the channel secret; a redelivery carries the same
// webhookEventId, marked as one.
func TestWebhooksAreSigned(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := line.VerifySignature("sec", b, r.Header.Get(line.SignatureHeader)); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
	}))
	defer recv.Close()
	sb := sandbox.New(sandbox.Config{ChannelSecret: "sec", WebhookURL: recv.URL})
	id, err := sb.Follow(context.Background(), sandbox.UserID("9"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Redeliver(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 2 {
		t.Fatalf("%d deliveries", len(bodies))
	}
	for i, b := range bodies {
		d, err := line.Decode(b, "s")
		if err != nil || len(d.Preferences) != 1 || d.Preferences[0].ID != id {
			t.Fatalf("delivery %d: %+v, %v", i, d, err)
		}
		var p line.Payload
		_ = json.Unmarshal(b, &p)
		if p.Events[0].DeliveryContext.IsRedelivery != (i == 1) {
			t.Fatalf("delivery %d: isRedelivery %v", i, p.Events[0].DeliveryContext.IsRedelivery)
		}
	}
}
