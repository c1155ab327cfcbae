package dispatcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// fakeMulticast is a provider with a multicast endpoint and LINE's idempotency: a request
// is keyed by its members in order, and a key accepted before is answered with the
// first request's ids, sending nothing again.
type fakeMulticast struct {
	mu        sync.Mutex
	max       int
	delivered map[string]int // callback data (campaign:contact) → messages delivered
	keys      map[string]string
	requests  int
	dups      int
	sizes     []int
	// lose, when set, makes the provider accept a request and lose the answer (a 500
	// after acceptance, a timeout) for the requests it returns true for.
	lose func(n int) bool
}

func newFakeMulticast(max int) *fakeMulticast {
	return &fakeMulticast{max: max, delivered: map[string]int{}, keys: map[string]string{}}
}

func (f *fakeMulticast) Send(ctx context.Context, s Sender, m Message) (string, error) {
	res := f.SendBatch(ctx, s, []Message{m})
	return res[0].ProviderID, res[0].Err
}

func (f *fakeMulticast) MaxBatch() int      { return f.max }
func (f *fakeMulticast) BatchRate() float64 { return 200 }
func (f *fakeMulticast) BatchKey(m Message) string {
	return m.Rendered.Text + "\x00" + m.Rendered.Template
}

func (f *fakeMulticast) SendBatch(_ context.Context, _ Sender, ms []Message) []BatchResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := sha256.New()
	for _, m := range ms {
		c, id, _ := ParseCallbackData(m.CallbackData)
		fmt.Fprintf(h, "%s:%d\x00", c, id)
	}
	key := hex.EncodeToString(h.Sum(nil))
	out := make([]BatchResult, len(ms))
	f.requests++
	if req, ok := f.keys[key]; ok {
		f.dups++
		for i := range out {
			out[i].ProviderID = fmt.Sprintf("%s:%d", req, i)
		}
		return out
	}
	req := fmt.Sprintf("req%d", f.requests)
	f.keys[key] = req
	f.sizes = append(f.sizes, len(ms))
	for i, m := range ms {
		c, id, _ := ParseCallbackData(m.CallbackData)
		f.delivered[CallbackData(c, id)]++
		out[i].ProviderID = fmt.Sprintf("%s:%d", req, i)
	}
	if f.lose != nil && f.lose(f.requests) {
		for i := range out {
			out[i] = BatchResult{Err: &SendError{Retryable: true, Action: ActionRetry, RetryAfter: 20 * time.Millisecond, Err: errors.New("500 after acceptance")}}
		}
	}
	return out
}

func (f *fakeMulticast) stats() (delivered map[string]int, requests, dups int, sizes []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := map[string]int{}
	for k, v := range f.delivered {
		d[k] = v
	}
	return d, f.requests, f.dups, append([]int(nil), f.sizes...)
}

// plainTemplate renders the same message for everyone: jobs can share a request.
const plainTemplate = `name: plain
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: plain
  language: en_US
  category: MARKETING
`

func (r *rig) launchPlain(t *testing.T) Campaign {
	t.Helper()
	ctx := context.Background()
	tpl, err := templates.ParseFile([]byte(plainTemplate), "plain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.tpls.Save(ctx, tpl, []byte(plainTemplate)); err != nil {
		t.Fatal(err)
	}
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "plain", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	return cp
}

// startBatchWorker runs a worker and a scheduler (stale sends re-queued after
// staleAfter) whose "whatsapp" channel is ch.
func (r *rig) startBatchWorker(t *testing.T, ctx context.Context, ch Channel, staleAfter time.Duration) {
	t.Helper()
	rdb := r.rdb
	w := NewWorker(WorkerConfig{
		Brokers: r.brokers, Topics: r.topics,
		Campaigns: NewCampaigns(CampaignsConfig{Redis: rdb, Prefix: r.prefix}), Tracker: NewTracker(rdb, r.prefix).WithLease(time.Second),
		Senders: NewSenders(rdb, r.prefix), Contacts: segments.NewStore(rdb, r.prefix),
		Templates: templates.NewCache(templates.NewStore(rdb, r.prefix), templates.CacheConfig{}),
		Policy:    throttle.NewPolicy(rdb, r.prefix, nil), Governor: throttle.NewGovernor(rdb, r.prefix),
		Channels: map[string]Channel{"whatsapp": ch}, Events: kafkax.NewWriter(r.brokers, r.topics.Events), Delayed: NewDelayed(rdb, r.prefix),
		DLQ: kafkax.NewWriter(r.brokers, r.topics.DLQ), BatchSize: 600,
		Ledger: throttle.NewLedger(rdb, r.prefix, kafkax.NewWriter(r.brokers, r.topics.Consent)),
	})
	sch := &Scheduler{Delayed: NewDelayed(rdb, r.prefix), Outbound: kafkax.NewWriter(r.brokers, r.topics.Outbound), Redis: rdb, Prefix: r.prefix,
		Poll: 20 * time.Millisecond, StaleAfter: staleAfter, Campaigns: NewCampaigns(CampaignsConfig{Redis: rdb, Prefix: r.prefix, Segments: r.contacts,
			Outbound: kafkax.NewWriter(r.brokers, r.topics.Outbound), Events: kafkax.NewWriter(r.brokers, r.topics.Events), Chunk: 16}),
		Tracker: NewTracker(rdb, r.prefix), AdoptEvery: 100 * time.Millisecond}
	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); _ = w.Run(ctx) }()
	go func() { defer func() { done <- struct{}{} }(); _ = sch.Run(ctx) }()
	t.Cleanup(func() { <-done; <-done })
}

