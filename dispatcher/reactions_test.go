package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// recPushback is a fake of our Pushback interface that records what it was told.
type recPushback struct {
	mu         sync.Mutex
	recipients map[uint32][]throttle.Signal
	senders    map[string][]throttle.Signal
}

func newRecPushback() *recPushback {
	return &recPushback{recipients: map[uint32][]throttle.Signal{}, senders: map[string][]throttle.Signal{}}
}

func (p *recPushback) Recipient(_ context.Context, _ string, contact uint32, code throttle.Signal, _ time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recipients[contact] = append(p.recipients[contact], code)
	return nil
}

func (p *recPushback) Sender(_ context.Context, sender string, code throttle.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.senders[sender] = append(p.senders[sender], code)
	return nil
}

// run starts a worker (and scheduler) with a fake channel until the test ends.
func (r *rig) run(t *testing.T) (context.Context, *fakeChannel) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	t.Cleanup(cancel) // runs before startWorker's cleanup, which waits for the worker
	return ctx, ch
}

func (r *rig) waitState(t *testing.T, id string, want State) Status {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := r.campaigns.Status(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign %s never became %s: %+v", id, want, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A template refusal (132001: template missing at Meta) pauses the campaign instead of
// failing every contact; once the template is fixed, resume sends each contact once.
func TestTemplateRefusalPausesTheCampaign(t *testing.T) {
	r := newRig(t, 40)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var broken atomic.Bool
	broken.Store(true)
	ch := newFakeChannel()
	ch.fail = func(int, Message) error {
		if broken.Load() {
			return &SendError{Code: 132001, Action: "pause_campaign", Err: errors.New("(#132001) Template name does not exist in the translation")}
		}
		return nil
	}
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	st := r.waitState(t, cp.ID, Paused)
	if st.PauseReason != "provider:132001" {
		t.Fatalf("pause reason %q, want provider:132001", st.PauseReason)
	}
	// Let the jobs still in Kafka reach the worker and be parked.
	time.Sleep(500 * time.Millisecond)
	if st, _ := r.campaigns.Status(ctx, cp.ID); st.Failed != 0 || st.Sent != 0 {
		t.Fatalf("a template refusal failed or sent jobs: %+v", st)
	}
	broken.Store(false)
	if _, err := r.campaigns.Resume(ctx, cp.ID); err != nil {
		t.Fatal(err)
	}
	st = r.waitCompleted(t, cp.ID)
	if st.Sent != 40 || st.Failed != 0 {
		t.Fatalf("after resume: %+v", st)
	}
	accepted, _ := ch.counts()
	r.assertOncePerContact(t, cp, accepted)
}

// A campaign whose failure rate crosses its threshold pauses itself with reason
// error_rate, before it burns through the audience.
func TestErrorRatePausesTheCampaign(t *testing.T) {
	r := newRig(t, 300)
	r.tune = func(c *WorkerConfig) { c.MinErrorSample = 20 }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeChannel()
	ch.fail = func(_ int, m Message) error {
		if m.To[len(m.To)-1]%2 == 0 { // half the messages have a bad parameter
			return &SendError{Code: 131009, Action: "fail_job", Err: errors.New("(#131009) Parameter value is not valid")}
		}
		return nil
	}
	r.startWorker(t, ctx, r.rdb, ch)
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}, MaxErrorRate: 0.3}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := r.waitState(t, cp.ID, Paused)
	if st.PauseReason != "error_rate" {
		t.Fatalf("pause reason %q, want error_rate", st.PauseReason)
	}
	time.Sleep(300 * time.Millisecond)
	st, _ = r.campaigns.Status(ctx, cp.ID)
	if st.Done >= 300 {
		t.Fatalf("the whole audience was tried before the pause: %+v", st)
	}
	// A campaign that opts out of the check (negative threshold) is never paused.
	cp2, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}, MaxErrorRate: -1}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp2.ID, nil); err != nil {
		t.Fatal(err)
	}
	st = r.waitCompleted(t, cp2.ID)
	if st.Failed != 150 || st.Sent != 150 {
		t.Fatalf("campaign without an error threshold: %+v", st)
	}
}

