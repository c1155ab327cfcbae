package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/webhooks"
)

// Bad subscriptions and replays are refused with problems pointing at the field, and
// store nothing; a marketer reads but may not subscribe.
func TestWebhookInputRefused(t *testing.T) {
	e := newEnv(t)
	before := e.storeDigest()
	for _, tc := range []struct {
		name, body    string
		status        int
		slug, pointer string
	}{
		{"no url", `{"kinds":["sent"]}`, 422, "validation", "/url"},
		{"ftp url", `{"url":"ftp://x.example.com/in","kinds":["sent"]}`, 422, "validation", "/url"},
		{"relative url", `{"url":"/in","kinds":["sent"]}`, 422, "validation", "/url"},
		{"credentials", `{"url":"https://u:p@x.example.com/in","kinds":["sent"]}`, 422, "validation", "/url"},
		{"no kinds", `{"url":"https://x.example.com/in","kinds":[]}`, 422, "validation", "/kinds"},
		{"unknown kind", `{"url":"https://x.example.com/in","kinds":["sent","queued"]}`, 422, "validation", "/kinds/1"},
		{"kinds not a list", `{"url":"https://x.example.com/in","kinds":"sent"}`, 400, "invalid-body", "/kinds"},
		{"unknown field", `{"url":"https://x.example.com/in","kinds":["sent"],"secret":"mine"}`, 400, "invalid-body", "/secret"},
		{"url not a string", `{"url":5,"kinds":["sent"]}`, 400, "invalid-body", "/url"},
		{"malformed", `{"url":`, 400, "invalid-body", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(req{method: "POST", path: "/v1/webhooks", key: "admin", body: tc.body, invalid: true})
			p := res.problem(t)
			if res.status != tc.status || p.Type != problemPrefix+tc.slug {
				t.Fatalf("%d %s, want %d %s\n%s", res.status, p.Type, tc.status, tc.slug, res.body)
			}
			if tc.pointer != "" && (len(p.Errors) == 0 || p.Errors[0].Pointer != tc.pointer) {
				t.Errorf("errors %+v, want a pointer at %s", p.Errors, tc.pointer)
			}
		})
	}
	res := e.do(req{method: "POST", path: "/v1/webhooks", key: "marketer", body: map[string]any{"url": "https://x.example.com/in", "kinds": []string{"sent"}}})
	if res.status != 403 {
		t.Fatalf("marketer create: %d", res.status)
	}
	if e.storeDigest() != before {
		t.Fatal("refused subscriptions changed the store")
	}
	list, err := e.comp.Webhooks.List(e.ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("stored %d subscriptions (%v)", len(list), err)
	}
}

// The whole life of a subscription through the API: created with its secret shown once,
// listed and read without it, its deliveries logged as the deliverer makes them,
// replayed, deleted.
func TestWebhookLifecycle(t *testing.T) {
	e := newEnv(t)
	var hits atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer rcv.Close()
	var created webhooks.Created
	res := e.do(req{method: "POST", path: "/v1/webhooks", key: "admin",
		body: map[string]any{"url": rcv.URL + "/in", "kinds": []string{"delivered", "read"}, "campaigns": []string{"7"}, "description": "crm"}})
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	res.decode(t, &created)
	if !strings.HasPrefix(created.Secret, "whsec_") || res.header.Get("Location") != "/v1/webhooks/"+created.ID {
		t.Fatalf("created %+v, Location %q", created, res.header.Get("Location"))
	}
	for _, path := range []string{"/v1/webhooks", "/v1/webhooks/" + created.ID} {
		res := e.do(req{method: "GET", path: path, key: "marketer"})
		if res.status != 200 || !strings.Contains(string(res.body), created.ID) || strings.Contains(string(res.body), created.Secret) || strings.Contains(string(res.body), "secret") {
			t.Fatalf("GET %s: %d %s (the secret must not be shown again)", path, res.status, res.body)
		}
	}

	brokers := e.d.Cfg.KafkaBrokers
	d, err := webhooks.New(webhooks.Config{Brokers: brokers, Topic: e.d.Topics.Events, Group: "wh-api", Store: e.comp.Webhooks, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var msgs []kafka.Message
	for _, k := range []events.Kind{events.Sent, events.Delivered, events.Read} {
		for _, camp := range []string{"7", "8"} {
			b, _ := events.New(k, camp, 1, time.Now()).Marshal()
			msgs = append(msgs, kafka.Message{Key: kafkax.ContactKey(1), Value: b})
		}
	}
	if err := e.d.Writer(e.d.Topics.Events).WriteMessages(e.ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	var log page[webhooks.Delivery]
	waitFor(t, 30*time.Second, "two deliveries in the log", func() bool {
		res := e.do(req{method: "GET", path: "/v1/webhooks/" + created.ID + "/deliveries?state=delivered", key: "marketer"})
		log = page[webhooks.Delivery]{}
		res.decode(t, &log)
		return len(log.Items) == 2
	})
	for _, dl := range log.Items {
		if dl.Attempts != 1 || dl.StatusCode != 200 || (dl.Kind != events.Delivered && dl.Kind != events.Read) {
			t.Errorf("delivery %+v", dl)
		}
	}
	res = e.do(req{method: "GET", path: "/v1/webhooks/" + created.ID + "/deliveries?limit=1", key: "admin"})
	var p1 page[webhooks.Delivery]
	res.decode(t, &p1)
	res = e.do(req{method: "GET", path: "/v1/webhooks/" + created.ID + "/deliveries?limit=1&cursor=" + p1.NextCursor, key: "admin"})
	var p2 page[webhooks.Delivery]
	res.decode(t, &p2)
	if len(p1.Items) != 1 || len(p2.Items) != 1 || p1.Items[0].ID == p2.Items[0].ID || p2.NextCursor != "" {
		t.Fatalf("pages %+v then %+v", p1, p2)
	}

	res = e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/replay", key: "admin", body: map[string]any{}, invalid: true})
	if p := res.problem(t); res.status != 422 || p.Errors[0].Pointer != "/delivery_ids" {
		t.Fatalf("empty replay: %d %+v", res.status, p)
	}
	res = e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/replay", key: "marketer", body: map[string]any{"delivery_ids": []string{log.Items[0].ID}}})
	if res.status != 403 {
		t.Fatalf("marketer replay: %d", res.status)
	}
	before := hits.Load()
	res = e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/replay", key: "admin", body: map[string]any{"delivery_ids": []string{log.Items[0].ID}}})
	if res.status != 200 || !strings.Contains(string(res.body), `"replayed":1`) {
		t.Fatalf("replay: %d %s", res.status, res.body)
	}
	waitFor(t, 30*time.Second, "the replayed delivery", func() bool { return hits.Load() > before })

	res = e.do(req{method: "DELETE", path: "/v1/webhooks/" + created.ID, key: "admin"})
	if res.status != 204 {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	for _, path := range []string{"/v1/webhooks/" + created.ID, "/v1/webhooks/" + created.ID + "/deliveries"} {
		if res := e.do(req{method: "GET", path: path, key: "admin"}); res.status != 404 {
			t.Fatalf("GET %s after delete: %d", path, res.status)
		}
	}
}
