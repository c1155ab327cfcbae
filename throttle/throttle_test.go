package throttle

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// memPublisher is a fake of our own Publisher interface: it keeps what was written.
type memPublisher struct {
	mu   sync.Mutex
	msgs []kafka.Message
	err  error
}

func (m *memPublisher) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.msgs = append(m.msgs, msgs...)
	return nil
}

func TestLedgerChainsAndAppliesState(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	pub := &memPublisher{}
	l := NewLedger(rdb, prefix, pub)

	grant := Change{ContactID: 7, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "import", Proof: "contacts.csv:2"}
	recs, err := l.Apply(ctx, []Change{grant, {ContactID: 8, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "import"}}, false)
	if err != nil || len(recs) != 2 {
		t.Fatalf("apply = %d records, %v", len(recs), err)
	}
	// Re-granting changes nothing and records nothing.
	again, err := l.Apply(ctx, []Change{grant}, false)
	if err != nil || len(again) != 0 {
		t.Fatalf("re-grant recorded %d records, %v", len(again), err)
	}
	revoke := grant
	revoke.Action, revoke.Source = events.Revoke, "keyword"
	r2, err := l.Apply(ctx, []Change{revoke}, false)
	if err != nil || len(r2) != 1 {
		t.Fatalf("revoke = %d, %v", len(r2), err)
	}
	if r2[0].PrevHash != recs[0].Hash {
		t.Fatalf("revoke not chained to the grant: prev %s, want %s", r2[0].PrevHash, recs[0].Hash)
	}
	if i := events.VerifyChain([]events.ConsentRecord{recs[0], r2[0]}); i != -1 {
		t.Fatalf("chain broken at %d", i)
	}
	// Everything went to Kafka first, decodable and keyed by contact.
	if len(pub.msgs) != 3 || string(pub.msgs[2].Key) != "7" {
		t.Fatalf("published %d messages", len(pub.msgs))
	}
	for _, m := range pub.msgs {
		if _, err := events.UnmarshalConsent(m.Value); err != nil {
			t.Fatal(err)
		}
	}
	st, err := l.States(ctx, "whatsapp", "marketing", []uint32{7, 8, 9})
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Granted || st[0].RecordID != r2[0].ID || !st[1].Granted || st[2].Granted || st[2].RecordID != "" {
		t.Fatalf("states = %+v", st)
	}
}

func TestLedgerPublishFailureChangesNothing(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	l := NewLedger(rdb, prefix, &memPublisher{err: context.DeadlineExceeded})
	_, err := l.Apply(ctx, []Change{{ContactID: 1, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"}}, false)
	if err == nil {
		t.Fatal("apply succeeded although the ledger topic refused the write")
	}
	st, _ := l.States(ctx, "whatsapp", "marketing", []uint32{1})
	if st[0].Granted {
		t.Fatal("consent granted in Redis without a ledger record")
	}
	if _, err := l.Apply(ctx, []Change{{ContactID: 1, Channel: "whatsapp", Purpose: "marketing", Action: "maybe", Source: "api"}}, false); err == nil {
		t.Fatal("bad action accepted")
	}
}

func TestPolicyDecisions(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	l := NewLedger(rdb, prefix, &memPublisher{})
	l.now = func() time.Time { return now }
	p := NewPolicy(rdb, prefix, func() time.Time { return now })
	mk := func(id uint32, a events.ConsentAction) Change {
		return Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: a, Source: "api"}
	}
	if _, err := l.Apply(ctx, []Change{mk(1, events.Grant), mk(2, events.Grant), mk(3, events.Grant), mk(4, events.Grant)}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Apply(ctx, []Change{mk(4, events.Revoke)}, false); err != nil {
		t.Fatal(err)
	}
	// Contact 2 wrote 1h ago, contact 3 wrote 25h ago; a stale older timestamp must not move 2's window back.
	if err := p.RecordInbound(ctx, "s1", []uint32{2, 3, 2}, []time.Time{now.Add(-time.Hour), now.Add(-25 * time.Hour), now.Add(-30 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	jobs := []Job{
		{ContactID: 1, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing"},                 // template: allowed
		{ContactID: 1, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing", FreeForm: true}, // never wrote
		{ContactID: 2, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing", FreeForm: true}, // inside window
		{ContactID: 2, SenderID: "s2", Channel: "whatsapp", Purpose: "marketing", FreeForm: true}, // window is per sender
		{ContactID: 3, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing", FreeForm: true}, // window expired
		{ContactID: 4, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing"},                 // revoked
		{ContactID: 5, SenderID: "s1", Channel: "whatsapp", Purpose: "marketing"},                 // never granted
		{ContactID: 1, SenderID: "s1", Channel: "whatsapp", Purpose: "utility"},                   // other purpose
	}
	want := []struct {
		v      Verdict
		reason string
	}{
		{Allow, ""}, {Skip, ReasonOutsideWindow}, {Allow, ""}, {Skip, ReasonOutsideWindow}, {Skip, ReasonOutsideWindow},
		{Skip, ReasonOptedOut}, {Skip, ReasonNoConsent}, {Skip, ReasonNoConsent},
	}
	got, err := p.Check(ctx, jobs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range jobs {
		if got[i].Verdict != want[i].v || got[i].Reason != want[i].reason {
			t.Errorf("job %d (%+v): got %v %q, want %v %q", i, jobs[i], got[i].Verdict, got[i].Reason, want[i].v, want[i].reason)
		}
		if got[i].Verdict == Allow && got[i].ConsentRef == "" {
			t.Errorf("job %d allowed without a consent reference", i)
		}
	}
}

func TestPolicyFailsClosedWhenRedisIsDown(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	p := NewPolicy(rdb, prefix, nil)
	rdb.Close()
	d, err := p.Check(context.Background(), []Job{{ContactID: 1, Channel: "whatsapp", Purpose: "marketing"}})
	if err == nil || d != nil {
		t.Fatalf("check with Redis unreachable = %v, %v; want an error and no decisions", d, err)
	}
}

// Many concurrent reservers share one sender: every slot handed out is distinct and
// consecutive slots are exactly one interval apart, so no window holds more than the rate.
func TestGovernorSlotsAreDisjointAcrossReservers(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	const rate, reservers, per, n = 1000.0, 8, 20, 5
	var mu sync.Mutex
	var slots []time.Duration // slot offsets on the server clock, via the script's delay and now
	var wg sync.WaitGroup
	for r := 0; r < reservers; r++ {
		g := NewGovernor(rdb, prefix)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				res, err := reserveScript.Run(ctx, g.rdb, []string{prefix + "{gov:s}:tat"}, int64(1e6/rate), n).Int64Slice()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for k := 0; k < n; k++ {
					slots = append(slots, time.Duration(res[1]+res[0])*time.Microsecond+time.Duration(k)*time.Millisecond)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	if len(slots) != reservers*per*n {
		t.Fatalf("got %d slots", len(slots))
	}
	for i := 1; i < len(slots); i++ {
		if gap := slots[i] - slots[i-1]; gap < time.Millisecond {
			t.Fatalf("slots %d and %d are %v apart, less than the 1ms interval", i-1, i, gap)
		}
	}
	g := NewGovernor(rdb, prefix)
	if _, err := g.Reserve(ctx, "s", 0, 1); err == nil {
		t.Fatal("a sender without a rate got a slot")
	}
	res, err := g.Reserve(ctx, "other", 80, 3)
	if err != nil || res.Interval != 12500*time.Microsecond || res.At(2).Sub(res.Start) != 25*time.Millisecond {
		t.Fatalf("reserve = %+v, %v", res, err)
	}
}
