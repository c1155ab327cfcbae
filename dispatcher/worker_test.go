package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fakeChannel is a fake of our Channel interface: it records every send attempt and
// answers with fail (nil: accept).
type fakeChannel struct {
	mu       sync.Mutex
	accepted map[string]int // callback data → accepted sends
	attempts map[string]int
	last     map[string]Message // callback data → last message sent
	fail     func(attempt int, m Message) error
	onSend   func(s Sender, m Message) // called for every attempt, under the lock
}

func newFakeChannel() *fakeChannel {
	return &fakeChannel{accepted: map[string]int{}, attempts: map[string]int{}, last: map[string]Message{}}
}

func (c *fakeChannel) Send(_ context.Context, s Sender, m Message) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Keyed by (campaign, contact); the variant suffix is checked where it matters.
	if cp, contact, _, ok := ParseCallbackVariant(m.CallbackData); ok {
		m.CallbackData = CallbackData(cp, contact)
	}
	c.attempts[m.CallbackData]++
	c.last[m.CallbackData] = m
	if c.onSend != nil {
		c.onSend(s, m)
	}
	if c.fail != nil {
		if err := c.fail(c.attempts[m.CallbackData], m); err != nil {
			return "", err
		}
	}
	c.accepted[m.CallbackData]++
	return fmt.Sprintf("wamid.%s.%d", m.CallbackData, c.attempts[m.CallbackData]), nil
}

func (c *fakeChannel) counts() (accepted, attempts map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, b := map[string]int{}, map[string]int{}
	for k, v := range c.accepted {
		a[k] = v
	}
	for k, v := range c.attempts {
		b[k] = v
	}
	return a, b
}

type memPublisher struct{}

func (memPublisher) WriteMessages(context.Context, ...kafka.Message) error { return nil }

const testTemplate = `name: promo
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: promo
  language: en_US
  category: MARKETING
  body:
    first_name: "{{ name | default: 'there' }}"
variables:
  name: {type: string, default: ""}
`

type rig struct {
	rdb       *redis.Client
	prefix    string
	brokers   []string
	topics    kafkax.Topics
	campaigns *Campaigns
	senders   *Senders
	contacts  *segments.Store
	tpls      *templates.Store
	ids       []uint32
	caps      []throttle.Cap
	pushback  Pushback
	tune      func(*WorkerConfig) // adjusts the workers' config
}

// newRig stores n consented contacts tagged "t", a template, a sender and a campaign store
// writing to kfake.
func newRig(t *testing.T, n int) *rig {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	brokers, topics := testenv.Kafka(t, 3)
	r := &rig{rdb: rdb, prefix: prefix, brokers: brokers, topics: topics}
	r.contacts = segments.NewStore(rdb, prefix)
	cs := make([]segments.Contact, n)
	for i := range cs {
		cs[i] = segments.Contact{Phone: fmt.Sprintf("+6681%07d", i+1), Name: fmt.Sprintf("C%d", i), Tags: []string{"t"}}
	}
	r.addContacts(t, cs)
	r.tpls = templates.NewStore(rdb, prefix)
	tpl, err := templates.ParseFile([]byte(testTemplate), "promo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.tpls.Save(ctx, tpl, []byte(testTemplate)); err != nil {
		t.Fatal(err)
	}
	r.senders = NewSenders(rdb, prefix)
	if err := r.senders.Put(ctx, Sender{ID: "s1", Channel: "whatsapp", PhoneNumberID: "s1", Token: "t", Rate: 2000}); err != nil {
		t.Fatal(err)
	}
	out, evs := kafkax.NewWriter(brokers, topics.Outbound), kafkax.NewWriter(brokers, topics.Events)
	t.Cleanup(func() { out.Close(); evs.Close() })
	r.campaigns = NewCampaigns(CampaignsConfig{Redis: rdb, Prefix: prefix, Segments: r.contacts, Outbound: out, Events: evs, Chunk: 16})
	return r
}