// Pair-rate (131056) and quality (131048) refusals are reported to the pushback, the
// jobs wait in the delayed set, and every contact still gets exactly one message.
func TestRecipientAndSenderPushback(t *testing.T) {
	r := newRig(t, 30)
	pb := newRecPushback()
	r.pushback = pb
	r.tune = func(c *WorkerConfig) { c.SenderHold = 100 * time.Millisecond }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeChannel()
	ch.fail = func(attempt int, m Message) error {
		if attempt > 1 {
			return nil
		}
		if m.To[len(m.To)-1]%2 == 0 {
			return &SendError{Code: 131056, Retryable: true, RetryAfter: 50 * time.Millisecond, Action: "backoff_recipient",
				Signal: throttle.SignalBackoffRecipient, Err: errors.New("(#131056) pair rate limit hit")}
		}
		return &SendError{Code: 131048, Action: "pause_sender", Signal: throttle.SignalHoldSender, Err: errors.New("(#131048) Spam rate limit hit")}
	}
	r.startWorker(t, ctx, r.rdb, ch)
	cp := r.launch(t)
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 30 || st.Failed != 0 {
		t.Fatalf("status %+v", st)
	}
	accepted, _ := ch.counts()
	r.assertOncePerContact(t, cp, accepted)
	pb.mu.Lock()
	defer pb.mu.Unlock()
	if len(pb.recipients) != 15 {
		t.Errorf("%d recipients reported for 131056, want 15", len(pb.recipients))
	}
	if n := len(pb.senders["s1"]); n != 15 {
		t.Errorf("sender s1 reported %d times for 131048, want 15", n)
	}
}

// Country routing: each contact's jobs go to a sender serving its country; contacts of
// other countries go to the sender that lists none. Each contact still gets one message.
func TestCountryRouting(t *testing.T) {
	r := newRig(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []segments.Contact
	for i := range 30 {
		phone := fmt.Sprintf("+6681%07d", i+1) // TH
		if i%3 == 1 {
			phone = fmt.Sprintf("+62812%07d", i+1) // ID
		} else if i%3 == 2 {
			phone = fmt.Sprintf("+6591%06d", i+1) // SG
		}
		cs = append(cs, segments.Contact{Phone: phone, Tags: []string{"t"}})
	}
	r.addContacts(t, cs)
	for _, s := range []Sender{
		{ID: "th", Channel: "whatsapp", PhoneNumberID: "th", Token: "t", Rate: 2000, Countries: []string{"TH"}},
		{ID: "id1", Channel: "whatsapp", PhoneNumberID: "id1", Token: "t", Rate: 2000, Countries: []string{"ID"}},
		{ID: "id2", Channel: "whatsapp", PhoneNumberID: "id2", Token: "t", Rate: 2000, Countries: []string{"ID", "MY"}},
	} {
		if err := r.senders.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	ch := newFakeChannel()
	var mu sync.Mutex
	via := map[string]string{} // phone → sender
	ch.onSend = func(s Sender, m Message) {
		mu.Lock()
		via[m.To] = s.ID
		mu.Unlock()
	}
	r.startWorker(t, ctx, r.rdb, ch)
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"th", "id1", "id2", "s1"}, Routing: RouteCountry}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	if st := r.waitCompleted(t, cp.ID); st.Sent != 30 {
		t.Fatalf("status %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	used := map[string]int{}
	for phone, s := range via {
		used[s]++
		switch {
		case strings.HasPrefix(phone, "+66") && s != "th",
			strings.HasPrefix(phone, "+62") && s != "id1" && s != "id2",
			strings.HasPrefix(phone, "+65") && s != "s1":
			t.Errorf("%s went through sender %s", phone, s)
		}
	}
	if used["id1"] == 0 || used["id2"] == 0 {
		t.Errorf("Indonesian contacts not spread over both ID senders: %v", used)
	}
	if _, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"th"}, Routing: "nearest"}, r.senders); err == nil {
		t.Error("an unknown routing was accepted")
	}
}