func assertOnceEach(t *testing.T, r *rig, cp Campaign, delivered map[string]int) {
	t.Helper()
	if len(delivered) != len(r.ids) {
		t.Errorf("%d contacts got a message, want %d", len(delivered), len(r.ids))
	}
	for _, id := range r.ids {
		if n := delivered[CallbackData(cp.ID, id)]; n != 1 {
			t.Errorf("contact %d got %d messages, want 1", id, n)
		}
	}
}

// Jobs of one campaign, sender and content go out in batch requests of at most the
// channel's MaxBatch, each contact claimed, paced and settled on its own.
func TestWorkerSendsBatches(t *testing.T) {
	const n, max = 1100, 200
	r := newRig(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeMulticast(max)
	r.startBatchWorker(t, ctx, ch, 0)
	cp := r.launchPlain(t)
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != n || st.Failed != 0 {
		t.Fatalf("status %+v", st)
	}
	delivered, requests, dups, sizes := ch.stats()
	assertOnceEach(t, r, cp, delivered)
	for _, s := range sizes {
		if s > max {
			t.Fatalf("a request of %d messages, over MaxBatch %d", s, max)
		}
	}
	if dups != 0 || requests >= n/4 {
		t.Fatalf("%d requests (%d repeated) for %d contacts: not batched (sizes %v)", requests, dups, n, sizes)
	}
	t.Logf("%d contacts in %d requests (sizes %v)", n, requests, sizes)
}

// A batch the provider accepted but whose answer was lost is retried as the same batch:
// the provider's idempotency answers with the first request's ids, and every contact is
// settled sent, each with one message.
func TestWorkerRetriesABatchAsTheSameBatch(t *testing.T) {
	const n = 300
	r := newRig(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeMulticast(500)
	ch.lose = func(req int) bool { return req == 1 }
	r.startBatchWorker(t, ctx, ch, 0)
	cp := r.launchPlain(t)
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != n || st.Failed != 0 {
		t.Fatalf("status %+v", st)
	}
	delivered, _, dups, _ := ch.stats()
	assertOnceEach(t, r, cp, delivered)
	if dups == 0 {
		t.Fatal("the lost answer was never retried with the same batch")
	}
}

// A worker died after its batch request reached the provider and before it recorded
// anything: the contacts are in doubt, the stale sweep queues them again, and the new
// worker sends them only as the recorded batch — the provider answers "already
// accepted" and each is settled sent, with no second message.
func TestCrashedBatchIsSettledByItsRecord(t *testing.T) {
	const n = 120
	r := newRig(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := newFakeMulticast(500)
	cp := r.launchPlain(t)
	// The dead worker: it claimed, recorded, marked and sent a batch of the first 40
	// contacts, then died.
	dead := NewTracker(r.rdb, r.prefix)
	var keys []Key
	var members []batchMember
	var ms []Message
	for _, id := range r.ids[:40] {
		k := Key{cp.ID, id}
		keys = append(keys, k)
		cb := CallbackData(cp.ID, id)
		members = append(members, batchMember{To: fmt.Sprint(id), CB: cb})
	}
	sortMembers(members)
	for _, m := range members {
		ms = append(ms, Message{To: m.To, CallbackData: m.CB})
	}
	if _, err := dead.Claim(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if err := dead.recordBatch(ctx, cp.ID, batchID(members), members); err != nil {
		t.Fatal(err)
	}
	proofs := make([]SendProof, len(keys))
	for i := range proofs {
		proofs[i] = SendProof{Channel: "whatsapp", Purpose: "marketing"}
	}
	if oks, err := dead.MarkSending(ctx, keys, proofs); err != nil || strings.Contains(fmt.Sprint(oks), "false") {
		t.Fatalf("%v %v", oks, err)
	}
	ch.SendBatch(ctx, Sender{}, ms)
	// The survivor.
	r.startBatchWorker(t, ctx, ch, time.Second)
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != n || st.Failed != 0 {
		t.Fatalf("status %+v", st)
	}
	delivered, _, dups, _ := ch.stats()
	assertOnceEach(t, r, cp, delivered)
	if dups == 0 {
		t.Fatal("the in-doubt batch was never sent again as itself")
	}
}

func sortMembers(ms []batchMember) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].CB < ms[j-1].CB; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}