// addContacts stores contacts opted in to WhatsApp marketing and adds them to r.ids.
func (r *rig) addContacts(t *testing.T, cs []segments.Contact) {
	t.Helper()
	if len(cs) == 0 {
		return
	}
	ctx := context.Background()
	ids, err := r.contacts.Upsert(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	r.ids = append(r.ids, ids...)
	var changes []throttle.Change
	for _, id := range ids {
		changes = append(changes, throttle.Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"})
	}
	if _, err := throttle.NewLedger(r.rdb, r.prefix, memPublisher{}).Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
}

// startWorker runs a worker against rdb (the rig's client, or one through a proxy).
func (r *rig) startWorker(t *testing.T, ctx context.Context, rdb redis.UniversalClient, ch Channel) {
	t.Helper()
	cfg := WorkerConfig{
		Brokers: r.brokers, Topics: r.topics,
		Campaigns: NewCampaigns(CampaignsConfig{Redis: rdb, Prefix: r.prefix}), Tracker: NewTracker(rdb, r.prefix),
		Senders: NewSenders(rdb, r.prefix), Contacts: segments.NewStore(rdb, r.prefix),
		Templates: templates.NewCache(templates.NewStore(rdb, r.prefix), templates.CacheConfig{}),
		Policy:    throttle.NewPolicy(rdb, r.prefix, nil).WithCaps(r.caps), Governor: throttle.NewGovernor(rdb, r.prefix),
		Channels: map[string]Channel{"whatsapp": ch}, Events: kafkax.NewWriter(r.brokers, r.topics.Events), Delayed: NewDelayed(rdb, r.prefix),
		DLQ: kafkax.NewWriter(r.brokers, r.topics.DLQ), BatchSize: 25, Pushback: r.pushback,
		Ledger: throttle.NewLedger(rdb, r.prefix, kafkax.NewWriter(r.brokers, r.topics.Consent)),
	}
	if r.tune != nil {
		r.tune(&cfg)
	}
	w := NewWorker(cfg)
	sch := &Scheduler{Delayed: NewDelayed(rdb, r.prefix), Outbound: kafkax.NewWriter(r.brokers, r.topics.Outbound), Redis: rdb, Prefix: r.prefix,
		Poll: 20 * time.Millisecond, Campaigns: NewCampaigns(CampaignsConfig{Redis: rdb, Prefix: r.prefix, Segments: r.contacts,
			Outbound: kafkax.NewWriter(r.brokers, r.topics.Outbound), Events: kafkax.NewWriter(r.brokers, r.topics.Events), Chunk: 16}),
		Tracker: NewTracker(rdb, r.prefix), AdoptEvery: 100 * time.Millisecond}
	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); _ = w.Run(ctx) }()
	go func() { defer func() { done <- struct{}{} }(); _ = sch.Run(ctx) }()
	t.Cleanup(func() { <-done; <-done })
}

func (r *rig) launch(t *testing.T) Campaign {
	t.Helper()
	ctx := context.Background()
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	return cp
}

func (r *rig) waitCompleted(t *testing.T, id string) Status {
	t.Helper()
	return r.waitState(t, id, Completed)
}

func (r *rig) assertOncePerContact(t *testing.T, cp Campaign, accepted map[string]int) {
	t.Helper()
	if len(accepted) != len(r.ids) {
		t.Errorf("%d contacts got messages, want %d", len(accepted), len(r.ids))
	}
	for _, id := range r.ids {
		if n := accepted[CallbackData(cp.ID, id)]; n != 1 {
			t.Errorf("contact %d got %d messages, want exactly 1", id, n)
		}
	}
}