// Quiet hours in the recipient's zone defer jobs (never drop them): they wait in the
// delayed set until the next allowed moment, and the campaign is not complete meanwhile.
func TestQuietHoursDeferJobs(t *testing.T) {
	r := newRig(t, 20)
	ctx, ch := r.run(t)
	bkk, err := time.LoadLocation("Asia/Bangkok") // the rig's phones are +66
	if err != nil {
		t.Fatal(err)
	}
	h := time.Now().In(bkk).Hour()
	quiet := fmt.Sprintf("%02d:00-%02d:00", (h+23)%24, (h+2)%24)
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}, QuietHours: quiet}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	d := NewDelayed(r.rdb, r.prefix)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := d.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Jobs == 20 {
			loc := time.Now().In(bkk)
			wantAfter := time.Date(loc.Year(), loc.Month(), loc.Day(), (h+2)%24, 0, 0, 0, bkk)
			if wantAfter.Before(time.Now()) {
				wantAfter = wantAfter.Add(24 * time.Hour)
			}
			if st.Next.Before(wantAfter.Add(-time.Second)) {
				t.Fatalf("jobs due at %v, before the quiet period ends at %v", st.Next, wantAfter)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs waiting, want 20 deferred by quiet hours %s", st.Jobs, quiet)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if accepted, _ := ch.counts(); len(accepted) != 0 {
		t.Fatalf("%d messages sent during quiet hours", len(accepted))
	}
	if st, _ := r.campaigns.Status(ctx, cp.ID); st.State != Running || st.Done != 0 {
		t.Fatalf("status %+v, want running with nothing done", st)
	}
	if _, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}, QuietHours: "25:00-08:00"}, r.senders); err == nil {
		t.Fatal("bad quiet hours accepted")
	}
}

// A scheduled campaign launches by itself when its time comes (the scheduler does it),
// and can be cancelled before.
func TestScheduledCampaignLaunchesOnTime(t *testing.T) {
	r := newRig(t, 10)
	ctx, _ := r.run(t)
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(1500 * time.Millisecond)
	st, err := r.campaigns.Schedule(ctx, cp.ID, at)
	if err != nil || st.State != Scheduled || !st.ScheduledAt.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("schedule: %+v %v", st, err)
	}
	time.Sleep(500 * time.Millisecond)
	if st, _ := r.campaigns.Status(ctx, cp.ID); st.State != Scheduled || st.Queued != 0 {
		t.Fatalf("launched early: %+v", st)
	}
	st = r.waitCompleted(t, cp.ID)
	if st.LaunchedAt.Before(at.Add(-time.Millisecond)) || st.Sent != 10 {
		t.Fatalf("launched at %v (scheduled %v): %+v", st.LaunchedAt, at, st)
	}
	// Cancelled before its time: never launches.
	cp2, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Schedule(ctx, cp2.ID, time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Cancel(ctx, cp2.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if st, _ := r.campaigns.Status(ctx, cp2.ID); st.State != Cancelled || st.Queued != 0 {
		t.Fatalf("a cancelled scheduled campaign: %+v", st)
	}
	if _, err := r.campaigns.Schedule(ctx, cp.ID, time.Now()); err == nil {
		t.Fatal("a completed campaign was scheduled")
	}
}

// A holdout keeps a stable share of the audience out (skipped with reason holdout); the
// dry run predicts exactly who.
func TestHoldoutGroup(t *testing.T) {
	r := newRig(t, 300)
	ctx, ch := r.run(t)
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}, Holdout: 0.2}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := r.campaigns.DryRun(ctx, cp.ID, templates.NewCache(r.tpls, templates.CacheConfig{}), throttle.NewPolicy(r.rdb, r.prefix, nil), r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := r.waitCompleted(t, cp.ID)
	held := uint64(st.Skipped)
	if held < 30 || held > 90 || dr.Skipped[ReasonHoldout] != held || st.Sent+st.Skipped != 300 {
		t.Fatalf("holdout 0.2 of 300: %d skipped (dry run said %d), status %+v", held, dr.Skipped[ReasonHoldout], st)
	}
	accepted, _ := ch.counts()
	for _, id := range r.ids {
		if got := accepted[CallbackData(cp.ID, id)] == 1; got == cp.InHoldout(id) {
			t.Fatalf("contact %d: sent %v, in holdout %v", id, got, cp.InHoldout(id))
		}
	}
	if _, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}, Holdout: 0.9}, r.senders); err == nil {
		t.Fatal("a 90% holdout was accepted")
	}
}

// A contact known only by email is skipped in a WhatsApp campaign, with a reason.
func TestContactWithoutPhoneIsSkipped(t *testing.T) {
	r := newRig(t, 3)
	r.addContacts(t, []segments.Contact{{Email: "only@example.com", Tags: []string{"t"}}})
	ctx, ch := r.run(t)
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 3 || st.Skipped != 1 {
		t.Fatalf("status %+v, want 3 sent and the email-only contact skipped", st)
	}
	if accepted, _ := ch.counts(); len(accepted) != 3 {
		t.Fatalf("%d messages, want 3", len(accepted))
	}
}
