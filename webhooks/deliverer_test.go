package webhooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// verify is what a receiver does, following the README: recompute
// hex(HMAC-SHA256(secret, timestamp + "." + body)), compare it in constant time with
// the v1= value, and refuse timestamps more than 5 minutes away.
func verify(secret string, h http.Header, body []byte, now time.Time) error {
	ts := h.Get("Herald-Webhook-Timestamp")
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("bad timestamp")
	}
	if d := now.Sub(time.Unix(n, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp too far from now")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(h.Get("Herald-Webhook-Signature")), []byte(want)) {
		return errors.New("signature mismatch")
	}
	return nil
}

// receiver records what a subscription's URL gets, verifying each request.
type receiver struct {
	t      testing.TB
	secret atomic.Value // string
	// answer decides the status of a request (nil: 204).
	answer func(n int64) int
	reqs   atomic.Int64
	mu     sync.Mutex
	got    map[string]Envelope // by Herald-Webhook-Id
	dups   int
	bad    []string
}

func newReceiver(t testing.TB) *receiver {
	return &receiver{t: t, got: map[string]Envelope{}}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	n := r.reqs.Add(1)
	body, _ := io.ReadAll(req.Body)
	status := http.StatusNoContent
	if r.answer != nil {
		status = r.answer(n)
	}
	if status >= 200 && status < 300 {
		secret, _ := r.secret.Load().(string)
		var env Envelope
		err := verify(secret, req.Header, body, time.Now())
		if err == nil {
			err = json.Unmarshal(body, &env)
		}
		r.mu.Lock()
		switch {
		case err != nil:
			r.bad = append(r.bad, err.Error())
			status = http.StatusUnauthorized
		case env.ID != req.Header.Get(HeaderID):
			r.bad = append(r.bad, "body id "+env.ID+" != header "+req.Header.Get(HeaderID))
		default:
			if _, dup := r.got[env.ID]; dup {
				r.dups++
			}
			r.got[env.ID] = env
		}
		r.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

type env struct {
	t       testing.TB
	ctx     context.Context
	store   *Store
	brokers []string
	topics  kafkax.Topics
	w       *kafka.Writer
	group   string
}

func newEnv(t testing.TB) *env {
	rdb, prefix := testenv.Redis(t)
	brokers, topics := testenv.Kafka(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	w := kafkax.NewWriter(brokers, topics.Events)
	t.Cleanup(func() { w.Close() })
	return &env{t: t, ctx: ctx, store: NewStore(rdb, prefix), brokers: brokers, topics: topics, w: w, group: "wh-" + testenv.Unique()}
}

func (e *env) config() Config {
	return Config{Brokers: e.brokers, Topic: e.topics.Events, Group: e.group, Store: e.store, Poll: 20 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Timeout: 2 * time.Second}
}

// start runs a deliverer until the returned stop is called (or the test ends).
func (e *env) start(cfg Config) (stop func()) {
	d, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("deliverer: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *env) publish(evs []events.Event) {
	e.t.Helper()
	var msgs []kafka.Message
	for _, ev := range evs {
		b, err := ev.Marshal()
		if err != nil {
			e.t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: kafkax.ContactKey(ev.ContactID), Value: b})
	}
	if err := e.w.WriteMessages(e.ctx, msgs...); err != nil {
		e.t.Fatal(err)
	}
}

// settled waits until the group has committed everything and no delivery is due.
func (e *env) settled(subs ...string) {
	e.t.Helper()
	waitFor(e.t, 60*time.Second, "the deliverer to settle", func() bool {
		lag, err := analytics.Lag(e.ctx, e.brokers, e.group, e.topics.Events)
		if err != nil || lag > 0 {
			return false
		}
		for _, s := range subs {
			if n, _ := e.store.rdb.ZCard(e.ctx, e.store.dueKey(s)).Result(); n > 0 {
				return false
			}
		}
		return true
	})
}

func waitFor(t testing.TB, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stream is every kind for contacts 1..n in campaigns c1 and c2.
func stream(n int) []events.Event {
	var out []events.Event
	at := time.Now().UTC()
	for _, c := range []string{"c1", "c2"} {
		for id := uint32(1); id <= uint32(n); id++ {
			for _, k := range []events.Kind{events.Queued, events.Sent, events.Delivered, events.Read, events.Clicked, events.Failed} {
				ev := events.New(k, c, id, at)
				ev.Channel, ev.SenderID = "whatsapp", "s1"
				out = append(out, ev)
			}
		}
	}
	return out
}

// A subscription gets exactly its kinds of its campaign, each once, signed so that a
// receiver following the README verifies it; another with no filter gets every kind it
// named of every campaign.
func TestDeliversSubscribedKindsSigned(t *testing.T) {
	e := newEnv(t)
	r1, r2 := newReceiver(t), newReceiver(t)
	s1 := httptest.NewServer(r1)
	defer s1.Close()
	s2 := httptest.NewServer(r2)
	defer s2.Close()
	a, err := e.store.Create(e.ctx, Spec{URL: s1.URL + "/hook", Kinds: []events.Kind{events.Delivered, events.Clicked}, Campaigns: []string{"c1"}})
	if err != nil {
		t.Fatal(err)
	}
	r1.secret.Store(a.Secret)
	b, err := e.store.Create(e.ctx, Spec{URL: s2.URL, Kinds: []events.Kind{events.Failed}})
	if err != nil {
		t.Fatal(err)
	}
	r2.secret.Store(b.Secret)
	e.start(e.config())
	evs := stream(10)
	e.publish(evs)
	want1, want2 := map[string]events.Event{}, map[string]events.Event{}
	for _, ev := range evs {
		if ev.CampaignID == "c1" && (ev.Kind == events.Delivered || ev.Kind == events.Clicked) {
			want1[DeliveryID(a.ID, ev.ID)] = ev
		}
		if ev.Kind == events.Failed {
			want2[DeliveryID(b.ID, ev.ID)] = ev
		}
	}
	waitFor(t, 60*time.Second, "the deliveries", func() bool { return r1.count() >= len(want1) && r2.count() >= len(want2) })
	e.settled(a.ID, b.ID)
	for _, c := range []struct {
		r    *receiver
		want map[string]events.Event
		sub  string
	}{{r1, want1, a.ID}, {r2, want2, b.ID}} {
		c.r.mu.Lock()
		if len(c.r.bad) > 0 {
			t.Errorf("receiver refused: %v", c.r.bad)
		}
		if len(c.r.got) != len(c.want) || c.r.dups != 0 {
			t.Errorf("got %d deliveries (%d duplicates), want %d", len(c.r.got), c.r.dups, len(c.want))
		}
		for id, env := range c.r.got {
			ev, ok := c.want[id]
			if !ok {
				t.Errorf("unexpected delivery %s: %+v", id, env)
				continue
			}
			if env.EventID != ev.ID || env.Kind != ev.Kind || env.Campaign != ev.CampaignID || env.Contact != ev.ContactID ||
				env.Channel != "whatsapp" || env.SubscriptionID != c.sub || !env.Time.Equal(ev.Time) {
				t.Errorf("envelope %+v does not match event %+v", env, ev)
			}
		}
		c.r.mu.Unlock()
	}
	// The log shows each delivery, delivered on the first attempt.
	list, _, _, err := e.store.Deliveries(e.ctx, a.ID, DeliveryFilter{}, 0, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want1) {
		t.Fatalf("log has %d deliveries, want %d", len(list), len(want1))
	}
	for _, d := range list {
		if d.State != StateDelivered || d.Attempts != 1 || d.StatusCode != 204 || d.DeliveredAt.IsZero() {
			t.Errorf("log entry %+v: want delivered at the first attempt with 204", d)
		}
	}
}

// A receiver that refuses connections, then answers 503, then recovers gets every
// event: none lost, repeats only under the same Herald-Webhook-Id. The log shows the
// attempts.
func TestReceiverDownNothingLost(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connection refused until the receiver starts
	r := newReceiver(t)
	var down atomic.Bool
	down.Store(true)
	r.answer = func(int64) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	sub, err := e.store.Create(e.ctx, Spec{URL: "http://" + addr + "/in", Kinds: Kinds})
	if err != nil {
		t.Fatal(err)
	}
	r.secret.Store(sub.Secret)
	e.start(e.config())
	evs := stream(25)
	e.publish(evs)
	want := map[string]bool{}
	for _, ev := range evs {
		if ev.Kind != events.Queued {
			want[DeliveryID(sub.ID, ev.ID)] = true
		}
	}
	// Refused connections: every delivery is attempted and rescheduled.
	waitFor(t, 30*time.Second, "failed attempts while the receiver is away", func() bool {
		list, _, _, err := e.store.Deliveries(e.ctx, sub.ID, DeliveryFilter{}, 0, "", 1000)
		if err != nil || len(list) < len(want) {
			return false
		}
		for _, d := range list {
			if d.Attempts == 0 {
				return false
			}
		}
		return true
	})
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(r)
	srv.Listener = l2
	srv.Start()
	defer srv.Close()
	waitFor(t, 30*time.Second, "503 answers", func() bool { return r.reqs.Load() > 50 })
	if r.count() != 0 {
		t.Fatalf("%d delivered while answering 503", r.count())
	}
	down.Store(false)
	waitFor(t, 60*time.Second, "every delivery after recovery", func() bool { return r.count() >= len(want) })
	e.settled(sub.ID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Fatalf("receiver refused: %v", r.bad[:min(3, len(r.bad))])
	}
	for id := range want {
		if _, ok := r.got[id]; !ok {
			t.Errorf("delivery %s lost", id)
		}
	}
	if len(r.got) != len(want) {
		t.Errorf("got %d distinct deliveries, want %d", len(r.got), len(want))
	}
	list, _, _, err := e.store.Deliveries(e.ctx, sub.ID, DeliveryFilter{State: StateDelivered}, 0, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want) {
		t.Fatalf("log: %d delivered, want %d", len(list), len(want))
	}
	for _, d := range list {
		if d.Attempts < 2 || d.StatusCode != 200 {
			t.Errorf("log entry %+v: want ≥ 2 attempts ending with 200", d)
		}
	}
}

// A deliverer killed with deliveries in flight and events not yet committed loses
// nothing: another takes over the group and the claims once their lease ends.
func TestKilledDelivererLosesNothing(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	release := make(chan struct{})
	var first atomic.Int64
	r.answer = func(n int64) int {
		if first.Load() == 0 {
			first.Store(n)
		}
		select { // the first deliverer's requests hang until it is killed
		case <-release:
		case <-time.After(200 * time.Millisecond):
		}
		return http.StatusOK
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	sub, err := e.store.Create(e.ctx, Spec{URL: srv.URL, Kinds: Kinds})
	if err != nil {
		t.Fatal(err)
	}
	r.secret.Store(sub.Secret)
	cfg := e.config()
	cfg.Drain = -1 // killed: in-flight requests abandoned, nothing recorded
	cfg.Lease = time.Second
	cfg.Concurrency = 4
	cfg.BatchSize = 7
	stop := e.start(cfg)
	evs := stream(40)
	e.publish(evs)
	waitFor(t, 30*time.Second, "the first deliveries", func() bool { return r.count() >= 10 })
	stop()
	close(release)
	before := r.count()
	want := 0
	for _, ev := range evs {
		if ev.Kind != events.Queued {
			want++
		}
	}
	if before >= want {
		t.Fatalf("the first deliverer finished everything (%d) before it was killed", before)
	}
	e.start(cfg)
	waitFor(t, 60*time.Second, "every delivery from the second deliverer", func() bool { return r.count() >= want })
	e.settled(sub.ID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != want || len(r.bad) > 0 {
		t.Fatalf("got %d distinct deliveries (bad %v), want %d", len(r.got), r.bad, want)
	}
	t.Logf("killed after %d deliveries; %d repeated under the same id", before, r.dups)
}

// Bad subscriptions are refused with the field named, and nothing is stored.
func TestBadSubscriptionRefused(t *testing.T) {
	e := newEnv(t)
	ok := Spec{URL: "https://crm.example.com/hook", Kinds: []events.Kind{events.Sent}}
	for _, c := range []struct {
		name  string
		spec  func(*Spec)
		field string
	}{
		{"no url", func(s *Spec) { s.URL = "" }, "url"},
		{"ftp", func(s *Spec) { s.URL = "ftp://x.example.com/" }, "url"},
		{"relative", func(s *Spec) { s.URL = "/hook" }, "url"},
		{"javascript", func(s *Spec) { s.URL = "javascript:alert(1)" }, "url"},
		{"credentials", func(s *Spec) { s.URL = "https://u:p@x.example.com/" }, "url"},
		{"bad port", func(s *Spec) { s.URL = "https://x.example.com:99999/" }, "url"},
		{"no kinds", func(s *Spec) { s.Kinds = nil }, "kinds"},
		{"unknown kind", func(s *Spec) { s.Kinds = []events.Kind{"sent", "queued"} }, "kinds/1"},
		{"repeated kind", func(s *Spec) { s.Kinds = []events.Kind{"sent", "sent"} }, "kinds/1"},
		{"bad campaign", func(s *Spec) { s.Campaigns = []string{"a,b"} }, "campaigns/0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ok
			c.spec(&s)
			_, err := e.store.Create(e.ctx, s)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want a FieldError on %s", err, c.field)
			}
		})
	}
	if list, err := e.store.List(e.ctx); err != nil || len(list) != 0 {
		t.Fatalf("stored %d subscriptions (%v)", len(list), err)
	}
	if v, _ := e.store.Version(e.ctx); v != 0 {
		t.Fatalf("version %d: a refused subscription changed it", v)
	}
	if _, err := e.store.Create(e.ctx, ok); err != nil {
		t.Fatal(err)
	}
}

// Replay sends chosen deliveries again, under their ids, whatever their state; a
// deleted subscription's deliveries stop.
func TestReplayAndDelete(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	srv := httptest.NewServer(r)
	defer srv.Close()
	sub, err := e.store.Create(e.ctx, Spec{URL: srv.URL, Kinds: []events.Kind{events.Sent}})
	if err != nil {
		t.Fatal(err)
	}
	r.secret.Store(sub.Secret)
	e.start(e.config())
	e.publish(stream(5)) // 10 sent events
	waitFor(t, 30*time.Second, "deliveries", func() bool { return r.count() >= 10 })
	e.settled(sub.ID)
	list, _, _, err := e.store.Deliveries(e.ctx, sub.ID, DeliveryFilter{}, 0, "", 3)
	if err != nil || len(list) != 3 {
		t.Fatalf("page of 3: %d %v", len(list), err)
	}
	n, err := e.store.Replay(e.ctx, sub.ID, ReplaySpec{DeliveryIDs: []string{list[0].ID, list[1].ID, "whd_nope"}})
	if err != nil || n != 2 {
		t.Fatalf("replay by ids: %d %v, want 2", n, err)
	}
	waitFor(t, 30*time.Second, "replayed deliveries", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.dups >= 2
	})
	n, err = e.store.Replay(e.ctx, sub.ID, ReplaySpec{From: time.Now().Add(-time.Hour)})
	if err != nil || n != 10 {
		t.Fatalf("replay by time: %d %v, want 10", n, err)
	}
	waitFor(t, 30*time.Second, "replayed range", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.dups >= 12
	})
	e.settled(sub.ID)
	if err := e.store.Delete(e.ctx, sub.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Get(e.ctx, sub.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := e.store.Replay(e.ctx, sub.ID, ReplaySpec{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replay after delete: %v", err)
	}
	reqs := r.reqs.Load()
	e.publish(stream(5))
	lag := func() bool {
		l, err := analytics.Lag(e.ctx, e.brokers, e.group, e.topics.Events)
		return err == nil && l == 0
	}
	waitFor(t, 30*time.Second, "the deliverer to consume", lag)
	if got := r.reqs.Load(); got != reqs {
		t.Fatalf("a deleted subscription got %d more requests", got-reqs)
	}
}

// BenchmarkDeliver measures deliveries/s from herald.events into a local receiver and
// reports them as a share of a raw client's ceiling on the same receiver (the same
// concurrency, bodies and connection pool).
func BenchmarkDeliver(b *testing.B) {
	e := newEnv(b)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	const conc = 16
	body, _ := json.Marshal(EnvelopeOf("wh_x", stream(1)[1]))
	// The ceiling: conc goroutines posting n signed bodies with a pooled client.
	raw := func(n int) float64 {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = conc * 2
		c := &http.Client{Transport: tr}
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(body)))
					req.Header.Set(HeaderSignature, Sign("whsec_x", time.Now().Unix(), body))
					res, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}()
		}
		wg.Wait()
		return float64(n) / time.Since(start).Seconds()
	}
	ceiling := raw(max(2000, b.N))
	sub, err := e.store.Create(e.ctx, Spec{URL: srv.URL, Kinds: []events.Kind{events.Sent}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := e.config()
	cfg.Concurrency, cfg.Poll = conc, 5*time.Millisecond
	e.start(cfg)
	var evs []events.Event
	at := time.Now()
	for i := range b.N {
		ev := events.New(events.Sent, fmt.Sprint("c", i%7), uint32(i+1), at)
		evs = append(evs, ev)
	}
	hits.Store(0)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(evs); i += 5000 {
		e.publish(evs[i:min(i+5000, len(evs))])
	}
	for hits.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	hits.Store(0)
	// The machine is shared: the ceiling is measured before and after, and averaged.
	ceiling = (ceiling + raw(max(2000, b.N))) / 2
	rate := float64(b.N) / el.Seconds()
	b.ReportMetric(rate, "deliveries/s")
	b.ReportMetric(ceiling, "raw/s")
	b.ReportMetric(rate/ceiling, "ratio")
	_ = sub
}

// The wait after the n-th failure doubles from MinBackoff up to MaxBackoff, jittered
// between half and all of it; a longer Retry-After wins, up to MaxBackoff.
func TestBackoff(t *testing.T) {
	d, err := New(Config{Store: NewStore(nil, "x:")})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 20; n++ {
		full := min(5*time.Second<<(n-1), time.Hour)
		if n > 12 {
			full = time.Hour
		}
		for range 50 {
			w := d.backoff(n, attempt{})
			if w < full/2 || w > full {
				t.Fatalf("attempt %d: waited %s, want %s to %s", n, w, full/2, full)
			}
		}
	}
	if w := d.backoff(1, attempt{retryAfter: 2 * time.Minute}); w != 2*time.Minute {
		t.Fatalf("Retry-After 2m: waited %s", w)
	}
	if w := d.backoff(1, attempt{retryAfter: 48 * time.Hour}); w != time.Hour {
		t.Fatalf("Retry-After 48h: waited %s, want MaxBackoff", w)
	}
}

// A replay while the delivery is in flight is not undone by that attempt's outcome:
// the delivery stays due and is sent again.
func TestReplayWhileInFlight(t *testing.T) {
	e := newEnv(t)
	sub, err := e.store.Create(e.ctx, Spec{URL: "https://x.example.com/in", Kinds: Kinds})
	if err != nil {
		t.Fatal(err)
	}
	ev := events.New(events.Sent, "c1", 1, time.Now())
	if n, err := e.store.enqueue(e.ctx, []pending{{sub: sub.ID, event: ev, body: []byte(`{}`)}}); n != 1 || err != nil {
		t.Fatalf("enqueue: %d %v", n, err)
	}
	if n, err := e.store.enqueue(e.ctx, []pending{{sub: sub.ID, event: ev, body: []byte(`{}`)}}); n != 0 || err != nil {
		t.Fatalf("enqueue of a redelivered event: %d %v, want 0", n, err)
	}
	claimed, err := e.store.claim(e.ctx, sub.ID, 10, time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
	if again, _ := e.store.claim(e.ctx, sub.ID, 10, time.Minute); len(again) != 0 {
		t.Fatalf("a claimed delivery was claimed again within its lease")
	}
	if n, err := e.store.Replay(e.ctx, sub.ID, ReplaySpec{DeliveryIDs: []string{claimed[0].ID}}); n != 1 || err != nil {
		t.Fatalf("replay: %d %v", n, err)
	}
	if err := e.store.record(e.ctx, []outcome{{d: claimed[0], a: attempt{status: 200, at: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	list, _, _, err := e.store.Deliveries(e.ctx, sub.ID, DeliveryFilter{}, 0, "", 10)
	if err != nil || len(list) != 1 || list[0].State != StatePending || list[0].Attempts != 1 {
		t.Fatalf("after the in-flight attempt: %+v %v, want pending with 1 attempt", list, err)
	}
	next, err := e.store.claim(e.ctx, sub.ID, 10, time.Minute)
	if err != nil || len(next) != 1 {
		t.Fatalf("the replayed delivery is not due: %d %v", len(next), err)
	}
	if err := e.store.record(e.ctx, []outcome{{d: next[0], a: attempt{status: 200, at: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	list, _, _, _ = e.store.Deliveries(e.ctx, sub.ID, DeliveryFilter{}, 0, "", 10)
	if list[0].State != StateDelivered || list[0].Attempts != 2 {
		t.Fatalf("after the replay's attempt: %+v", list[0])
	}
}

// Redis away while events arrive: nothing is committed until the deliveries are
// stored, so every event is delivered once Redis is back.
func TestRedisAwayNothingLost(t *testing.T) {
	e := newEnv(t)
	proxy := testenv.NewProxy(t, testenv.RedisAddr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second})
	defer rdb.Close()
	e.store = NewStore(rdb, e.store.prefix)
	r := newReceiver(t)
	srv := httptest.NewServer(r)
	defer srv.Close()
	sub, err := e.store.Create(e.ctx, Spec{URL: srv.URL, Kinds: []events.Kind{events.Delivered}})
	if err != nil {
		t.Fatal(err)
	}
	r.secret.Store(sub.Secret)
	e.start(e.config())
	e.publish(stream(5))
	waitFor(t, 30*time.Second, "the first deliveries", func() bool { return r.count() == 10 })
	proxy.Down()
	e.publish(stream(30)) // contacts 1-5 again (stored once: same ids) and 25 more
	time.Sleep(500 * time.Millisecond)
	if lag, err := analytics.Lag(e.ctx, e.brokers, e.group, e.topics.Events); err != nil || lag == 0 {
		t.Fatalf("lag %d (%v): events were committed while Redis was away", lag, err)
	}
	proxy.Up(t)
	waitFor(t, 60*time.Second, "every delivery after Redis is back", func() bool { return r.count() == 60 })
	e.settled(sub.ID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 60 || len(r.bad) > 0 {
		t.Fatalf("got %d distinct deliveries (bad %v), want 60", len(r.got), r.bad)
	}
}

// A receiver that hangs holds up no other: the fast subscription gets every event while
// the slow one has at most Concurrency requests open, and the slow one gets its events
// once it answers.
func TestSlowReceiverHoldsUpNoOther(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	var open, maxOpen atomic.Int64
	slow := newReceiver(t)
	slow.answer = func(int64) int {
		n := open.Add(1)
		for {
			m := maxOpen.Load()
			if n <= m || maxOpen.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		open.Add(-1)
		return http.StatusOK
	}
	fast := newReceiver(t)
	ss, fs := httptest.NewServer(slow), httptest.NewServer(fast)
	defer fs.Close()
	a, err := e.store.Create(e.ctx, Spec{URL: ss.URL, Kinds: []events.Kind{events.Sent}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.store.Create(e.ctx, Spec{URL: fs.URL, Kinds: []events.Kind{events.Sent}})
	if err != nil {
		t.Fatal(err)
	}
	slow.secret.Store(a.Secret)
	fast.secret.Store(b.Secret)
	cfg := e.config()
	cfg.Concurrency = 3
	cfg.Timeout = time.Minute
	e.start(cfg)
	e.publish(stream(50)) // 100 sent events
	waitFor(t, 30*time.Second, "the fast receiver's deliveries", func() bool { return fast.count() == 100 })
	if slow.count() != 0 || maxOpen.Load() > 3 {
		t.Fatalf("slow receiver: %d delivered, %d requests open at most (want 0 and ≤ 3)", slow.count(), maxOpen.Load())
	}
	close(release)
	waitFor(t, 60*time.Second, "the slow receiver's deliveries", func() bool { return slow.count() == 100 })
	ss.Close()
	if m := maxOpen.Load(); m > 3 {
		t.Fatalf("%d requests open at once to one subscription, want ≤ 3", m)
	}
}
