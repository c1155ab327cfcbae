package throttle

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// Writers changing one contact's consent at the same moment (an API call, a STOP keyword,
// an import) each succeed, and the ledger stays one chain: every record links to the one
// published before it, none to a head another writer already moved. A fork would leave a
// published record the state never took, and an audit that cannot verify the chain.
func TestConcurrentChangesOfOneContactKeepOneChain(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	pub := &memPublisher{}
	l := NewLedger(rdb, prefix, pub)

	const writers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				action := events.Grant
				if (w+r)%2 == 1 {
					action = events.Revoke
				}
				// force: every call records, so the writers always race for the head.
				_, err := l.Apply(ctx, []Change{
					{ContactID: 7, Channel: "whatsapp", Purpose: "marketing", Action: action, Source: "api", Proof: fmt.Sprintf("w%d r%d", w, r)},
					{ContactID: uint32(100 + w), Channel: "whatsapp", Purpose: "marketing", Action: action, Source: "api"},
				}, true)
				if err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("apply: %v", err)
	}

	var chain []events.ConsentRecord
	for _, m := range pub.msgs {
		rec, err := events.UnmarshalConsent(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if rec.ContactID == 7 {
			chain = append(chain, rec)
		}
	}
	if len(chain) != writers*rounds {
		t.Fatalf("contact 7 has %d records, want %d", len(chain), writers*rounds)
	}
	if i := events.VerifyChain(chain); i != -1 {
		t.Fatalf("the ledger forked: record %d (%s) links to %s, not to the record before it", i, chain[i].ID, chain[i].PrevHash)
	}
	st, err := l.States(ctx, "whatsapp", "marketing", []uint32{7})
	if err != nil {
		t.Fatal(err)
	}
	last := chain[len(chain)-1]
	if st[0].RecordID != last.ID || st[0].Granted != (last.Action == events.Grant) {
		t.Fatalf("state %+v, want the last record %s (%s)", st[0], last.ID, last.Action)
	}
}

// A batch applied to the state twice (go-redis sends a pipeline again after a read
// timeout) is applied once: each contact's head, state and chain length are those of one
// application, and a batch holding two records of one contact (two channels) passes too.
// A record whose head another writer moved is still refused.
func TestApplyStateTwiceIsOnce(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	l := NewLedger(rdb, prefix, &memPublisher{})
	var changes []Change
	for c := uint32(1); c <= applyChunk+10; c++ { // more than one pipeline
		changes = append(changes,
			Change{ContactID: c, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "import"},
			Change{ContactID: c, Channel: "sms", Purpose: "marketing", Action: events.Grant, Source: "import"})
	}
	recs, err := l.Apply(ctx, changes, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.applyState(ctx, recs); err != nil {
		t.Fatalf("the same records again: %v", err)
	}
	for _, c := range []uint32{1, applyChunk + 10} {
		if n, _ := rdb.HGet(ctx, l.lenKey(), fmt.Sprint(c)).Int(); n != 2 {
			t.Errorf("contact %d: chain length %d, want 2", c, n)
		}
		for _, ch := range []string{"whatsapp", "sms"} {
			st, err := l.States(ctx, ch, "marketing", []uint32{c})
			if err != nil || !st[0].Granted {
				t.Errorf("contact %d on %s: %+v %v", c, ch, st, err)
			}
		}
	}
	// A record sealed on a head that has moved since is not mistaken for applied.
	stale := recs[0]
	stale.ID, stale.Action = "other", events.Revoke
	stale.Seal("")
	if err := l.applyState(ctx, []events.ConsentRecord{stale}); err == nil {
		t.Fatal("a record on a moved head was applied")
	}
}
