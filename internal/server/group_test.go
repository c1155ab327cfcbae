package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/whatsapp"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// inboundEvents returns the inbound messages published, as events keyed by message id.
func (p *memPublisher) inboundEvents(t *testing.T) []events.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []events.Event
	for _, m := range p.msgs {
		var in events.Inbound
		if err := json.Unmarshal(m.Value, &in); err != nil {
			t.Fatal(err)
		}
		out = append(out, events.Event{ID: "inbound:" + in.ID, Kind: "inbound", ContactID: in.ContactID})
	}
	return out
}

// statusPost is a Meta-shaped webhook body with one status of campaign 5's message to
// contact c.
func statusPost(c uint32, kind string) string {
	return `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{` +
		`"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},` +
		`"statuses":[{"id":"wamid.M` + itoa(c) + `","status":"` + kind + `","timestamp":"1750030073","recipient_id":"1650555",` +
		`"biz_opaque_callback_data":"5:` + itoa(c) + `"}]}}]}]}`
}

// inDoubtContacts adds n contacts whose sends of campaign 5 are claimed and unfinished:
// every status webhook about them settles a send, as after a worker died.
func inDoubtContacts(t *testing.T, f *fixture, n int) []uint32 {
	t.Helper()
	ctx := context.Background()
	cs := make([]segments.Contact, n)
	for i := range cs {
		cs[i].Phone = fmt.Sprintf("+1650556%04d", i)
	}
	ids, err := f.store.Upsert(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]dispatcher.Key, n)
	for i, id := range ids {
		keys[i] = dispatcher.Key{Campaign: "5", Contact: id}
	}
	if _, err := f.tracker.Claim(ctx, keys); err != nil {
		t.Fatal(err)
	}
	return ids
}

// postAll posts bodies over conc connections and returns each one's HTTP status and
// how long it took.
func postAll(t *testing.T, url string, bodies []string, conc int) ([]int, []time.Duration) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	codes, took := make([]int, len(bodies)), make([]time.Duration, len(bodies))
	var wg sync.WaitGroup
	next := make(chan int)
	for range conc {
		wg.Go(func() {
			for i := range next {
				start := time.Now()
				req, _ := http.NewRequest("POST", url+"/webhooks/whatsapp", strings.NewReader(bodies[i]))
				req.Header.Set(graph.SignatureHeader, graph.Sign(secret, []byte(bodies[i])))
				resp, err := hc.Do(req)
				took[i] = time.Since(start)
				if err != nil {
					codes[i] = -1
					continue
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			}
		})
	}
	for i := range bodies {
		next <- i
	}
	close(next)
	wg.Wait()
	return codes, took
}

