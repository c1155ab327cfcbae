package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// memPublisher is a fake of our Publisher interface.
type memPublisher struct {
	mu   sync.Mutex
	msgs []kafka.Message
	fail bool
}

func (p *memPublisher) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("kafka unavailable")
	}
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *memPublisher) events(t *testing.T) []events.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []events.Event
	for _, m := range p.msgs {
		e, err := events.Unmarshal(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

type fixture struct {
	srv                *httptest.Server
	server             *Server
	evs, inbound, cons *memPublisher
	tracker            *dispatcher.Tracker
	policy             *throttle.Policy
	contact            uint32
	prefix             string
	store              *segments.Store
	rdb                *redis.Client
}

func (f *fixture) policyRedis(testing.TB) *redis.Client { return f.rdb }

const secret = "app-secret"

func setup(t *testing.T) *fixture { t.Helper(); return setupWith(t, nil) }

// setupWith builds the fixture; tune, when not nil, adjusts the server's Config (real
// Kafka writers, group commit settings…) before the server is built.
func setupWith(t *testing.T, tune func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	store := segments.NewStore(rdb, prefix)
	ids, err := store.Upsert(ctx, []segments.Contact{{Phone: "+16505551234", Name: "Sheena"}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{evs: &memPublisher{}, inbound: &memPublisher{}, cons: &memPublisher{}, contact: ids[0], prefix: prefix, store: store, rdb: rdb}
	ledger := throttle.NewLedger(rdb, prefix, f.cons)
	if _, err := ledger.Apply(ctx, []throttle.Change{{ContactID: ids[0], Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"}}, false); err != nil {
		t.Fatal(err)
	}
	f.tracker = dispatcher.NewTracker(rdb, prefix)
	f.policy = throttle.NewPolicy(rdb, prefix, nil)
	// Campaign 5 with this contact as its whole audience, running and fanned out.
	rdb.HSet(ctx, prefix+"{cmp:5}", "state", "running", "audience", 1, "fanout_done", "1")
	reactor := dispatcher.NewReactor(dispatcher.ReactorConfig{Ledger: ledger, Policy: f.policy, Contacts: store, Events: f.evs,
		Campaigns: dispatcher.NewCampaigns(dispatcher.CampaignsConfig{Redis: rdb, Prefix: prefix})})
	cfg := Config{AppSecret: secret, VerifyToken: "vt", Events: f.evs, Inbound: f.inbound, Tracker: f.tracker,
		Policy: f.policy, Ledger: ledger, Reactor: reactor, Contacts: store}
	if tune != nil {
		tune(&cfg)
	}
	f.server = New(cfg)
	f.srv = httptest.NewServer(f.server.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) post(t *testing.T, body, sig string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+"/webhooks/whatsapp", strings.NewReader(body))
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const statusBody = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "statuses":[
  {"id":"wamid.A1","status":"read","timestamp":"1750030080","recipient_id":"16505551234","biz_opaque_callback_data":"5:CONTACT"},
  {"id":"wamid.A1","status":"delivered","timestamp":"1750030075","recipient_id":"16505551234","biz_opaque_callback_data":"5:CONTACT"},
  {"id":"wamid.A1","status":"sent","timestamp":"1750030073","recipient_id":"16505551234","biz_opaque_callback_data":"5:CONTACT",
   "pricing":{"billable":true,"pricing_model":"PMP","category":"marketing"}},
  {"id":"wamid.OTHER","status":"delivered","timestamp":"1750030075","recipient_id":"16505550000"}]}}]}]}`

func TestChallenge(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct {
		query string
		code  int
		body  string
	}{
		{"hub.mode=subscribe&hub.verify_token=vt&hub.challenge=1158201444", 200, "1158201444"},
		{"hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", 403, ""},
		{"hub.mode=unsubscribe&hub.verify_token=vt&hub.challenge=1", 403, ""},
	} {
		resp, err := http.Get(f.srv.URL + "/webhooks/whatsapp?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.body != "" && string(b) != tc.body) {
			t.Errorf("%s: got %d %q, want %d %q", tc.query, resp.StatusCode, b, tc.code, tc.body)
		}
	}
}

func TestForgedAndMalformedWebhooksChangeNothing(t *testing.T) {
	f := setup(t)
	body := strings.ReplaceAll(statusBody, "CONTACT", itoa(f.contact))
	for name, tc := range map[string]struct {
		body, sig string
		code      int
	}{
		"no signature":        {body, "", 401},
		"wrong secret":        {body, graph.Sign("not-the-secret", []byte(body)), 401},
		"tampered body":       {strings.Replace(body, "read", "sent", 1), graph.Sign(secret, []byte(body)), 401},
		"signed, not JSON":    {"{not json", graph.Sign(secret, []byte("{not json")), 400},
		"signed, wrong shape": {`{"object":"page","entry":[]}`, graph.Sign(secret, []byte(`{"object":"page","entry":[]}`)), 400},
	} {
		code, _ := f.post(t, tc.body, tc.sig)
		if code != tc.code {
			t.Errorf("%s: status %d, want %d", name, code, tc.code)
		}
	}
	if n := len(f.evs.events(t)); n != 0 {
		t.Fatalf("rejected webhooks published %d events", n)
	}
	if res, _ := f.tracker.Claim(context.Background(), []dispatcher.Key{{Campaign: "5", Contact: f.contact}}); res[0] != dispatcher.Claimed {
		t.Fatalf("rejected webhooks settled the send (claim result %d)", res[0])
	}
}

func TestStatusesBecomeEventsIdempotently(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	// The worker claimed the job and died after the provider accepted it: in doubt.
	if res, err := f.tracker.Claim(ctx, []dispatcher.Key{{Campaign: "5", Contact: f.contact}}); err != nil || res[0] != dispatcher.Claimed {
		t.Fatalf("claim: %v, %v", res, err)
	}
	body := strings.ReplaceAll(statusBody, "CONTACT", itoa(f.contact))
	for i := 0; i < 2; i++ { // Meta redelivers: the second POST must change no figure
		if code, msg := f.post(t, body, graph.Sign(secret, []byte(body))); code != 200 {
			t.Fatalf("post %d: %d %s", i, code, msg)
		}
	}
	evs := f.evs.events(t)
	ids := map[string]events.Kind{}
	var sent []events.Event
	for _, e := range evs {
		if e.CampaignID != "5" || e.ContactID != f.contact || e.ProviderMessageID != "wamid.A1" {
			t.Errorf("event %+v: wrong campaign, contact or message id", e)
		}
		ids[e.ID] = e.Kind
		if e.Kind == events.Sent {
			sent = append(sent, e)
		}
	}
	// read + delivered on each post, and one sent: the settlement of the in-doubt send.
	if len(evs) != 5 || len(ids) != 3 || len(sent) != 1 {
		t.Fatalf("got %d events with %d distinct ids, %d sent; want 5, 3, 1", len(evs), len(ids), len(sent))
	}
	if sent[0].ID != events.ID("5", f.contact, events.Sent, "") || sent[0].ConsentRef == "" {
		t.Fatalf("settlement event %+v: want the worker's sent id and the consent record in force", sent[0])
	}
	res, err := f.tracker.Claim(ctx, []dispatcher.Key{{Campaign: "5", Contact: f.contact}})
	if err != nil || res[0] != dispatcher.AlreadyDone {
		t.Fatalf("claim after settlement = %v, %v; want AlreadyDone", res, err)
	}
}

// A status for a send the worker recorded itself (or never claimed) settles nothing and
// adds no second sent event.
func TestStatusesOfRecordedSendsSettleNothing(t *testing.T) {
	f := setup(t)
	body := strings.ReplaceAll(statusBody, "CONTACT", itoa(f.contact))
	if code, _ := f.post(t, body, graph.Sign(secret, []byte(body))); code != 200 {
		t.Fatal(code)
	}
	for _, e := range f.evs.events(t) {
		if e.Kind == events.Sent {
			t.Fatalf("a status of an unclaimed send produced a sent event: %+v", e)
		}
	}
	if res, _ := f.tracker.Claim(context.Background(), []dispatcher.Key{{Campaign: "5", Contact: f.contact}}); res[0] != dispatcher.Claimed {
		t.Fatal("a status settled a send nobody claimed")
	}
}

func TestInboundStopRevokesConsentAndOpensWindow(t *testing.T) {
	f := setup(t)
	body := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "contacts":[{"profile":{"name":"Sheena"},"wa_id":"16505551234"}],
 "messages":[{"from":"16505551234","id":"wamid.IN1","timestamp":"` + nowUnix() + `","type":"text","text":{"body":" Stop. "}}]}}]}]}`
	if code, msg := f.post(t, body, graph.Sign(secret, []byte(body))); code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	ds, err := f.policy.Check(context.Background(), []throttle.Job{
		{ContactID: f.contact, SenderID: "106540352242922", Channel: "whatsapp", Purpose: "marketing", FreeForm: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ds[0].Verdict != throttle.Skip || ds[0].Reason != throttle.ReasonOptedOut {
		t.Fatalf("after STOP the policy says %v %q; want skip opted_out", ds[0].Verdict, ds[0].Reason)
	}
	if len(f.inbound.msgs) != 1 || len(f.cons.msgs) != 2 { // grant from setup + the revoke
		t.Fatalf("inbound %d, consent records %d", len(f.inbound.msgs), len(f.cons.msgs))
	}
	rec, err := events.UnmarshalConsent(f.cons.msgs[1].Value)
	if err != nil || rec.Action != events.Revoke || rec.Source != "keyword" || !strings.Contains(rec.Proof, "wamid.IN1") {
		t.Fatalf("revoke record %+v, %v", rec, err)
	}
}

func TestKafkaDownMeansRetryLater(t *testing.T) {
	f := setupWith(t, func(c *Config) { c.Group.Pause = -1 }) // the retry comes at once
	ctx := context.Background()
	key := []dispatcher.Key{{Campaign: "5", Contact: f.contact}}
	if _, err := f.tracker.Claim(ctx, key); err != nil { // an in-doubt send the webhook would settle
		t.Fatal(err)
	}
	f.evs.fail = true
	body := strings.ReplaceAll(statusBody, "CONTACT", itoa(f.contact))
	if code, _ := f.post(t, body, graph.Sign(secret, []byte(body))); code != 503 {
		t.Fatalf("status %d, want 503 so that Meta retries", code)
	}
	if doubt, err := f.tracker.InDoubt(ctx, key); err != nil || !doubt[0].InDoubt {
		t.Fatalf("a webhook whose events were not published settled the send (in doubt: %v, %v)", doubt, err)
	}
	f.evs.fail = false
	if code, _ := f.post(t, body, graph.Sign(secret, []byte(body))); code != 200 {
		t.Fatalf("retry: status %d", code)
	}
	if doubt, _ := f.tracker.InDoubt(ctx, key); doubt[0].InDoubt {
		t.Fatal("Meta's retry did not settle the send")
	}
}

func TestInboundStartRegrantsAfterStop(t *testing.T) {
	f := setup(t)
	send := func(id, text string) {
		body := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "messages":[{"from":"16505551234","id":"` + id + `","timestamp":"` + nowUnix() + `","type":"text","text":{"body":"` + text + `"}}]}}]}]}`
		if code, msg := f.post(t, body, graph.Sign(secret, []byte(body))); code != 200 {
			t.Fatalf("%d %s", code, msg)
		}
	}
	check := func(want throttle.Verdict) {
		ds, err := f.policy.Check(context.Background(), []throttle.Job{{ContactID: f.contact, Channel: "whatsapp", Purpose: "marketing"}})
		if err != nil || ds[0].Verdict != want {
			t.Fatalf("policy: %+v, %v; want %v", ds, err, want)
		}
	}
	send("wamid.S", "STOP")
	check(throttle.Skip)
	send("wamid.T", "hello there") // not a keyword: nothing changes
	check(throttle.Skip)
	send("wamid.U", "start")
	check(throttle.Allow)
	kinds := map[events.Kind]int{}
	for _, e := range f.evs.events(t) {
		kinds[e.Kind]++
	}
	if kinds[events.OptedOut] != 1 || kinds[events.OptedIn] != 1 || len(f.cons.msgs) != 3 {
		t.Fatalf("events %v, consent records %d (want 1 opted_out, 1 opted_in, grant+revoke+grant)", kinds, len(f.cons.msgs))
	}
}

// One webhook settles every in-doubt send it names, each with the consent in force for
// its own contact (one read for all), and nothing for sends recorded or never claimed.
func TestWebhookSettlesManySends(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	ids, err := f.store.Upsert(ctx, []segments.Contact{{Phone: "+16505551235"}, {Phone: "+16505551236"}})
	if err != nil {
		t.Fatal(err)
	}
	noConsent, unclaimed := ids[0], ids[1]
	keys := []dispatcher.Key{{Campaign: "5", Contact: f.contact}, {Campaign: "5", Contact: noConsent}}
	if res, err := f.tracker.Claim(ctx, keys); err != nil || res[0] != dispatcher.Claimed || res[1] != dispatcher.Claimed {
		t.Fatalf("claim: %v, %v", res, err)
	}
	status := func(c uint32, msg, kind string) string {
		return `{"id":"` + msg + `","status":"` + kind + `","timestamp":"1750030073","recipient_id":"1650555","biz_opaque_callback_data":"5:` + itoa(c) + `"}`
	}
	body := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "statuses":[` + status(unclaimed, "wamid.U", "sent") + `,` + status(noConsent, "wamid.N", "sent") + `,` + status(f.contact, "wamid.G", "sent") +
		`,` + status(noConsent, "wamid.N", "delivered") + `]}}]}]}`
	if code, msg := f.post(t, body, graph.Sign(secret, []byte(body))); code != 200 {
		t.Fatalf("post: %d %s", code, msg)
	}
	sent := map[uint32]events.Event{}
	for _, e := range f.evs.events(t) {
		if e.Kind == events.Sent {
			if _, dup := sent[e.ContactID]; dup {
				t.Errorf("two sent events for contact %d", e.ContactID)
			}
			sent[e.ContactID] = e
		}
	}
	if len(sent) != 2 {
		t.Fatalf("sent events for %d contacts, want 2 (the in-doubt ones): %v", len(sent), sent)
	}
	if e := sent[f.contact]; e.ProviderMessageID != "wamid.G" || e.ConsentRef == "" {
		t.Errorf("settlement of the opted-in contact = %+v: want wamid.G and its consent record", e)
	}
	if e := sent[noConsent]; e.ProviderMessageID != "wamid.N" || e.ConsentRef != "" {
		t.Errorf("settlement of the contact without consent = %+v: want wamid.N and no consent record", e)
	}
	if doubt, err := f.tracker.InDoubt(ctx, keys); err != nil || doubt[0].InDoubt || doubt[1].InDoubt {
		t.Fatalf("in doubt after the webhook: %v, %v", doubt, err)
	}
}

