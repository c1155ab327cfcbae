package analytics

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/throttle"
)

// ledgerRig is the consent ledger end to end on real servers: throttle.Ledger writes
// herald.consent (kfake) and Redis, the sink copies the topic into consent_log, and the
// checkpointer signs the heads into ledger_checkpoints and ledger_heads.
type ledgerRig struct {
	t       *testing.T
	ctx     context.Context
	conn    driver.Conn
	rdb     *redis.Client
	prefix  string
	brokers []string
	topics  kafkax.Topics
	ledger  *throttle.Ledger
	cp      *throttle.Checkpointer
	sink    *Sink
	key     ed25519.PrivateKey
	pub     ed25519.PublicKey
	now     time.Time
}

func newLedgerRig(t *testing.T) *ledgerRig {
	r := &ledgerRig{t: t, ctx: context.Background(), conn: migrated(t), now: time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)}
	r.rdb, r.prefix = testenv.Redis(t)
	r.brokers, r.topics = testenv.Kafka(t, 3)
	w := kafkax.NewWriter(r.brokers, r.topics.Consent)
	t.Cleanup(func() { w.Close() })
	r.ledger = throttle.NewLedger(r.rdb, r.prefix, w)
	r.key = ed25519.NewKeyFromSeed([]byte("herald ledger test key, 32 bytes"))
	r.pub = r.key.Public().(ed25519.PublicKey)
	r.cp = throttle.NewCheckpointer(throttle.CheckpointerConfig{Redis: r.rdb, Prefix: r.prefix, Store: NewCheckpointStore(r.conn),
		Key: r.key, Now: func() time.Time { return r.now }, Logger: testLogger(t)})
	r.sink = NewSink(SinkConfig{Brokers: r.brokers, Topics: kafkax.Topics{Consent: r.topics.Consent}, Conn: r.conn,
		FlushInterval: 20 * time.Millisecond, Logger: testLogger(t)})
	runSink(t, r.sink)
	return r
}

// apply records consent changes, in order, and waits until the sink has copied them.
func (r *ledgerRig) apply(steps ...string) {
	r.t.Helper()
	for _, s := range steps { // "2+" grants contact 2, "2-" revokes
		var id uint32
		fmt.Sscan(s[:len(s)-1], &id)
		a := events.Grant
		if s[len(s)-1] == '-' {
			a = events.Revoke
		}
		if _, err := r.ledger.Apply(r.ctx, []throttle.Change{{ContactID: id, Channel: "whatsapp", Purpose: "marketing",
			Action: a, Source: "api"}}, true); err != nil {
			r.t.Fatal(err)
		}
	}
	waitCaughtUp(r.t, r.sink)
}