// topicEvents reads every event of a one-partition topic.
func topicEvents(t *testing.T, brokers []string, topic string) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	last, err := conn.ReadLastOffset()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var out []events.Event
	for int64(len(out)) < last {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s after %d of %d: %v", topic, len(out), last, err)
		}
		e, err := events.Unmarshal(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// wantEvents is what sent, delivered and read of campaign 5's in-doubt sends to ids
// must publish: the settlement of each send, and its delivered and read.
func wantEvents(ids []uint32) map[string]bool {
	want := map[string]bool{}
	for _, c := range ids {
		for _, k := range []events.Kind{events.Sent, events.Delivered, events.Read} {
			want[events.ID("5", c, k, "")] = true
		}
	}
	return want
}

func threeStatuses(ids []uint32) []string {
	var bodies []string
	for _, k := range []string{"sent", "delivered", "read"} {
		for _, c := range ids {
			bodies = append(bodies, statusPost(c, k))
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })
	return bodies
}

// TestGroupCommitLandsConcurrentPostsOnce: many concurrent one-status POSTs into a real
// Kafka and Redis are all answered 200, and every event is in Kafka exactly once.
func TestGroupCommitLandsConcurrentPostsOnce(t *testing.T) {
	brokers, topics := testenv.Kafka(t, 1)
	w := kafkax.NewWriter(brokers, topics.Events)
	t.Cleanup(func() { w.Close() })
	f := setupWith(t, func(c *Config) { c.Events = w })
	ids := inDoubtContacts(t, f, 300)
	codes, _ := postAll(t, f.srv.URL, threeStatuses(ids), 64)
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("POST %d: status %d", i, c)
		}
	}
	got := topicEvents(t, brokers, topics.Events)
	want := wantEvents(ids)
	seen := map[string]int{}
	for _, e := range got {
		seen[e.ID]++
		if !want[e.ID] {
			t.Errorf("unexpected event %+v", e)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("event %s published %d times, want once", id, seen[id])
		}
	}
	keys := make([]dispatcher.Key, len(ids))
	for i, c := range ids {
		keys[i] = dispatcher.Key{Campaign: "5", Contact: c}
	}
	doubt, err := f.tracker.InDoubt(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range doubt {
		if d.InDoubt {
			t.Errorf("send to contact %d still in doubt", ids[i])
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestKafkaOutageAnswers503FastAndLosesNothing: with the broker gone, every webhook is
// answered 503 within the group commit's timeout (never held until the provider gives
// up); once a broker is back, the provider's retries of the same POSTs land every event.
func TestKafkaOutageAnswers503FastAndLosesNothing(t *testing.T) {
	port := freePort(t)
	k, err := kafkax.StartEmbedded(port)
	if err != nil {
		t.Fatal(err)
	}
	topics := kafkax.NewTopics("herald.")
	ctx := context.Background()
	if err := kafkax.EnsureTopics(ctx, k.Brokers, topics.All(), 1); err != nil {
		t.Fatal(err)
	}
	w := kafkax.NewWriter(k.Brokers, topics.Events)
	t.Cleanup(func() { w.Close() })
	const timeout = 700 * time.Millisecond
	f := setupWith(t, func(c *Config) { c.Events, c.Group.Timeout = w, timeout })
	ids := inDoubtContacts(t, f, 41)
	first, ids := ids[0], ids[1:]
	bodies := threeStatuses(ids)
	// The writer knows the broker, then it goes away.
	if codes, _ := postAll(t, f.srv.URL, []string{statusPost(first, "delivered")}, 1); codes[0] != 200 {
		t.Fatalf("before the outage: status %d", codes[0])
	}
	k.Close()
	codes, took := postAll(t, f.srv.URL, bodies, 32)
	for i, c := range codes {
		if c != http.StatusServiceUnavailable {
			t.Fatalf("POST %d during the outage: status %d, want 503", i, c)
		}
		if took[i] > timeout+time.Second {
			t.Errorf("POST %d during the outage took %s (timeout %s)", i, took[i], timeout)
		}
	}
	k, err = kafkax.StartEmbedded(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	if err := kafkax.EnsureTopics(ctx, k.Brokers, topics.All(), 1); err != nil {
		t.Fatal(err)
	}
	// The provider retries what was refused until it is accepted.
	todo := bodies
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == 30 {
			t.Fatalf("%d POSTs still refused after the broker came back", len(todo))
		}
		codes, _ := postAll(t, f.srv.URL, todo, 32)
		var again []string
		for i, c := range codes {
			if c != 200 {
				again = append(again, todo[i])
			}
		}
		todo = again
	}
	// Every event is there (the new broker lost only the first POST's); a copy the
	// writer retried on its own may repeat an id, never add another event.
	want := wantEvents(ids)
	seen := map[string]bool{}
	for _, e := range topicEvents(t, k.Brokers, topics.Events) {
		if !want[e.ID] && e.ContactID != first {
			t.Errorf("unexpected event %+v", e)
		}
		seen[e.ID] = true
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("event %s lost", id)
		}
	}
}

// TestRedisOutageAnswers503Fast: without Redis the settlement cannot be checked: 503
// within the timeout, and the retry after Redis is back is accepted.
func TestRedisOutageAnswers503Fast(t *testing.T) {
	proxy := testenv.NewProxy(t, testenv.RedisAddr(t))
	const timeout = 500 * time.Millisecond
	f := setup(t)
	ids := inDoubtContacts(t, f, 5)
	// A second server on the same prefix whose Redis goes through the proxy.
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	s2 := New(Config{AppSecret: secret, Events: &memPublisher{}, Inbound: &memPublisher{},
		Tracker: dispatcher.NewTracker(rdb, f.prefix), Policy: throttle.NewPolicy(rdb, f.prefix, nil),
		Contacts: segments.NewStore(rdb, f.prefix), Group: GroupConfig{Timeout: timeout}})
	f2 := httptest.NewServer(s2.Handler())
	t.Cleanup(f2.Close)
	proxy.Down()
	body := statusPost(ids[0], "delivered")
	codes, took := postAll(t, f2.URL, []string{body}, 1)
	if codes[0] != http.StatusServiceUnavailable || took[0] > timeout+time.Second {
		t.Fatalf("with Redis down: status %d after %s, want 503 within %s", codes[0], took[0], timeout)
	}
	proxy.Up(t)
	// The provider retries (requests are refused for a moment after a failure).
	for deadline := time.Now().Add(10 * time.Second); ; {
		codes, _ := postAll(t, f2.URL, []string{body}, 1)
		if codes[0] == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry with Redis back: status %d", codes[0])
		}
	}
}

// TestGroupedIngestEqualsOneByOne: carrying out random webhook batches as concurrent
// groups publishes the same events, and leaves the same sends settled, as carrying them
// out one at a time.
func TestGroupedIngestEqualsOneByOne(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			one := setup(t)
			grouped := setupWith(t, func(c *Config) { c.Group = GroupConfig{Window: 2 * time.Millisecond, MaxItems: 7} })
			ids := inDoubtContacts(t, one, 30)
			if ids2 := inDoubtContacts(t, grouped, 30); fmt.Sprint(ids2) != fmt.Sprint(ids) {
				t.Fatalf("fixtures differ: %v %v", ids, ids2)
			}
			all := append([]uint32{one.contact}, ids...)
			var batches []Batch
			for range 60 {
				batches = append(batches, randomBatch(t, r, all))
			}
			ctx := context.Background()
			for _, b := range batches {
				if err := one.server.ingest(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make([]error, len(batches))
			for i, b := range batches {
				wg.Go(func() { errs[i] = grouped.server.commit.Submit(b) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			a, b := eventSet(t, one), eventSet(t, grouped)
			if len(a) != len(b) {
				t.Errorf("one by one: %d distinct events, grouped: %d", len(a), len(b))
			}
			for id, e := range a {
				if b[id] != e {
					t.Errorf("event %s: one by one %+v, grouped %+v", id, e, b[id])
				}
			}
			keys := make([]dispatcher.Key, len(ids))
			for i, c := range ids {
				keys[i] = dispatcher.Key{Campaign: "5", Contact: c}
			}
			da, _ := one.tracker.InDoubt(ctx, keys)
			db, _ := grouped.tracker.InDoubt(ctx, keys)
			for i := range keys {
				if da[i].InDoubt != db[i].InDoubt {
					t.Errorf("contact %d: in doubt one by one %v, grouped %v", ids[i], da[i].InDoubt, db[i].InDoubt)
				}
			}
		})
	}
}

// eventKey is what must agree between two ingestions (times of settlements are "now").
type eventKey struct {
	Kind                 events.Kind
	Campaign, MessageID  string
	Contact              uint32
	ConsentRef, Reason   string
	ErrorCode, Published int
}

func eventSet(t *testing.T, f *fixture) map[string]eventKey {
	out := map[string]eventKey{}
	for _, e := range append(f.evs.events(t), f.inbound.inboundEvents(t)...) {
		k := eventKey{Kind: e.Kind, Campaign: e.CampaignID, MessageID: e.ProviderMessageID, Contact: e.ContactID,
			ConsentRef: e.ConsentRef, Reason: e.Reason, ErrorCode: e.ErrorCode}
		if e.ConsentRef != "" {
			k.ConsentRef = "set" // record ids differ between the two fixtures' ledgers
		}
		out[e.ID] = k
	}
	return out
}

// randomBatch decodes a random signed-shape webhook: 1–3 statuses (sent, delivered,
// read, failed 131026), sometimes an inbound reply.
func randomBatch(t *testing.T, r *rand.Rand, contacts []uint32) Batch {
	t.Helper()
	var sts []string
	for range 1 + r.IntN(3) {
		c := contacts[r.IntN(len(contacts))]
		kind := []string{"sent", "delivered", "read", "read", "failed"}[r.IntN(5)]
		st := `{"id":"wamid.M` + itoa(c) + `","status":"` + kind + `","timestamp":"1750030073","recipient_id":"1650555","biz_opaque_callback_data":"5:` + itoa(c) + `"`
		if kind == "failed" {
			st += `,"errors":[{"code":131026,"title":"Message undeliverable"}]`
		}
		sts = append(sts, st+"}")
	}
	msgs := ""
	if r.IntN(4) == 0 {
		i := r.IntN(30)
		msgs = `,"contacts":[{"profile":{"name":"X"},"wa_id":"1650556` + fmt.Sprintf("%04d", i) + `"}],"messages":[{"from":"1650556` +
			fmt.Sprintf("%04d", i) + `","id":"wamid.IN` + strconv.Itoa(r.IntN(1000)) + `","timestamp":"1750030080","type":"text","text":{"body":"thanks"}}]`
	}
	body := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{` +
		`"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},` +
		`"statuses":[` + strings.Join(sts, ",") + `]` + msgs + `}}]}]}`
	n, err := graph.ParseNotification([]byte(body))
	if err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var b Batch
	b.Reports, b.Inbound, b.Preferences = whatsapp.Decode(n)
	return b
}

// TestGroupIsolatesAFailingRequest: a request whose batch fails every time (here a
// failed status while no Reactor is configured) is answered 503 alone; the requests
// grouped with it are carried out.
func TestGroupIsolatesAFailingRequest(t *testing.T) {
	f := setupWith(t, func(c *Config) { c.Reactor, c.Group.Window = nil, 20*time.Millisecond })
	ids := inDoubtContacts(t, f, 6)
	bad := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{` +
		`"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},` +
		`"statuses":[{"id":"wamid.X","status":"failed","timestamp":"1750030073","recipient_id":"1650555",` +
		`"biz_opaque_callback_data":"5:` + itoa(ids[0]) + `","errors":[{"code":131026,"title":"Message undeliverable"}]}]}}]}]}`
	bodies := []string{bad}
	for _, c := range ids[1:] {
		bodies = append(bodies, statusPost(c, "delivered"))
	}
	codes, _ := postAll(t, f.srv.URL, bodies, len(bodies))
	if codes[0] != http.StatusServiceUnavailable {
		t.Errorf("the failing request: status %d, want 503", codes[0])
	}
	for i, c := range codes[1:] {
		if c != 200 {
			t.Errorf("request %d grouped with the failing one: status %d", i+1, c)
		}
	}
	got := map[string]bool{}
	for _, e := range f.evs.events(t) {
		got[e.ID] = true
	}
	for _, c := range ids[1:] {
		if !got[events.ID("5", c, events.Delivered, "")] {
			t.Errorf("delivered of contact %d not published", c)
		}
	}
}