// Two workers share the partitions, and every job is delivered twice (a fan-out replayed
// from an old checkpoint): each contact still gets exactly one message.
func TestWorkersSendOncePerContactDespiteDuplicateJobs(t *testing.T) {
	r := newRig(t, 60)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	// Replay the whole fan-out: the checkpoint is reset, as if the launcher had crashed
	// before saving any of it.
	r.rdb.HSet(ctx, r.prefix+"{cmp:"+cp.ID+"}", "fanout_cursor", 0)
	audience, _ := r.campaigns.snapshot(ctx, cp)
	if err := r.campaigns.fanout(ctx, cp, audience, nil, nil); err != nil {
		t.Fatal(err)
	}
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 60 || st.Done != 60 {
		t.Fatalf("status %+v", st)
	}
	time.Sleep(500 * time.Millisecond) // let the replayed duplicates drain through the workers
	accepted, _ := ch.counts()
	r.assertOncePerContact(t, cp, accepted)
}

// A provider throughput error is retried after its back-off, as a new job, and the
// contact is sent exactly once.
func TestWorkerRetriesRetryableRefusals(t *testing.T) {
	r := newRig(t, 30)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeChannel()
	ch.fail = func(attempt int, _ Message) error {
		if attempt == 1 {
			return &SendError{Code: 130429, Retryable: true, RetryAfter: 50 * time.Millisecond, Action: "retry", Err: errors.New("(#130429) Rate limit hit")}
		}
		return nil
	}
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 30 || st.Failed != 0 {
		t.Fatalf("status %+v", st)
	}
	accepted, attempts := ch.counts()
	r.assertOncePerContact(t, cp, accepted)
	for k, n := range attempts {
		if n != 2 {
			t.Errorf("%s: %d attempts, want 2 (one refused, one accepted)", k, n)
		}
	}
}

