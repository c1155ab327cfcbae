package throttle

import (
	"context"
	"testing"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
)

// The Redis state is a cache of the ledger: wiped or tampered with, it is rebuilt from
// the topic exactly as the ledger says.
func TestRebuildRestoresStateFromTheLedger(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := rulesRedis(t)
	brokers, topics := testenv.Kafka(t, 3)
	w := kafkax.NewWriter(brokers, topics.Consent)
	defer w.Close()
	l := NewLedger(rdb, prefix, w)
	var changes []Change
	for id := uint32(1); id <= 30; id++ {
		changes = append(changes, Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "import"})
		if id%3 == 0 {
			changes = append(changes, Change{ContactID: id, Channel: "whatsapp", Purpose: "utility", Action: events.Grant, Source: "import"})
		}
	}
	if _, err := l.Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	var revokes []Change
	for id := uint32(1); id <= 30; id += 5 {
		revokes = append(revokes, Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: events.Revoke, Source: "keyword"})
	}
	if _, err := l.Apply(ctx, revokes, false); err != nil {
		t.Fatal(err)
	}
	ids := make([]uint32, 31)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	before, _ := l.States(ctx, "whatsapp", "marketing", ids)
	beforeU, _ := l.States(ctx, "whatsapp", "utility", ids)
	heads, _ := rdb.HGetAll(ctx, consentKey(prefix, rdb, "consent:head")).Result()

	// Tamper: grant a revoked contact, drop another's state, and add a stray contact 31.
	rdb.HSet(ctx, consentKey(prefix, rdb, "consent:whatsapp:marketing"), "1", "g|forged", "31", "g|forged")
	rdb.HDel(ctx, consentKey(prefix, rdb, "consent:whatsapp:marketing"), "2")

	rep, err := l.Rebuild(ctx, brokers, topics.Consent)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != int64(len(changes)+len(revokes)) || rep.Contacts != 30 || rep.Undecoded != 0 {
		t.Fatalf("rebuild report %+v", rep)
	}
	after, _ := l.States(ctx, "whatsapp", "marketing", ids)
	afterU, _ := l.States(ctx, "whatsapp", "utility", ids)
	for i := range ids {
		if after[i] != before[i] || afterU[i] != beforeU[i] {
			t.Errorf("contact %d: after rebuild %+v/%+v, before tampering %+v/%+v", ids[i], after[i], afterU[i], before[i], beforeU[i])
		}
	}
	if after[0].Granted || after[30].Granted {
		t.Fatal("forged grants survived the rebuild")
	}
	got, _ := rdb.HGetAll(ctx, consentKey(prefix, rdb, "consent:head")).Result()
	if len(got) != len(heads) {
		t.Fatalf("%d chain heads after rebuild, %d before", len(got), len(heads))
	}
	for k, v := range heads {
		if got[k] != v {
			t.Errorf("chain head of %s: %s, want %s", k, got[k], v)
		}
	}
	// And the chain continues from the rebuilt heads.
	recs, err := l.Apply(ctx, []Change{{ContactID: 1, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "keyword"}}, false)
	if err != nil || len(recs) != 1 || recs[0].PrevHash != heads["1"] {
		t.Fatalf("grant after rebuild: %+v, %v", recs, err)
	}
}
