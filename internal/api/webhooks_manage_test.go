package api

import (
	"testing"
	"time"

	"github.com/herald-dev/herald/webhooks"
)

// Rotating a subscription's secret over the API returns the new one once and the end of
// the old one's grace; pause and resume flip active; a marketer may do none of it.
func TestWebhookRotatePauseResume(t *testing.T) {
	e := newEnv(t)
	var created webhooks.Created
	e.do(req{method: "POST", path: "/v1/webhooks", key: "admin", body: map[string]any{"url": "https://crm.example.com/h", "kinds": []string{"sent"}}}).decode(t, &created)
	var rot webhooks.Created
	r := e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/rotate-secret", key: "admin", body: map[string]any{"grace_seconds": 600}})
	r.decode(t, &rot)
	if r.status != 200 || rot.Secret == created.Secret || rot.PreviousUntil.Before(time.Now().Add(9*time.Minute)) || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	var sub webhooks.Subscription
	e.do(req{method: "GET", path: "/v1/webhooks/" + created.ID, key: "marketer"}).decode(t, &sub)
	if sub.PreviousUntil.IsZero() || len(e.do(req{method: "GET", path: "/v1/webhooks/" + created.ID, key: "marketer"}).body) == 0 {
		t.Fatalf("get after rotate: %+v", sub)
	}
	r = e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/rotate-secret", key: "admin", body: map[string]any{"grace_seconds": 0}})
	rot = webhooks.Created{}
	r.decode(t, &rot)
	if !rot.PreviousUntil.IsZero() {
		t.Fatalf("rotate without grace: %s", r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/pause", key: "admin"})
	r.decode(t, &sub)
	if r.status != 200 || sub.Active {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	r = e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/resume", key: "admin"})
	r.decode(t, &sub)
	if r.status != 200 || !sub.Active {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	if r := e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/pause", key: "marketer"}); r.status != 403 {
		t.Fatalf("a marketer paused: %d", r.status)
	}
	if r := e.do(req{method: "POST", path: "/v1/webhooks/" + created.ID + "/rotate-secret", key: "admin", body: map[string]any{"grace_seconds": -1}, invalid: true}); r.status != 422 {
		t.Fatalf("negative grace: %d %s", r.status, r.body)
	}
	t.Setenv(webhooks.AllowPrivateEnv, "false")
	r = e.do(req{method: "POST", path: "/v1/webhooks", key: "admin", body: map[string]any{"url": "http://169.254.169.254/latest", "kinds": []string{"sent"}}})
	if p := r.problem(t); r.status != 422 || p.Errors[0].Pointer != "/url" {
		t.Fatalf("a link-local receiver: %d %s", r.status, r.body)
	}
}