// Meta's "Stop promotions" (a user_preferences webhook) revokes WhatsApp marketing in
// the ledger, with the webhook as proof; "resume" grants it again.
func TestUserPreferencesStopAndResume(t *testing.T) {
	f := setup(t)
	body := func(value string, ts int64) string {
		return `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"user_preferences","value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "contacts":[{"profile":{"name":"Sheena"},"wa_id":"16505551234"}],
 "user_preferences":[{"wa_id":"16505551234","detail":"User requested to ` + value + ` marketing messages","category":"marketing_messages","value":"` + value + `","timestamp":` + strconv.FormatInt(ts, 10) + `}]}}]}]}`
	}
	check := func(want throttle.Verdict, reason string) {
		t.Helper()
		ds, err := f.policy.Check(context.Background(), []throttle.Job{{ContactID: f.contact, Channel: "whatsapp", Purpose: "marketing"}})
		if err != nil || ds[0].Verdict != want || ds[0].Reason != reason {
			t.Fatalf("policy: %+v, %v; want %v %q", ds, err, want, reason)
		}
	}
	now := time.Now().Unix()
	b := body("stop", now-10)
	for range 2 { // Meta redelivers: one revoke
		if code, msg := f.post(t, b, graph.Sign(secret, []byte(b))); code != 200 {
			t.Fatalf("%d %s", code, msg)
		}
	}
	check(throttle.Skip, throttle.ReasonOptedOut)
	if len(f.cons.msgs) != 2 {
		t.Fatalf("%d consent records, want the grant and one revoke", len(f.cons.msgs))
	}
	rec, err := events.UnmarshalConsent(f.cons.msgs[1].Value)
	if err != nil || rec.Action != events.Revoke || rec.Source != "provider" || rec.Purpose != "marketing" ||
		!strings.Contains(rec.Proof, "user_preferences stop at "+strconv.FormatInt(now-10, 10)) || rec.Time.Before(time.Unix(now, 0)) {
		t.Fatalf("revoke record %+v, %v", rec, err)
	}
	b = body("resume", now)
	if code, msg := f.post(t, b, graph.Sign(secret, []byte(b))); code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	check(throttle.Allow, "")
	kinds := map[events.Kind]int{}
	for _, e := range f.evs.events(t) {
		kinds[e.Kind]++
	}
	if kinds[events.OptedOut] < 1 || kinds[events.OptedIn] != 1 {
		t.Fatalf("events %v, want opted_out and opted_in", kinds)
	}
	// A preference of someone who is not a contact changes nothing and is still a 200.
	b = strings.ReplaceAll(body("stop", now), "16505551234", "4915100000000")
	if code, _ := f.post(t, b, graph.Sign(secret, []byte(b))); code != 200 || len(f.cons.msgs) != 3 {
		t.Fatalf("stranger's preference: %d, %d consent records", code, len(f.cons.msgs))
	}
}

