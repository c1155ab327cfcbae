package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

const testSMSTemplate = "name: promo_sms\nchannel: sms\nlocale: en_US\nkind: text\nbody: \"Hi {{ name | default: 'there' }}, 20% off. Reply STOP to opt out.\"\nvariables:\n  name: {type: string, default: \"\"}\n"

// Contact classes of the failover rig, by contact number i (1-based): WhatsApp consent
// when i%3 != 0, SMS consent when i is even. So i%6 == 0: SMS only; 2, 4: both; 1, 5:
// WhatsApp only; 3: neither.
func waConsent(i int) bool  { return i%3 != 0 }
func smsConsent(i int) bool { return i%2 == 0 }

type failoverRig struct {
	*rig
	wa, sms *fakeChannel
	regs    []*prometheus.Registry // one per worker
	byNum   map[uint32]int         // contact id → its number i
}

// newFailoverRig stores n contacts with the classes above, an SMS sender s2 and its
// template, and runs workers whose channels are two fake channels.
func newFailoverRig(t *testing.T, n, workers int, breaker BreakerConfig, tune func(*WorkerConfig)) *failoverRig {
	t.Helper()
	ctx := context.Background()
	r := &failoverRig{rig: newRig(t, 0), wa: newFakeChannel(), sms: newFakeChannel(), byNum: map[uint32]int{}}
	cs := make([]segments.Contact, n)
	for i := range cs {
		cs[i] = segments.Contact{Phone: fmt.Sprintf("+6681%07d", i+1), Name: fmt.Sprintf("C%d", i+1), Tags: []string{"t"}}
	}
	ids, err := r.contacts.Upsert(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	r.ids = ids
	var changes []throttle.Change
	for k, id := range ids {
		i := k + 1
		r.byNum[id] = i
		if waConsent(i) {
			changes = append(changes, throttle.Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"})
		}
		if smsConsent(i) {
			changes = append(changes, throttle.Change{ContactID: id, Channel: "sms", Purpose: "marketing", Action: events.Grant, Source: "api"})
		}
	}
	if _, err := throttle.NewLedger(r.rdb, r.prefix, memPublisher{}).Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(testSMSTemplate), "promo_sms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.tpls.Save(ctx, tpl, []byte(testSMSTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := r.senders.Put(ctx, Sender{ID: "s2", Channel: "sms", Token: "t", Rate: 2000, Settings: map[string]string{"account_sid": "AC1", "from": "+15550001"}}); err != nil {
		t.Fatal(err)
	}
	r.tune = func(cfg *WorkerConfig) {
		cfg.Channels = map[string]Channel{"whatsapp": r.wa, "sms": r.sms}
		cfg.Failover = NewFailover(r.rdb, r.prefix, NewDelayed(r.rdb, r.prefix))
		cfg.Breaker = NewBreaker(r.rdb, r.prefix, breaker)
		reg := prometheus.NewRegistry()
		r.regs = append(r.regs, reg)
		cfg.Registerer = reg
		if tune != nil {
			tune(cfg)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	for range workers {
		r.startWorker(t, ctx, r.rdb, nil)
	}
	t.Cleanup(cancel)
	return r
}

// launchPolicy creates and launches a WhatsApp-then-SMS campaign.
func (r *failoverRig) launchPolicy(t *testing.T, cp Campaign) Campaign {
	t.Helper()
	cp.Segment, cp.Template, cp.Senders = "t", "promo", []string{"s1"}
	cp.Fallback = []ChannelSenders{{Channel: "sms", Senders: []string{"s2"}, Template: "promo_sms"}}
	cp.MaxErrorRate = -1
	cp = r.create(t, cp)
	if _, err := r.campaigns.Launch(context.Background(), cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	return cp
}

// waitFallbacks polls until the campaign's first sends are done and n fallback requests
// have an outcome.
func (r *failoverRig) waitFallbacks(t *testing.T, cp Campaign, n int64) FallbackProgress {
	t.Helper()
	r.waitCompleted(t, cp.ID)
	var fp FallbackProgress
	checkFor(t, fmt.Sprintf("%d fallback outcomes", n), func() bool {
		var err error
		fp, err = r.campaigns.FallbackProgress(context.Background(), cp.ID)
		return err == nil && fp.Done >= n
	})
	return fp
}

// allEvents reads every event of campaign on the rig's events topic, one per id.
func (r *rig) allEvents(t *testing.T, campaign string) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]bool{}
	var out []events.Event
	for p := range 3 {
		conn, err := kafka.DialLeader(ctx, "tcp", r.brokers[0], r.topics.Events, p)
		if err != nil {
			t.Fatal(err)
		}
		end, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: r.brokers, Topic: r.topics.Events, Partition: p, MaxWait: 50 * time.Millisecond})
		for off := int64(0); off < end; {
			m, err := rd.FetchMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			off = m.Offset + 1
			e, err := events.Unmarshal(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if e.CampaignID == campaign && !seen[e.ID] {
				seen[e.ID] = true
				out = append(out, e)
			}
		}
		rd.Close()
	}
	return out
}

func (r *failoverRig) cb(cp Campaign, id uint32) string { return CallbackData(cp.ID, id) }

// A permanent failure on WhatsApp moves the contact to SMS when it consented to SMS, once;
// a contact whose first usable channel is SMS goes there directly (no fallback); a
// contact with no consented channel is skipped. Duplicated fallback requests, from two
// workers at once, send nothing more.
func TestFailoverOnPermanentFailure(t *testing.T) {
	const n = 60
	undeliverable := &SendError{Code: 131026, Action: ActionUndeliverable, Err: errors.New("message undeliverable")}
	r := newFailoverRig(t, n, 2, BreakerConfig{}, nil)
	r.wa.fail = func(int, Message) error { return undeliverable }
	cp := r.launchPolicy(t, Campaign{FallbackOn: []string{FallbackPermanentFailure}})
	// Requests: contacts that WhatsApp refused (classes 1, 2, 4, 5).
	var refused int64
	for i := 1; i <= n; i++ {
		if waConsent(i) {
			refused++
		}
	}
	fp := r.waitFallbacks(t, cp, refused)
	st, _ := r.campaigns.Status(context.Background(), cp.ID)
	waAccepted, waAttempts := r.wa.counts()
	smsAccepted, smsAttempts := r.sms.counts()
	if len(waAccepted) != 0 {
		t.Fatalf("WhatsApp accepted %d messages; it refuses all", len(waAccepted))
	}
	fallbacks := map[uint32]events.Event{}
	sent := map[uint32][]events.Event{}
	skipped := map[uint32][]events.Event{}
	for _, e := range r.allEvents(t, cp.ID) {
		switch e.Kind {
		case events.Fallback:
			if _, dup := fallbacks[e.ContactID]; dup {
				t.Errorf("contact %d: two fallback events", e.ContactID)
			}
			fallbacks[e.ContactID] = e
		case events.Sent:
			sent[e.ContactID] = append(sent[e.ContactID], e)
		case events.Skipped:
			skipped[e.ContactID] = append(skipped[e.ContactID], e)
		}
	}
	for _, id := range r.ids {
		i, key := r.byNum[id], r.cb(cp, id)
		wantWA, wantSMS := 0, 0
		switch {
		case waConsent(i):
			wantWA = 1
			if smsConsent(i) {
				wantSMS = 1
			}
		case smsConsent(i):
			wantSMS = 1
		}
		if waAttempts[key] != wantWA || smsAttempts[key] != wantSMS || smsAccepted[key] != wantSMS {
			t.Errorf("contact #%d: %d WhatsApp attempts, %d SMS attempts (%d accepted); want %d and %d", i,
				waAttempts[key], smsAttempts[key], smsAccepted[key], wantWA, wantSMS)
		}
		fb, fell := fallbacks[id]
		if wantFell := waConsent(i) && smsConsent(i); fell != wantFell {
			t.Errorf("contact #%d: fallback event %v, want %v", i, fell, wantFell)
		} else if fell && (fb.FromChannel != "whatsapp" || fb.Channel != "sms" || fb.Reason != FallbackPermanentFailure || fb.ErrorCode != 131026 || fb.SenderID != "s2") {
			t.Errorf("contact #%d: fallback event %+v", i, fb)
		}
		if wantSMS == 1 {
			if len(sent[id]) != 1 || sent[id][0].Channel != "sms" || sent[id][0].ConsentRef == "" {
				t.Errorf("contact #%d: sent events %+v, want one on sms with its consent", i, sent[id])
			}
		}
		if !waConsent(i) && !smsConsent(i) && (len(skipped[id]) != 1 || skipped[id][0].Reason != throttle.ReasonNoConsent) {
			t.Errorf("contact #%d: skipped events %+v, want one no_consent", i, skipped[id])
		}
	}
	if st.Failed != refused || fp.Sent != refused/2+refused%2 && fp.Sent+fp.Skipped != refused {
		t.Errorf("status %+v, fallbacks %+v", st, fp)
	}

	// Every fallback request again, twice, with other triggers too: all fired already.
	var dups []Job
	for _, id := range r.ids {
		if !waConsent(r.byNum[id]) {
			continue // never sent on WhatsApp: nothing asks for a fallback from it
		}
		for _, reason := range []string{FallbackPermanentFailure, FallbackNotDelivered} {
			dups = append(dups, Job{Campaign: cp.ID, Contact: id, Sender: "s1", Stage: 1, From: "whatsapp", Reason: reason})
		}
	}
	if err := NewDelayed(r.rdb, r.prefix).Add(context.Background(), dups); err != nil {
		t.Fatal(err)
	}
	checkFor(t, "the duplicate requests to drain", func() bool {
		st, err := NewDelayed(r.rdb, r.prefix).Stats(context.Background())
		return err == nil && st.Jobs == 0
	})
	checkFor(t, "the workers to drop the duplicates", func() bool {
		return r.jobsCount("duplicate") >= float64(2*refused)
	})
	if fp2, _ := r.campaigns.FallbackProgress(context.Background(), cp.ID); fp2 != fp {
		// A contact never requested before (no WhatsApp consent) may be decided now, by
		// a request that fires; nothing may be sent twice.
		t.Logf("fallback progress %+v → %+v", fp, fp2)
	}
	smsAccepted2, _ := r.sms.counts()
	for k, v := range smsAccepted2 {
		if v > 1 || v != smsAccepted[k] && smsAccepted[k] != 0 {
			t.Errorf("%s: %d SMS after duplicated requests, want %d", k, v, smsAccepted[k])
		}
	}
}

// jobsCount sums the workers' herald_worker_jobs_total for outcome.
func (r *failoverRig) jobsCount(outcome string) float64 {
	var n float64
	for _, reg := range r.regs {
		n += jobsCount(reg, outcome)
	}
	return n
}

// jobsCount is a worker's herald_worker_jobs_total for outcome in reg.
func jobsCount(reg *prometheus.Registry, outcome string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "herald_worker_jobs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// The compare-and-set: however many requests race, from whatever channel, one fallback
// fires per (campaign, contact), and every request that may proceed agrees on it.
func TestFallbackFiresOnce(t *testing.T) {
	rdb, prefix := newRig(t, 0).rdb, newRig(t, 0).prefix
	ctx := context.Background()
	f := NewFailover(rdb, prefix, NewDelayed(rdb, prefix))
	const contacts, racers = 50, 16
	type res struct {
		from  string
		fired Fired
		ok    bool
	}
	results := make([][]res, contacts)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := []string{"whatsapp", "sms", "email"}[g%3]
			reason := FallbackTriggers[g%len(FallbackTriggers)]
			jobs := make([]Job, contacts)
			for c := range jobs {
				jobs[c] = Job{Campaign: "7", Contact: uint32(c + 1), Sender: "s", Stage: 1, From: from, Reason: reason, Code: g}
			}
			fired, ok, err := f.Fire(ctx, jobs)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			for c := range jobs {
				results[c] = append(results[c], res{from, fired[c], ok[c]})
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for c, rs := range results {
		var winner *Fired
		for _, r := range rs {
			if !r.ok {
				continue
			}
			if r.fired.From != r.from {
				t.Errorf("contact %d: a request from %s proceeded with a fallback from %s", c+1, r.from, r.fired.From)
			}
			if winner == nil {
				winner = &r.fired
			} else if *winner != r.fired {
				t.Errorf("contact %d: two fallbacks fired: %+v and %+v", c+1, *winner, r.fired)
			}
		}
		if winner == nil {
			t.Errorf("contact %d: no request fired", c+1)
			continue
		}
		for _, r := range rs {
			if r.ok != (r.from == winner.From) {
				t.Errorf("contact %d: request from %s ok=%v with the fallback fired from %s", c+1, r.from, r.ok, winner.From)
			}
		}
	}
}

// Not delivered within N: the durable timer falls back for first sends without a
// delivery report, and not for the delivered ones; a late delivery of the first send is
// recorded but triggers nothing, and a late failure of it sends nothing more.
func TestFailoverNotDeliveredWithin(t *testing.T) {
	const n = 24
	ctx := context.Background()
	r := newFailoverRig(t, n, 1, BreakerConfig{}, nil)
	fo := NewFailover(r.rdb, r.prefix, NewDelayed(r.rdb, r.prefix))
	var cpID string
	var mu sync.Mutex
	// Contacts with an odd index among the WhatsApp ones report a delivery at once
	// (the fake provider's status webhook, through Observe as serve does).
	r.wa.onSend = func(s Sender, m Message) {
		cp, contact, ok := ParseCallbackData(m.CallbackData)
		mu.Lock()
		deliver := ok && cp == cpID && r.byNum[contact]%4 == 1
		mu.Unlock()
		if deliver {
			if _, err := fo.Observe(ctx, []Report{{Kind: events.Delivered, Key: Key{cp, contact}, Channel: "whatsapp"}}); err != nil {
				t.Error(err)
			}
		}
	}
	mu.Lock()
	cp := r.launchPolicy(t, Campaign{FallbackOn: []string{FallbackNotDelivered, FallbackPermanentFailure}, NotDeliveredWithinMS: 1500})
	cpID = cp.ID
	mu.Unlock()
	// Every WhatsApp send asked for a timer; each has an outcome once it fired.
	var timers int64
	for i := 1; i <= n; i++ {
		if waConsent(i) {
			timers++
		}
	}
	r.waitFallbacks(t, cp, 0)
	wantSMS := map[string]int{}
	for _, id := range r.ids {
		switch i := r.byNum[id]; {
		case !waConsent(i) && smsConsent(i):
			wantSMS[r.cb(cp, id)] = 1 // SMS is its first usable channel
		case waConsent(i) && smsConsent(i) && i%4 != 1:
			wantSMS[r.cb(cp, id)] = 1 // not delivered in time
		}
	}
	checkFor(t, "every timer to fire", func() bool {
		fp, err := r.campaigns.FallbackProgress(ctx, cp.ID)
		st, err2 := NewDelayed(r.rdb, r.prefix).Stats(ctx)
		return err == nil && err2 == nil && st.Jobs == 0 && r.jobsCount("fallback_not_fired")+float64(fp.Done) >= float64(timers)
	})
	checkFor(t, "the undelivered contacts' SMS", func() bool {
		got, _ := r.sms.counts()
		return len(got) >= len(wantSMS)
	})
	waAccepted, _ := r.wa.counts()
	smsAccepted, _ := r.sms.counts()
	for _, id := range r.ids {
		i, key := r.byNum[id], r.cb(cp, id)
		if smsAccepted[key] != wantSMS[key] {
			t.Errorf("contact #%d: %d SMS, want %d (WhatsApp %d)", i, smsAccepted[key], wantSMS[key], waAccepted[key])
		}
	}
	// Late reports of the first sends: deliveries are recorded and ask for nothing; a
	// failure asks again, and that request finds the fallback done.
	var late []Report
	for _, id := range r.ids {
		if i := r.byNum[id]; waConsent(i) && smsConsent(i) && i%4 != 1 {
			late = append(late, Report{Kind: events.Delivered, Key: Key{cp.ID, id}, Channel: "whatsapp"},
				Report{Kind: events.Failed, Key: Key{cp.ID, id}, Channel: "whatsapp", Action: ActionUndeliverable, Code: 131026},
				Report{Kind: events.Delivered, Key: Key{cp.ID, id}, Channel: "sms"})
		}
	}
	obs, err := fo.Observe(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	for k, o := range obs {
		if want := map[bool]Observed{true: ObservedFallback, false: ObservedNothing}[late[k].Channel == "sms"]; o != want {
			t.Errorf("report %+v: observed %d, want %d", late[k], o, want)
		}
	}
	before := r.jobsCount("duplicate")
	checkFor(t, "the late failures' requests to be dropped as done", func() bool {
		st, err := NewDelayed(r.rdb, r.prefix).Stats(ctx)
		return err == nil && st.Jobs == 0 && r.jobsCount("duplicate") >= before+float64(len(late)/3)
	})
	smsAfter, _ := r.sms.counts()
	waAfter, _ := r.wa.counts()
	for k, v := range smsAfter {
		if v != smsAccepted[k] || v > 1 || waAfter[k] > 1 {
			t.Errorf("%s: %d SMS and %d WhatsApp after late reports, want %d SMS and at most one WhatsApp", k, v, waAfter[k], smsAccepted[k])
		}
	}
	// The events: both deliveries would be kept (distinct ids), one fallback each.
	for _, e := range r.allEvents(t, cp.ID) {
		if e.Kind == events.Fallback && (e.Reason != FallbackNotDelivered || e.FromChannel != "whatsapp" || e.Channel != "sms") {
			t.Errorf("fallback event %+v", e)
		}
	}
}

// WhatsApp answers transport errors: once its sender's breaker opens, new sends go to
// SMS (reason circuit_open) for contacts with SMS consent, and those with WhatsApp only
// wait (deferred circuit_open) instead of using up their attempts. When WhatsApp is back
// the probes close the breaker and the waiting contacts get their WhatsApp message: every
// consented contact is reached exactly once, on a channel it consented to.
func TestFailoverCircuitOpen(t *testing.T) {
	const n = 60
	var down atomic.Bool
	down.Store(true)
	r := newFailoverRig(t, n, 1, BreakerConfig{MinRequests: 5, ErrorRate: 0.5, Window: time.Minute, OpenFor: 300 * time.Millisecond, Probes: 2},
		func(cfg *WorkerConfig) { cfg.BatchSize = 10 })
	r.wa.fail = func(int, Message) error {
		if down.Load() {
			return &SendError{Action: ActionTransport, Retryable: true, RetryAfter: 20 * time.Millisecond, Err: errors.New("503 Service Unavailable")}
		}
		return nil
	}
	cp := r.launchPolicy(t, Campaign{FallbackOn: []string{FallbackCircuitOpen}})
	br := NewBreaker(r.rdb, r.prefix, BreakerConfig{})
	checkFor(t, "the breaker to open and a contact to fall back to SMS", func() bool {
		st, err := br.State(context.Background(), "whatsapp", "s1")
		sms, _ := r.sms.counts()
		fell := 0
		for _, id := range r.ids {
			if i := r.byNum[id]; waConsent(i) && sms[r.cb(cp, id)] > 0 {
				fell++
			}
		}
		return err == nil && st != BreakerClosed && fell > 0
	})
	down.Store(false) // WhatsApp is back
	r.waitCompleted(t, cp.ID)
	checkFor(t, "every consented contact reached", func() bool {
		wa, _ := r.wa.counts()
		sms, _ := r.sms.counts()
		for _, id := range r.ids {
			i, k := r.byNum[id], r.cb(cp, id)
			if (waConsent(i) || smsConsent(i)) && wa[k]+sms[k] == 0 {
				return false
			}
		}
		return true
	})
	if st, err := br.State(context.Background(), "whatsapp", "s1"); err != nil || st != BreakerClosed {
		t.Errorf("breaker %s (%v) after WhatsApp came back, want closed", st, err)
	}
	wa, _ := r.wa.counts()
	sms, _ := r.sms.counts()
	fell := map[uint32]bool{}
	for _, e := range r.allEvents(t, cp.ID) {
		if e.Kind == events.Fallback {
			if e.Reason != FallbackCircuitOpen || e.FromChannel != "whatsapp" || e.Channel != "sms" {
				t.Errorf("fallback event %+v", e)
			}
			fell[e.ContactID] = true
		}
	}
	for _, id := range r.ids {
		i, k := r.byNum[id], r.cb(cp, id)
		switch {
		case wa[k]+sms[k] > 1:
			t.Errorf("contact #%d: %d WhatsApp and %d SMS", i, wa[k], sms[k])
		case wa[k] > 0 && !waConsent(i), sms[k] > 0 && !smsConsent(i):
			t.Errorf("contact #%d: a message on a channel without consent (WhatsApp %d, SMS %d)", i, wa[k], sms[k])
		case fell[id] && sms[k] != 1:
			t.Errorf("contact #%d fell back but got %d SMS", i, sms[k])
		}
	}
	if len(fell) == 0 {
		t.Error("no circuit_open fallback")
	}
	t.Logf("%d contacts: %d by WhatsApp, %d by SMS, %d through circuit_open fallbacks", n, len(wa), len(sms), len(fell))
}

// A fallback request survives the trip through Kafka and the delayed set; a first send
// keeps its version-1 bytes.
func TestFallbackJobRoundTrip(t *testing.T) {
	for _, j := range []Job{
		{Campaign: "42", Contact: 9, Sender: "s1", Stage: 1, From: "whatsapp", Reason: FallbackPermanentFailure, Code: 131026},
		{Campaign: "42", Contact: 1<<32 - 1, Sender: "fallback:sms", Attempt: 2, NotBefore: time.UnixMilli(1750030073123), Stage: 1, From: "sms", Reason: FallbackNotDelivered},
	} {
		got, err := UnmarshalJob(j.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if got != j && !(got.NotBefore.Equal(j.NotBefore) && got.Campaign == j.Campaign && got.From == j.From && got.Reason == j.Reason && got.Code == j.Code && got.Stage == j.Stage) {
			t.Fatalf("round trip: got %+v, want %+v", got, j)
		}
	}
	if b := (Job{Campaign: "1", Contact: 1, Sender: "s"}).Marshal(); b[0] != jobVersion {
		t.Fatalf("a first send is encoded as version %d", b[0])
	}
	bad := Job{Campaign: "1", Contact: 1, Sender: "s", Stage: 1, From: "whatsapp"}.Marshal()
	for _, b := range [][]byte{bad[:len(bad)-1], append(append([]byte(nil), bad...), 0)} {
		if _, err := UnmarshalJob(b); err == nil {
			t.Errorf("UnmarshalJob(%v) accepted a malformed fallback job", b)
		}
	}
}

// Campaign policies: the defaults, and what Create refuses.
func TestChannelPolicyValidation(t *testing.T) {
	senders := map[string]Sender{"w": {ID: "w", Channel: "whatsapp"}, "s": {ID: "s", Channel: "sms"}, "e": {ID: "e", Channel: "email"}}
	get := func(id string) (Sender, error) {
		if s, ok := senders[id]; ok {
			return s, nil
		}
		return Sender{}, ErrNotFound
	}
	base := func() Campaign { return Campaign{Channel: "whatsapp", Senders: []string{"w"}} }
	cp := base()
	cp.Fallback = []ChannelSenders{{Channel: "sms", Senders: []string{"s"}}, {Channel: "email", Senders: []string{"e"}}}
	if err := cp.ValidatePolicy(get); err != nil {
		t.Fatal(err)
	}
	if !cp.FallsBackOn(FallbackPermanentFailure) || !cp.FallsBackOn(FallbackCircuitOpen) || cp.FallsBackOn(FallbackNotDelivered) {
		t.Errorf("default triggers %v", cp.FallbackOn)
	}
	if got := cp.after("sms"); len(got) != 1 || got[0].Channel != "email" {
		t.Errorf("after sms: %+v", got)
	}
	for name, mut := range map[string]func(*Campaign){
		"a sender of another channel":   func(c *Campaign) { c.Fallback = []ChannelSenders{{Channel: "sms", Senders: []string{"e"}}} },
		"an unknown sender":             func(c *Campaign) { c.Fallback = []ChannelSenders{{Channel: "sms", Senders: []string{"x"}}} },
		"no sender":                     func(c *Campaign) { c.Fallback = []ChannelSenders{{Channel: "sms"}} },
		"a channel twice":               func(c *Campaign) { c.Fallback = []ChannelSenders{{Channel: "whatsapp", Senders: []string{"w"}}} },
		"an unknown trigger":            func(c *Campaign) { c.FallbackOn = []string{"sometimes"} },
		"a timer without its duration":  func(c *Campaign) { c.FallbackOn = []string{FallbackNotDelivered} },
		"triggers without fallbacks":    func(c *Campaign) { c.Fallback = nil; c.FallbackOn = []string{FallbackCircuitOpen} },
		"a negative not-delivered time": func(c *Campaign) { c.NotDeliveredWithinMS = -1 },
	} {
		c := base()
		c.Fallback = []ChannelSenders{{Channel: "sms", Senders: []string{"s"}}}
		mut(&c)
		if err := c.ValidatePolicy(get); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A fallback's send whose worker died after marking it is settled by its status under
// the fallback's progress keys, with the fallback's event id; the first send's progress
// is left alone.
func TestSettleFallbacks(t *testing.T) {
	r := newRig(t, 0)
	ctx := context.Background()
	tr := NewTracker(r.rdb, r.prefix)
	first, fb := Key{"5", 9}, stageKey("5", 9, 1)
	for _, k := range []Key{first, fb} {
		if res, err := tr.Claim(ctx, []Key{k}); err != nil || res[0] != Claimed {
			t.Fatalf("claim %v: %v %v", k, res, err)
		}
	}
	if _, err := tr.Finish(ctx, []Key{first}, []string{OutcomeFailed}); err != nil {
		t.Fatal(err)
	}
	if ok, err := tr.MarkSending(ctx, []Key{fb}, []SendProof{{Channel: "sms", Purpose: "marketing", ConsentRef: "cr_sms", Template: "promo_sms"}}); err != nil || !ok[0] {
		t.Fatalf("mark: %v %v", ok, err)
	}
	st := Settlement{Key: first, Channel: "sms", PhoneNumberID: "+15550001", MessageID: "SM1"}
	msgs, keys, err := SettleFallbacks(ctx, tr, throttle.NewPolicy(r.rdb, r.prefix, nil), []Settlement{st, st}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || len(keys) != 1 || keys[0] != fb {
		t.Fatalf("settled %d events, keys %v", len(msgs), keys)
	}
	ev, err := events.Unmarshal(msgs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if ev.CampaignID != "5" || ev.ID != events.ID("5", 9, events.Sent, "sms") || ev.Channel != "sms" || ev.ConsentRef != "cr_sms" {
		t.Fatalf("event %+v", ev)
	}
	// The first send's own statuses settle nothing: it has its outcome.
	if msgs, _, err := Settle(ctx, tr, nil, []Settlement{{Key: first, Channel: "whatsapp"}}, time.Now()); err != nil || len(msgs) != 0 {
		t.Fatalf("the first send settled again: %d %v", len(msgs), err)
	}
}

// Observe asks Redis once whether a campaign has failover and then remembers: the
// statuses of campaigns without it (almost every status serve takes in) cost no round
// trip, and those of campaigns with it are still observed.
func TestObserveSkipsCampaignsWithoutFailover(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	fo := NewFailover(rdb, prefix, NewDelayed(rdb, prefix))
	if err := rdb.HSet(ctx, prefix+"{cmp:2}", "failover", FallbackPermanentFailure).Err(); err != nil {
		t.Fatal(err)
	}
	calls := func(cmd string) int { return commandCalls(t, rdb, cmd) }
	scripts := func() int { return scriptCalls(t, rdb) }
	failed := func(cp string, contact uint32) Report {
		return Report{Kind: events.Failed, Key: Key{cp, contact}, Channel: "whatsapp", Action: ActionUndeliverable, Code: 131026}
	}
	for round := 1; round <= 3; round++ {
		hexists, evals := calls("hexists"), scripts()
		reps := []Report{failed("1", uint32(round)), failed("2", uint32(round)), failed("1", uint32(10+round))}
		if _, err := fo.Observe(ctx, reps); err != nil {
			t.Fatal(err)
		}
		wantHexists := map[bool]int{true: 2, false: 0}[round == 1]
		if got := calls("hexists") - hexists; got != wantHexists {
			t.Errorf("round %d: %d policy look-ups, want %d", round, got, wantHexists)
		}
		// (Round 1 also loads the script: EVALSHA answered NOSCRIPT, then EVAL.)
		if got := scripts() - evals; round > 1 && got != 1 {
			t.Errorf("round %d: %d observe scripts, want 1 (campaign 2 only)", round, got)
		}
		st, err := NewDelayed(rdb, prefix).Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Jobs != int64(round) {
			t.Errorf("round %d: %d fallback requests, want %d (campaign 2's failures only)", round, st.Jobs, round)
		}
	}
}