// A permanent refusal fails the job with its code; nothing is retried.
func TestWorkerRecordsPermanentFailures(t *testing.T) {
	r := newRig(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeChannel()
	ch.fail = func(int, Message) error {
		return &SendError{Code: 131026, Action: "undeliverable", Err: errors.New("undeliverable")}
	}
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	st := r.waitCompleted(t, cp.ID)
	if st.Failed != 10 || st.Sent != 0 {
		t.Fatalf("status %+v", st)
	}
	_, attempts := ch.counts()
	for k, n := range attempts {
		if n != 1 {
			t.Errorf("%s: %d attempts of a permanent failure, want 1", k, n)
		}
	}
}

// While Redis is unreachable the worker sends nothing (it cannot check consent, claim or
// pace); when Redis returns it sends every job exactly once.
func TestWorkerFailsClosedWhileRedisIsDown(t *testing.T) {
	r := newRig(t, 40)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proxy := testenv.NewProxy(t, r.rdb.Options().Addr)
	wrdb := redis.NewClient(&redis.Options{Addr: proxy.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer wrdb.Close()
	ch := newFakeChannel()
	r.startWorker(t, ctx, wrdb, ch)
	proxy.Down()
	cp := r.launch(t) // the launcher reaches Redis directly; the worker does not
	time.Sleep(2 * time.Second)
	if accepted, attempts := ch.counts(); len(accepted)+len(attempts) != 0 {
		t.Fatalf("%d sends while the worker could not reach Redis", len(attempts))
	}
	proxy.Up(t)
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 40 {
		t.Fatalf("status %+v", st)
	}
	accepted, _ := ch.counts()
	r.assertOncePerContact(t, cp, accepted)
}

// Free-form text goes only to contacts who wrote to that business number in the last
// 24h; the window is per phone number, whatever Herald's sender id is.
func TestFreeFormOnlyInsideTheWindow(t *testing.T) {
	r := newRig(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	text := "name: hello\nchannel: whatsapp\nlocale: en_US\nkind: text\nbody: \"Thanks for writing, {{ name }}!\"\nvariables:\n  name: {type: string, default: \"\"}\n"
	tpl, err := templates.ParseFile([]byte(text), "hello.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.tpls.Save(ctx, tpl, []byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := r.senders.Put(ctx, Sender{ID: "brand-a", Channel: "whatsapp", PhoneNumberID: "pn-1", Token: "t", Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	p := throttle.NewPolicy(r.rdb, r.prefix, nil)
	now := time.Now()
	// Contacts 0-3 wrote 1h ago to pn-1; 4-5 wrote 30h ago; 6 wrote to another number; 7-9 never.
	if err := p.RecordInbound(ctx, "pn-1", r.ids[:6], []time.Time{now.Add(-time.Hour), now.Add(-time.Hour), now.Add(-time.Hour), now.Add(-time.Hour), now.Add(-30 * time.Hour), now.Add(-30 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := p.RecordInbound(ctx, "pn-2", r.ids[6:7], []time.Time{now}); err != nil {
		t.Fatal(err)
	}
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "hello", Senders: []string{"brand-a"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 4 || st.Skipped != 6 {
		t.Fatalf("sent %d, skipped %d; want 4 inside the window, 6 outside", st.Sent, st.Skipped)
	}
	accepted, _ := ch.counts()
	for i, id := range r.ids {
		if want := i < 4; (accepted[CallbackData(cp.ID, id)] == 1) != want {
			t.Errorf("contact %d (index %d): sent %d, want sent=%v", id, i, accepted[CallbackData(cp.ID, id)], want)
		}
	}
}

// A dry run counts exactly what a launch then does, and changes nothing.
func TestDryRunPredictsTheLaunch(t *testing.T) {
	r := newRig(t, 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var revokes []throttle.Change
	for _, id := range r.ids[:5] {
		revokes = append(revokes, throttle.Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: events.Revoke, Source: "keyword"})
	}
	if _, err := throttle.NewLedger(r.rdb, r.prefix, memPublisher{}).Apply(ctx, revokes, false); err != nil {
		t.Fatal(err)
	}
	if err := r.senders.Put(ctx, Sender{ID: "s2", Channel: "whatsapp", PhoneNumberID: "s2", Token: "t", Rate: 5}); err != nil {
		t.Fatal(err)
	}
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1", "s2"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	tpls := templates.NewCache(r.tpls, templates.CacheConfig{})
	policy := throttle.NewPolicy(r.rdb, r.prefix, nil)
	dr, err := r.campaigns.DryRun(ctx, cp.ID, tpls, policy, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if dr.Audience != 20 || dr.WouldSend != 15 || dr.Skipped[throttle.ReasonOptedOut] != 5 || dr.Snapshot {
		t.Fatalf("dry run %+v", dr)
	}
	var s2 SenderPlan
	for _, p := range dr.Senders {
		if p.ID == "s2" {
			s2 = p
		}
	}
	if s2.Contacts == 0 || s2.ETA != time.Duration(float64(s2.Contacts)/5*float64(time.Second)) || dr.ETA != s2.ETA {
		t.Fatalf("sender plans %+v, eta %v", dr.Senders, dr.ETA)
	}
	if st, _ := r.campaigns.Status(ctx, cp.ID); st.State != Draft || st.Queued != 0 {
		t.Fatalf("dry run changed the campaign: %+v", st)
	}
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := r.waitCompleted(t, cp.ID)
	if uint64(st.Sent) != dr.WouldSend || uint64(st.Skipped) != dr.Skipped[throttle.ReasonOptedOut] {
		t.Fatalf("launch sent %d skipped %d; the dry run said %d and %v", st.Sent, st.Skipped, dr.WouldSend, dr.Skipped)
	}
	after, err := r.campaigns.DryRun(ctx, cp.ID, tpls, policy, r.senders)
	if err != nil || !after.Snapshot || after.Audience != 20 {
		t.Fatalf("dry run after launch: %+v, %v", after, err)
	}
}

// Cancelling a running campaign stops it at the workers' next batch: the rest is skipped
// as campaign_cancelled, every contact still ends with exactly one outcome, and nobody
// gets a message twice.
func TestCancelStopsARunningCampaign(t *testing.T) {
	r := newRig(t, 80)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.senders.Put(ctx, Sender{ID: "s1", Channel: "whatsapp", PhoneNumberID: "s1", Token: "t", Rate: 40}); err != nil {
		t.Fatal(err)
	}
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	deadline := time.Now().Add(30 * time.Second)
	for st, _ := r.campaigns.Status(ctx, cp.ID); st.Sent < 5; st, _ = r.campaigns.Status(ctx, cp.ID) {
		if time.Now().After(deadline) {
			t.Fatal("no sends")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, err := r.campaigns.Cancel(ctx, cp.ID); err != nil || st.State != Cancelled {
		t.Fatalf("cancel: %+v, %v", st, err)
	}
	if _, err := r.campaigns.Cancel(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel of an unknown campaign: %v", err)
	}
	var st Status
	for st, _ = r.campaigns.Status(ctx, cp.ID); st.Done < 80; st, _ = r.campaigns.Status(ctx, cp.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not all settled after cancel: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.State != Cancelled || st.Sent+st.Skipped != 80 || st.Sent >= 80 || st.Skipped == 0 {
		t.Fatalf("after cancel: %+v", st)
	}
	accepted, _ := ch.counts()
	if int64(len(accepted)) != st.Sent {
		t.Fatalf("the channel accepted %d, the campaign counts %d sent", len(accepted), st.Sent)
	}
	for k, n := range accepted {
		if n != 1 {
			t.Errorf("%s sent %d times", k, n)
		}
	}
	if again, _ := r.campaigns.Launch(ctx, cp.ID, nil); again.State != Cancelled {
		t.Fatalf("launching a cancelled campaign changed it: %+v", again)
	}
}

// Pause stops sends within ~2 s; nothing is sent while paused; resume finishes the
// campaign. Pausing and resuming over and over never sends anyone twice.
func TestPauseAndResume(t *testing.T) {
	r := newRig(t, 120)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.senders.Put(ctx, Sender{ID: "s1", Channel: "whatsapp", PhoneNumberID: "s1", Token: "t", Rate: 60}); err != nil {
		t.Fatal(err)
	}
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	waitSent := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for st, _ := r.campaigns.Status(ctx, cp.ID); st.Sent < n; st, _ = r.campaigns.Status(ctx, cp.ID) {
			if time.Now().After(deadline) {
				t.Fatalf("sent %d, want %d", st.Sent, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitSent(10)
	if st, err := r.campaigns.Pause(ctx, cp.ID); err != nil || st.State != Paused {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	time.Sleep(2500 * time.Millisecond) // the pause has taken effect everywhere by now
	a1, _ := ch.counts()
	time.Sleep(1500 * time.Millisecond)
	a2, _ := ch.counts()
	if len(a2) != len(a1) {
		t.Fatalf("%d sends while paused", len(a2)-len(a1))
	}
	if st, _ := r.campaigns.Status(ctx, cp.ID); st.State != Paused || st.Sent >= 120 {
		t.Fatalf("paused campaign: %+v", st)
	}
	// Resume, then pause and resume again quickly a few times.
	for i := 0; i < 4; i++ {
		if st, err := r.campaigns.Resume(ctx, cp.ID); err != nil || st.State != Running {
			t.Fatalf("resume %d: %+v, %v", i, st, err)
		}
		time.Sleep(150 * time.Millisecond)
		if i < 3 {
			if _, err := r.campaigns.Pause(ctx, cp.ID); err != nil {
				t.Fatalf("pause %d: %v", i, err)
			}
		}
	}
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 120 || st.Done != 120 {
		t.Fatalf("after resume: %+v", st)
	}
	accepted, _ := ch.counts()
	r.assertOncePerContact(t, cp, accepted)
	if _, err := r.campaigns.Resume(ctx, cp.ID); err == nil {
		t.Fatal("resumed a completed campaign")
	}
}

// With a cap of one marketing message per 72h, a second campaign to the same people is
// skipped as frequency_cap, and a message the provider refused does not use the cap.
func TestFrequencyCapAcrossCampaigns(t *testing.T) {
	r := newRig(t, 12)
	r.caps, _ = throttle.ParseCaps("marketing:1/72h")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeChannel()
	refuse := CallbackData("1", r.ids[0]) // campaign 1's message to the first contact is refused
	ch.fail = func(_ int, m Message) error {
		if m.CallbackData == refuse {
			return &SendError{Code: 131009, Action: "fail_job", Err: errors.New("(#131009) Parameter value is not valid")}
		}
		return nil
	}
	r.startWorker(t, ctx, r.rdb, ch)
	first := r.launch(t)
	if first.ID != "1" {
		t.Fatalf("first campaign id %s", first.ID)
	}
	st := r.waitCompleted(t, first.ID)
	if st.Sent != 11 || st.Failed != 1 {
		t.Fatalf("first campaign: %+v", st)
	}
	second := r.launch(t)
	st = r.waitCompleted(t, second.ID)
	if st.Sent != 1 || st.Skipped != 11 {
		t.Fatalf("second campaign: sent %d skipped %d; want 1 (the contact whose first message was refused) and 11", st.Sent, st.Skipped)
	}
	accepted, _ := ch.counts()
	if accepted[CallbackData(second.ID, r.ids[0])] != 1 {
		t.Fatal("the contact whose first message was refused did not get the second campaign")
	}
}

// Contacts get the template in their locale when it has one, the default otherwise.
func TestContactsGetTheirLocale(t *testing.T) {
	r := newRig(t, 6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var thai []segments.Contact
	for i := 0; i < 3; i++ {
		thai = append(thai, segments.Contact{Phone: fmt.Sprintf("+6681%07d", i+1), Locale: "th"})
	}
	if _, err := r.contacts.Upsert(ctx, thai); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(strings.Replace(testTemplate, "locale: en_US", "locale: th_TH", 1), "  name: promo\n  language: en_US", "  name: promo_th\n  language: th", 1)
	tpl, err := templates.ParseFile([]byte(src), "promo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.tpls.Save(ctx, tpl, []byte(src)); err != nil {
		t.Fatal(err)
	}
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	r.waitCompleted(t, cp.ID)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i, id := range r.ids {
		m := ch.last[CallbackData(cp.ID, id)]
		want := "promo"
		if i < 3 {
			want = "promo_th"
		}
		if m.Rendered.WhatsApp == nil || m.Rendered.WhatsApp.Name != want {
			t.Errorf("contact %d got %+v, want template %s", i, m.Rendered.WhatsApp, want)
		}
	}
}

// slowChannel accepts every message after a fixed latency and records the most
// requests it had in flight at once.
type slowChannel struct {
	*fakeChannel
	latency           time.Duration
	mu                sync.Mutex
	inFlight, maxSeen int
}

func (c *slowChannel) Send(ctx context.Context, s Sender, m Message) (string, error) {
	c.mu.Lock()
	c.inFlight++
	c.maxSeen = max(c.maxSeen, c.inFlight)
	c.mu.Unlock()
	time.Sleep(c.latency)
	c.mu.Lock()
	c.inFlight--
	c.mu.Unlock()
	return c.fakeChannel.Send(ctx, s, m)
}

// A provider that takes 300 ms per request gets the concurrency its sender's rate needs
// (2,000 msg/s × 0.3 s = 600 in flight), beyond the first 64 send goroutines.
func TestWorkerSizesConcurrencyFromRateAndLatency(t *testing.T) {
	r := newRig(t, 600)
	r.tune = func(c *WorkerConfig) { c.BatchSize = 600 }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := &slowChannel{fakeChannel: newFakeChannel(), latency: 300 * time.Millisecond}
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	r.waitCompleted(t, cp.ID)
	accepted, _ := ch.counts()
	r.assertOncePerContact(t, cp, accepted)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.maxSeen <= 64 {
		t.Fatalf("at most %d requests in flight: the pool did not grow past its minimum of 64", ch.maxSeen)
	}
	t.Logf("at most %d requests in flight", ch.maxSeen)
}