func (r *ledgerRig) checkpoint() throttle.CheckpointReport {
	r.t.Helper()
	r.now = r.now.Add(time.Hour)
	rep, err := r.cp.Checkpoint(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return rep
}

func (r *ledgerRig) audit(keys ...ed25519.PublicKey) LedgerAudit {
	r.t.Helper()
	if keys == nil {
		keys = []ed25519.PublicKey{r.pub}
	}
	a, err := AuditLedger(r.ctx, r.conn, LedgerAuditOptions{Keys: keys, Range: 2, Now: r.now})
	if err != nil {
		r.t.Fatal(err)
	}
	return a
}

// chain returns a contact's records as consent_log holds them, in ledger order.
func (r *ledgerRig) chain(contact uint32) []events.ConsentRecord {
	r.t.Helper()
	recs, err := ConsentLedger(r.ctx, r.conn, contact)
	if err != nil {
		r.t.Fatal(err)
	}
	return recs
}

// deleteRows removes rows from a table, as someone with write access to ClickHouse
// can, and waits for the mutation to finish.
func (r *ledgerRig) deleteRows(table, where string) {
	r.t.Helper()
	if err := r.conn.Exec(r.ctx, "ALTER TABLE "+table+" DELETE WHERE "+where); err != nil {
		r.t.Fatal(err)
	}
	waitFor(r.t, "the delete from "+table, func() bool {
		var n uint64
		err := r.conn.QueryRow(r.ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = ? AND is_done = 0", table).Scan(&n)
		return err == nil && n == 0
	})
}

// reseal rewrites a contact's chain in consent_log as an attacker would: records kept
// (after edit), each sealed again onto the one before, so the chain links.
func (r *ledgerRig) reseal(contact uint32, edit func([]events.ConsentRecord) []events.ConsentRecord) []events.ConsentRecord {
	r.t.Helper()
	recs := edit(r.chain(contact))
	prev := ""
	for i := range recs {
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	r.deleteRows("consent_log", fmt.Sprintf("contact_id = %d", contact))
	insertConsent(r.t, r.conn, recs)
	if i := events.VerifyChain(r.chain(contact)); i != -1 {
		r.t.Fatalf("the re-sealed chain of contact %d is broken at %d: the attack is not the one tested", contact, i)
	}
	return recs
}

func findings(a LedgerAudit) []string {
	var out []string
	for _, f := range a.ChainFailures {
		out = append(out, fmt.Sprintf("%d:%s", f.ContactID, f.Status))
	}
	return out
}

func problems(a LedgerAudit) []string {
	var out []string
	for _, f := range a.CheckpointFailures {
		out = append(out, fmt.Sprintf("%d:%s", f.Seq, f.Problem))
	}
	return out
}

// A checkpoint verifies with the writers' public key and with no other; a changed
// digest, or a changed checkpointed head, does not verify.
func TestLedgerCheckpointSignedAndVerified(t *testing.T) {
	r := newLedgerRig(t)
	if a := r.audit(); a.OK() || !slices.Equal(problems(a), []string{"0:none"}) {
		t.Fatalf("audit with no checkpoint: %+v", a)
	}
	r.apply("1+", "2+", "2-", "3+")
	rep := r.checkpoint()
	if rep.Seq != 1 || rep.Heads != 3 {
		t.Fatalf("checkpoint %+v", rep)
	}
	a := r.audit()
	if !a.OK() || a.Checkpoints != 1 || a.CheckpointsVerified != 1 || a.ChainsChecked != 3 || a.ChainsOK != 3 ||
		a.Latest == nil || a.Latest.Digest != rep.Digest {
		t.Fatalf("audit with the right key: %+v", a)
	}

	other := ed25519.NewKeyFromSeed([]byte("someone else's key, of 32 bytes!")).Public().(ed25519.PublicKey)
	a = r.audit(other)
	if a.OK() || !slices.Equal(problems(a), []string{"1:signature"}) ||
		!slices.Equal(findings(a), []string{"1:checkpoint_invalid", "2:checkpoint_invalid", "3:checkpoint_invalid"}) {
		t.Fatalf("audit with a wrong public key: checkpoints %v, chains %v", problems(a), findings(a))
	}
	if !strings.Contains(a.CheckpointFailures[0].Detail, "not among the trusted public keys") {
		t.Fatalf("wrong key detail: %s", a.CheckpointFailures[0].Detail)
	}
	if c, err := AuditContact(r.ctx, r.conn, 2, other); err != nil || c.Ledger.Status != LedgerCheckpointInvalid || !c.Ledger.Failed() {
		t.Fatalf("audit contact with a wrong public key: %+v, %v", c.Ledger, err)
	}
	if c, err := AuditContact(r.ctx, r.conn, 2, r.pub); err != nil || c.Ledger.Status != LedgerOK || c.Ledger.Checkpoint.Records != 2 {
		t.Fatalf("audit contact with the right key: %+v, %v", c.Ledger, err)
	}
	// The right key among rotated-out ones verifies.
	if a = r.audit(other, r.pub); !a.OK() {
		t.Fatalf("audit with the key among others: %v %v", problems(a), findings(a))
	}

	// Someone changes the stored digest (say, to one over heads they edited).
	forged := rep.Checkpoint
	forged.Digest = strings.Repeat("ab", 32)
	r.deleteRows("ledger_checkpoints", "1")
	if err := NewCheckpointStore(r.conn).SaveCheckpoint(r.ctx, forged); err != nil {
		t.Fatal(err)
	}
	a = r.audit()
	if a.OK() || !slices.Equal(problems(a), []string{"1:signature", "1:digest"}) || a.CheckpointsVerified != 0 || len(a.ChainFailures) != 3 {
		t.Fatalf("audit of a modified digest: checkpoints %v, chains %v", problems(a), findings(a))
	}
	r.deleteRows("ledger_checkpoints", "1")
	if err := NewCheckpointStore(r.conn).SaveCheckpoint(r.ctx, rep.Checkpoint); err != nil {
		t.Fatal(err)
	}
	if a = r.audit(); !a.OK() {
		t.Fatalf("audit with the header restored: %v %v", problems(a), findings(a))
	}

	// Someone rewrites contact 2's chain and its checkpointed head to match: the chain
	// matches the head, but the checkpoint no longer matches its digest.
	recs := r.reseal(2, func(rs []events.ConsentRecord) []events.ConsentRecord { return rs[:1] })
	r.deleteRows("ledger_heads", "contact_id = 2")
	if err := NewCheckpointStore(r.conn).SaveHeads(r.ctx, rep.Checkpoint, []throttle.CheckpointHead{{ContactID: 2, Head: recs[0].Hash, Records: 1}}); err != nil {
		t.Fatal(err)
	}
	a = r.audit()
	if a.OK() || !slices.Equal(problems(a), []string{"1:digest"}) ||
		!slices.Equal(findings(a), []string{"1:checkpoint_invalid", "2:checkpoint_invalid", "3:checkpoint_invalid"}) {
		t.Fatalf("audit of an edited checkpointed head: checkpoints %v, chains %v", problems(a), findings(a))
	}
}

// A contact's grant, revoke, grant is checkpointed; then its chain is rewritten in the
// table, re-sealed so that it links again. The audit names exactly that contact; a chain
// check alone (VerifyChain, what `audit contact` did) passes.
func TestLedgerAuditNamesRewrittenChains(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(r *ledgerRig)
		want   []string
	}{{
		name: "revoke removed and the rest re-sealed",
		tamper: func(r *ledgerRig) {
			r.reseal(2, func(rs []events.ConsentRecord) []events.ConsentRecord {
				if rs[1].Action != events.Revoke {
					r.t.Fatalf("record 2 of contact 2 is a %s", rs[1].Action)
				}
				return append(rs[:1:1], rs[2:]...)
			})
		},
		want: []string{"2:truncated"},
	}, {
		name: "revoke turned into a grant and re-sealed",
		tamper: func(r *ledgerRig) {
			r.reseal(2, func(rs []events.ConsentRecord) []events.ConsentRecord {
				rs[1].Action, rs[1].Source = events.Grant, "import"
				return rs
			})
		},
		want: []string{"2:rewritten"},
	}, {
		name: "a grant inserted before the revoke and re-sealed",
		tamper: func(r *ledgerRig) {
			r.reseal(2, func(rs []events.ConsentRecord) []events.ConsentRecord {
				g := rs[0]
				g.ID, g.Time = "cr_inserted", g.Time.Add(time.Millisecond)
				return append([]events.ConsentRecord{rs[0], g}, rs[1:]...)
			})
		},
		want: []string{"2:rewritten"},
	}, {
		name: "the last record removed",
		tamper: func(r *ledgerRig) {
			last := r.chain(3)[1]
			r.deleteRows("consent_log", fmt.Sprintf("id = '%s'", last.ID))
			if n := len(r.chain(3)); n != 1 || events.VerifyChain(r.chain(3)) != -1 {
				r.t.Fatalf("contact 3 has %d records after the cut", n)
			}
		},
		want: []string{"3:truncated"},
	}, {
		name: "a whole chain removed",
		tamper: func(r *ledgerRig) {
			r.deleteRows("consent_log", "contact_id = 1")
		},
		want: []string{"1:truncated"},
	}, {
		name: "a record removed and the rest left as they were",
		tamper: func(r *ledgerRig) {
			r.deleteRows("consent_log", fmt.Sprintf("id = '%s'", r.chain(2)[1].ID))
		},
		want: []string{"2:truncated"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLedgerRig(t)
			r.apply("1+", "2+", "2-", "2+", "3+", "3-")
			if rep := r.checkpoint(); rep.Heads != 3 {
				t.Fatalf("checkpoint %+v", rep)
			}
			if a := r.audit(); !a.OK() || a.ChainsOK != 3 {
				t.Fatalf("audit before tampering: %v %v", problems(a), findings(a))
			}
			tc.tamper(r)
			a := r.audit()
			if a.OK() || len(a.CheckpointFailures) != 0 || !slices.Equal(findings(a), tc.want) || a.ChainsChecked != 3 || a.ChainsOK != 2 {
				t.Fatalf("audit: checkpoints %v, chains %v (checked %d, ok %d), want chains %v", problems(a), findings(a),
					a.ChainsChecked, a.ChainsOK, tc.want)
			}
			if f := a.ChainFailures[0]; f.CheckpointSeq != 1 || f.Detail == "" {
				t.Fatalf("finding %+v", f)
			}
			// audit contact says it too, with the checkpoint's signature checked.
			var id uint32
			fmt.Sscan(tc.want[0], &id)
			c, err := AuditContact(r.ctx, r.conn, id, r.pub)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.SplitN(tc.want[0], ":", 2)[1]; c.Ledger.Status != want || !c.Ledger.Failed() || !c.Ledger.SignaturesChecked ||
				c.Ledger.Checkpoint == nil || c.Ledger.Checkpoint.Seq != 1 {
				t.Fatalf("audit contact %d: %+v, want %s", id, c.Ledger, want)
			}
		})
	}
}

// Rewriting the topic too, rebuilding Redis from it and taking a new checkpoint over the
// rewritten chain does not hide the rewrite: the earlier checkpoint still holds the
// original head.
func TestLedgerAuditKeepsEarlierCheckpoints(t *testing.T) {
	r := newLedgerRig(t)
	r.apply("1+", "2+", "2-", "2+", "3+")
	r.checkpoint()
	recs := r.reseal(2, func(rs []events.ConsentRecord) []events.ConsentRecord { return append(rs[:1:1], rs[2:]...) })

	// The rewritten topic: every record as before, but contact 2's re-sealed chain.
	forged := "forged." + r.topics.Consent
	if err := kafkax.EnsureTopics(r.ctx, r.brokers, []string{forged}, 3); err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for _, c := range []uint32{1, 2, 3} {
		chain := r.chain(c)
		if c == 2 {
			chain = recs
		}
		for _, rec := range chain {
			b, _ := rec.Marshal()
			msgs = append(msgs, kafka.Message{Key: kafkax.ContactKey(c), Value: b})
		}
	}
	w := kafkax.NewWriter(r.brokers, forged)
	if err := w.WriteMessages(r.ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := r.ledger.Rebuild(r.ctx, r.brokers, forged); err != nil {
		t.Fatal(err)
	}
	if rep := r.checkpoint(); rep.Seq != 2 || rep.Heads != 3 {
		t.Fatalf("checkpoint after the rebuild: %+v", rep)
	}
	a := r.audit()
	if a.OK() || len(a.CheckpointFailures) != 0 || a.CheckpointsVerified != 2 || !slices.Equal(findings(a), []string{"2:truncated"}) {
		t.Fatalf("audit: checkpoints %v, chains %v", problems(a), findings(a))
	}
	if a.ChainFailures[0].CheckpointSeq != 1 {
		t.Fatalf("contact 2 fails against checkpoint %d, want 1", a.ChainFailures[0].CheckpointSeq)
	}
}

// Records written after a checkpoint extend the chains it holds: the audit passes, new
// chains are counted as not checkpointed yet, and the next checkpoint lists only the
// chains that moved.
func TestLedgerAuditAcceptsRecordsAfterACheckpoint(t *testing.T) {
	r := newLedgerRig(t)
	r.apply("1+", "2+", "2-")
	r.checkpoint()
	r.apply("1-", "2+", "2-", "4+")
	a := r.audit()
	if !a.OK() || a.ChainsChecked != 3 || a.ChainsOK != 3 || a.ChainsNotCheckpointed != 1 {
		t.Fatalf("audit after more records: %+v", a)
	}
	c, err := AuditContact(r.ctx, r.conn, 2, r.pub)
	if err != nil || c.Ledger.Status != LedgerOK || c.Ledger.Checkpoint.Records != 2 || len(c.Consent) != 4 {
		t.Fatalf("audit contact 2: %+v, %d records, %v", c.Ledger, len(c.Consent), err)
	}
	if c, _ := AuditContact(r.ctx, r.conn, 4); c.Ledger.Status != LedgerNotCheckpointed || c.Ledger.Failed() {
		t.Fatalf("audit contact 4: %+v", c.Ledger)
	}
	rep := r.checkpoint()
	var listed []uint32
	if err := CheckpointHeads(r.ctx, r.conn, rep.Checkpoint, func(h throttle.CheckpointHead) error {
		listed = append(listed, h.ContactID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if rep.Seq != 2 || !slices.Equal(listed, []uint32{1, 2, 4}) {
		t.Fatalf("second checkpoint %d lists %v, want 1, 2, 4", rep.Seq, listed)
	}
	r.apply("3+")
	r.checkpoint()
	if a = r.audit(); !a.OK() || a.CheckpointsVerified != 3 || a.ChainsOK != 4 || a.ChainsNotCheckpointed != 0 {
		t.Fatalf("audit after three checkpoints: %v %v %+v", problems(a), findings(a), a)
	}

	// A checkpoint removed from the middle breaks the chain of checkpoints; an old
	// latest checkpoint fails --max-age.
	r.deleteRows("ledger_checkpoints", "seq = 2")
	a = r.audit()
	if a.OK() || !slices.Equal(problems(a), []string{"3:chain"}) {
		t.Fatalf("audit without checkpoint 2: %v", problems(a))
	}
	a, err = AuditLedger(r.ctx, r.conn, LedgerAuditOptions{Keys: []ed25519.PublicKey{r.pub}, MaxAge: 2 * time.Hour, Now: r.now.Add(3 * time.Hour)})
	if err != nil || !slices.Contains(problems(a), "3:stale") {
		t.Fatalf("audit 3 hours after the latest checkpoint: %v, %v", problems(a), err)
	}
}

// A chain that does not link fails whatever the checkpoints say: an edited record after
// the checkpointed head, or a chain no checkpoint lists yet.
func TestLedgerAuditNamesBrokenChains(t *testing.T) {
	r := newLedgerRig(t)
	r.apply("1+", "2+")
	r.checkpoint()
	r.apply("1-", "3+")
	edited := r.chain(1)[1]
	edited.Action = events.Grant
	r.deleteRows("consent_log", fmt.Sprintf("id = '%s'", edited.ID))
	three := r.chain(3)[0]
	three.Proof = "forged"
	insertConsent(t, r.conn, []events.ConsentRecord{edited, three})
	a := r.audit()
	if a.OK() || len(a.CheckpointFailures) != 0 || !slices.Equal(findings(a), []string{"1:chain_broken", "3:chain_broken"}) || a.ChainsOK != 1 {
		t.Fatalf("audit: checkpoints %v, chains %v", problems(a), findings(a))
	}
	if f := a.ChainFailures[0]; f.CheckpointSeq != 0 || !strings.Contains(f.Detail, "record 2") {
		t.Fatalf("finding %+v", f)
	}
}