// A failed status carries out its code's reaction like a refused send: 131050 revokes
// marketing, 131026 suppresses the number.
func TestFailedStatusesAreActedOn(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	ids, err := f.store.Upsert(ctx, []segments.Contact{{Phone: "+16505551299"}})
	if err != nil {
		t.Fatal(err)
	}
	gone := ids[0]
	failed := func(c uint32, msg string, code int) string {
		return `{"id":"` + msg + `","status":"failed","timestamp":"` + nowUnix() + `","recipient_id":"1650555","biz_opaque_callback_data":"5:` + itoa(c) +
			`","errors":[{"code":` + strconv.Itoa(code) + `,"title":"t","message":"m","error_data":{"details":"d"}}]}`
	}
	body := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "statuses":[` + failed(f.contact, "wamid.F1", 131050) + `,` + failed(gone, "wamid.F2", 131026) + `]}}]}]}`
	if code, msg := f.post(t, body, graph.Sign(secret, []byte(body))); code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	ledger := throttle.NewLedger(f.policyRedis(t), f.prefix, f.cons)
	if _, err := ledger.Apply(ctx, []throttle.Change{{ContactID: gone, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"}}, false); err != nil {
		t.Fatal(err)
	}
	ds, err := f.policy.Check(ctx, []throttle.Job{{ContactID: f.contact, Channel: "whatsapp", Purpose: "marketing"}, {ContactID: gone, Channel: "whatsapp", Purpose: "marketing"}})
	if err != nil {
		t.Fatal(err)
	}
	if ds[0].Reason != throttle.ReasonOptedOut || ds[1].Reason != throttle.ReasonUndeliverable {
		t.Fatalf("after the failed statuses: %+v; want opted_out and undeliverable", ds)
	}
	rec, err := events.UnmarshalConsent(f.cons.msgs[1].Value)
	if err != nil || rec.Source != "provider" || !strings.Contains(rec.Proof, "131050") || !strings.Contains(rec.Proof, "wamid.F1") {
		t.Fatalf("revoke record %+v, %v", rec, err)
	}
}

// A send settled by a webhook carries what its worker's policy check relied on (the
// "sending" mark's proof): the utility consent record of a utility campaign, even after
// the contact revoked between the send and the webhook, and the free-form mark that puts
// it under the 24h-window audit.
func TestSettledSendsCarryTheConsentOfTheirSend(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	ledger := throttle.NewLedger(f.policyRedis(t), f.prefix, f.cons)
	grant, err := ledger.Apply(ctx, []throttle.Change{{ContactID: f.contact, Channel: "whatsapp", Purpose: "utility", Action: events.Grant, Source: "api"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	key := []dispatcher.Key{{Campaign: "5", Contact: f.contact}}
	if res, err := f.tracker.Claim(ctx, key); err != nil || res[0] != dispatcher.Claimed {
		t.Fatalf("claim %v %v", res, err)
	}
	proof := dispatcher.SendProof{Channel: "whatsapp", Purpose: "utility", ConsentRef: grant[0].ID, Template: "order_update", FreeForm: true}
	if ok, err := f.tracker.MarkSending(ctx, key, []dispatcher.SendProof{proof}); err != nil || !ok[0] {
		t.Fatalf("mark %v %v", ok, err)
	}
	// The worker dies; the contact revokes both purposes before the webhook comes.
	if _, err := ledger.Apply(ctx, []throttle.Change{
		{ContactID: f.contact, Channel: "whatsapp", Purpose: "utility", Action: events.Revoke, Source: "keyword"},
		{ContactID: f.contact, Channel: "whatsapp", Purpose: "marketing", Action: events.Revoke, Source: "keyword"},
	}, false); err != nil {
		t.Fatal(err)
	}
	body := strings.ReplaceAll(statusBody, "CONTACT", itoa(f.contact))
	if code, msg := f.post(t, body, graph.Sign(secret, []byte(body))); code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	var sent []events.Event
	for _, e := range f.evs.events(t) {
		if e.Kind == events.Sent {
			sent = append(sent, e)
		}
	}
	if len(sent) != 1 {
		t.Fatalf("%d sent events, want 1", len(sent))
	}
	if e := sent[0]; e.ConsentRef != grant[0].ID || e.Reason != events.ReasonFreeForm || e.Template != "order_update" || e.ProviderMessageID != "wamid.A1" {
		t.Fatalf("settled event %+v; want consent %s, reason free_form, template order_update", e, grant[0].ID)
	}
}
