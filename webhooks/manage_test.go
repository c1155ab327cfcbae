package webhooks

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/events"
)

// A paused subscription's events are queued and none is sent; after a secret rotation
// and a resume every one arrives signed with the new secret and, in the grace period,
// the old one too; once the grace is over only the new one signs.
func TestPauseRotateResume(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var sigs []string
	var bodies [][]byte
	var stamps []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sigs, bodies, stamps = append(sigs, r.Header.Get(HeaderSignature)), append(bodies, b), append(stamps, r.Header.Get(HeaderTimestamp))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	sub, err := e.store.Create(e.ctx, Spec{URL: srv.URL, Kinds: []events.Kind{events.Sent, events.Delivered, events.Read, events.Failed, events.Clicked}})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := e.store.SetActive(e.ctx, sub.ID, false); err != nil || p.Active {
		t.Fatalf("pause: %+v %v", p, err)
	}
	e.start(e.config())
	evs := stream(10)
	e.publish(evs)
	want := 0
	for _, ev := range evs {
		if (&sub.Subscription).Wants(ev) {
			want++
		}
	}
	if want < 3 {
		t.Fatalf("only %d of the stream's events are subscribed", want)
	}
	waitFor(t, 60*time.Second, "the events queued", func() bool {
		lag, err := analytics.Lag(e.ctx, e.brokers, e.group, e.topics.Events)
		n, _ := e.store.rdb.ZCard(e.ctx, e.store.dueKey(sub.ID)).Result()
		return err == nil && lag == 0 && int(n) == want
	})
	mu.Lock()
	if len(sigs) != 0 {
		t.Fatalf("a paused subscription got %d deliveries", len(sigs))
	}
	mu.Unlock()

	rot, err := e.store.RotateSecret(e.ctx, sub.ID, time.Hour)
	if err != nil || rot.Secret == sub.Secret || !strings.HasPrefix(rot.Secret, "whsec_") || rot.PreviousUntil.IsZero() {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	if _, err := e.store.SetActive(e.ctx, sub.ID, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the backlog", func() bool { mu.Lock(); defer mu.Unlock(); return len(sigs) >= want })
	mu.Lock()
	for i, sig := range sigs {
		ts, _ := strconv.ParseInt(stamps[i], 10, 64)
		if sig != Sign(rot.Secret, ts, bodies[i])+","+Sign(sub.Secret, ts, bodies[i]) {
			t.Fatalf("delivery %d signed %q, want the new secret's and the old one's v1", i, sig)
		}
	}
	mu.Unlock()

	// After the grace period only the new secret signs.
	got, err := e.store.Get(e.ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{}`)
	if s := Signatures(got, 1, body, rot.PreviousUntil.Add(time.Second)); s != Sign(rot.Secret, 1, body) {
		t.Fatalf("after the grace: %q", s)
	}
	if s := Signatures(got, 1, body, rot.PreviousUntil.Add(-time.Second)); !strings.Contains(s, ",") {
		t.Fatalf("in the grace: %q", s)
	}
	if _, err := e.store.RotateSecret(e.ctx, "wh_0000000000000000", 0); err == nil {
		t.Fatal("rotated an unknown subscription")
	}
}
