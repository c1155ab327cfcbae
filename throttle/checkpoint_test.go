package throttle

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
)

func testKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes32(b))
}

func bytes32(b byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b
	}
	return s
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// The digest is SHA-256 over the preimage the package documents, built here by hand, and
// the signature covers it: a wrong key or a changed digest does not verify.
func TestCheckpointDigestAndSignature(t *testing.T) {
	at := time.Date(2025, 3, 10, 10, 0, 0, 0, time.UTC)
	heads := []CheckpointHead{{1, hashOf("a"), 2}, {7, hashOf("b"), 1}, {300, hashOf("c"), 3}}
	cp := Checkpoint{Seq: 4, At: at, PrevDigest: hashOf("prev")}
	digest, n, err := cp.ComputeDigest(heads)
	if err != nil || n != 3 {
		t.Fatalf("digest: %d heads, %v", n, err)
	}
	pre := fmt.Sprintf("herald-ledger-checkpoint/v1\nseq 4\nat %d\nprev %s\n1:%s:2\n7:%s:1\n300:%s:3\nheads 3\n",
		at.UnixMilli(), hashOf("prev"), hashOf("a"), hashOf("b"), hashOf("c"))
	if want := hashOf(pre); digest != want {
		t.Fatalf("digest %s, want SHA-256 of the documented preimage %s", digest, want)
	}
	cp.Digest, cp.Heads = digest, n
	key := testKey(1)
	if err := cp.Sign(key); err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	if cp.KeyID != LedgerKeyID(pub) || cp.PublicKey != base64.StdEncoding.EncodeToString(pub) {
		t.Fatalf("key fields %s %s", cp.KeyID, cp.PublicKey)
	}
	if err := cp.VerifySignature(testKey(9).Public().(ed25519.PublicKey), pub); err != nil {
		t.Fatalf("signature with the right key among others: %v", err)
	}
	// The same signature checked by hand, as an auditor would.
	d, _ := hex.DecodeString(cp.Digest)
	sig, _ := base64.StdEncoding.DecodeString(cp.Signature)
	if !ed25519.Verify(pub, d, sig) {
		t.Fatal("signature is not Ed25519 over the 32 digest bytes")
	}

	if err := cp.VerifySignature(testKey(2).Public().(ed25519.PublicKey)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("wrong public key: %v, want ErrUnknownKey", err)
	}
	// A key that claims the signer's id is still checked against the trusted key.
	forged := cp
	if err := forged.Sign(testKey(3)); err != nil {
		t.Fatal(err)
	}
	forged.KeyID = cp.KeyID
	if err := forged.VerifySignature(pub); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("signature by another key under the signer's id: %v, want ErrBadSignature", err)
	}
	modified := cp
	modified.Digest = hashOf(pre + "x")
	if err := modified.VerifySignature(pub); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("modified digest: %v, want ErrBadSignature", err)
	}
	// Any change to a head or a field changes the digest.
	for name, change := range map[string]func(*Checkpoint, []CheckpointHead){
		"head":    func(_ *Checkpoint, h []CheckpointHead) { h[1].Head = hashOf("x") },
		"records": func(_ *Checkpoint, h []CheckpointHead) { h[2].Records = 2 },
		"contact": func(_ *Checkpoint, h []CheckpointHead) { h[0].ContactID = 2 },
		"seq":     func(c *Checkpoint, _ []CheckpointHead) { c.Seq = 5 },
		"at":      func(c *Checkpoint, _ []CheckpointHead) { c.At = c.At.Add(time.Millisecond) },
		"prev":    func(c *Checkpoint, _ []CheckpointHead) { c.PrevDigest = "" },
	} {
		c, h := cp, slices.Clone(heads)
		change(&c, h)
		if got, _, _ := c.ComputeDigest(h); got == cp.Digest {
			t.Errorf("changed %s: same digest", name)
		}
	}
	if got, _, _ := cp.ComputeDigest(heads[:2]); got == cp.Digest {
		t.Error("a head left out: same digest")
	}
	for _, bad := range [][]CheckpointHead{
		{heads[1], heads[0]},  // out of order
		{heads[0], heads[0]},  // twice
		{{1, "ABC", 1}},       // not a hash
		{{1, hashOf("a"), 0}}, // no records
		{{0, hashOf("a"), 1}}, // no contact
		{{1, strings.ToUpper(hashOf("a")), 1}},
	} {
		if _, _, err := cp.ComputeDigest(bad); err == nil {
			t.Errorf("heads %v accepted", bad)
		}
	}
}

func TestParseLedgerKeys(t *testing.T) {
	key := testKey(5)
	pub := key.Public().(ed25519.PublicKey)
	dir := t.TempDir()
	file := filepath.Join(dir, "ledger.key")
	if err := os.WriteFile(file, []byte(EncodeLedgerKey(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	for _, s := range []string{EncodeLedgerKey(key), hex.EncodeToString(key.Seed()), base64.StdEncoding.EncodeToString(key), file, pemKey} {
		got, err := ParseLedgerKey(s)
		if err != nil || !got.Equal(key) {
			t.Errorf("ParseLedgerKey(%.20q…) = %v", s, err)
		}
	}
	bad := append(ed25519.PrivateKey{}, key...)
	bad[40] ^= 1
	for _, s := range []string{"", "nope", filepath.Join(dir, "missing.key"), base64.StdEncoding.EncodeToString(bad), base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := ParseLedgerKey(s); err == nil {
			t.Errorf("ParseLedgerKey(%q) accepted", s)
		}
	}
	pubFile := filepath.Join(dir, "ledger.pub")
	if err := os.WriteFile(pubFile, []byte(EncodeLedgerPublicKey(pub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pder, _ := x509.MarshalPKIXPublicKey(pub)
	pemPub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}))
	for _, s := range []string{EncodeLedgerPublicKey(pub), hex.EncodeToString(pub), pubFile, pemPub} {
		got, err := ParseLedgerPublicKey(s)
		if err != nil || !got.Equal(pub) {
			t.Errorf("ParseLedgerPublicKey(%.20q…) = %v", s, err)
		}
	}
	if _, err := ParseLedgerPublicKey(EncodeLedgerKey(key) + "AAAA"); err == nil {
		t.Error("a 35-byte public key accepted")
	}
}

// memCheckpoints is a fake of our own CheckpointStore (the ClickHouse one is tested in
// analytics): it keeps what was stored and can refuse the header.
type memCheckpoints struct {
	mu     sync.Mutex
	cps    []Checkpoint
	heads  map[string][]CheckpointHead
	refuse error
}

func (m *memCheckpoints) LastCheckpoint(context.Context) (Checkpoint, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.cps) == 0 {
		return Checkpoint{}, false, nil
	}
	return m.cps[len(m.cps)-1], true, nil
}

func (m *memCheckpoints) SaveHeads(_ context.Context, cp Checkpoint, heads []CheckpointHead) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.heads == nil {
		m.heads = map[string][]CheckpointHead{}
	}
	m.heads[cp.ID] = append(m.heads[cp.ID], heads...)
	return nil
}

func (m *memCheckpoints) SaveCheckpoint(_ context.Context, cp Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse != nil {
		return m.refuse
	}
	m.cps = append(m.cps, cp)
	return nil
}

// verify checks the latest stored checkpoint against its stored heads and returns them.
func (m *memCheckpoints) verify(t *testing.T, pub ed25519.PublicKey) (Checkpoint, []CheckpointHead) {
	t.Helper()
	cp, _, _ := m.LastCheckpoint(context.Background())
	heads := m.heads[cp.ID]
	if d, n, err := cp.ComputeDigest(heads); err != nil || d != cp.Digest || n != cp.Heads {
		t.Fatalf("checkpoint %d: stored heads hash to %s (%d, %v), header says %s (%d)", cp.Seq, d, n, err, cp.Digest, cp.Heads)
	}
	if err := cp.VerifySignature(pub); err != nil {
		t.Fatal(err)
	}
	return cp, heads
}

func TestCheckpointerListsTheHeadsThatMoved(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := rulesRedis(t)
	l := NewLedger(rdb, prefix, &memPublisher{})
	now := time.Date(2025, 3, 10, 10, 0, 0, 0, time.UTC)
	store := &memCheckpoints{}
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	cpr := NewCheckpointer(CheckpointerConfig{Redis: rdb, Prefix: prefix, Store: store, Key: key, Every: time.Hour,
		Now: func() time.Time { return now }, Chunk: 2, Batch: 2})
	mk := func(id uint32, a events.ConsentAction) Change {
		return Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: a, Source: "api"}
	}
	apply := func(cs ...Change) {
		t.Helper()
		if _, err := l.Apply(ctx, cs, false); err != nil {
			t.Fatal(err)
		}
	}
	apply(mk(1, events.Grant), mk(2, events.Grant), mk(3, events.Grant))
	apply(mk(2, events.Revoke))
	apply(mk(2, events.Grant))

	rep, took, err := cpr.Tick(ctx)
	if err != nil || !took || rep.Seq != 1 || rep.PrevDigest != "" || rep.Heads != 3 || !rep.At.Equal(now) {
		t.Fatalf("first tick: %+v, %v, %v", rep, took, err)
	}
	cp, heads := store.verify(t, pub)
	redisHeads, _ := rdb.HGetAll(ctx, consentKey(prefix, rdb, "consent:head")).Result()
	want := []CheckpointHead{{1, redisHeads["1"], 1}, {2, redisHeads["2"], 3}, {3, redisHeads["3"], 1}}
	if !slices.Equal(heads, want) {
		t.Fatalf("checkpoint heads %v, want %v", heads, want)
	}
	if n, _ := rdb.Exists(ctx, consentKey(prefix, rdb, "consent:dirty"), consentKey(prefix, rdb, "consent:dirty:taken")).Result(); n != 0 {
		t.Fatal("marks left after the checkpoint was stored")
	}

	// Not due within the hour; due after it, and then it lists nothing new.
	now = now.Add(59 * time.Minute)
	if _, took, err := cpr.Tick(ctx); took || err != nil {
		t.Fatalf("tick 59 minutes later took a checkpoint (%v)", err)
	}
	now = now.Add(time.Minute)
	rep, took, err = cpr.Tick(ctx)
	if err != nil || !took || rep.Seq != 2 || rep.Heads != 0 || rep.PrevDigest != cp.Digest {
		t.Fatalf("second tick: %+v, %v, %v", rep, took, err)
	}
	store.verify(t, pub)

	// Contact 3 revokes: only its head moves into the next checkpoint, one record longer.
	apply(mk(3, events.Revoke))
	now = now.Add(time.Second)
	rep, err = cpr.Checkpoint(ctx)
	if err != nil || rep.Seq != 3 {
		t.Fatalf("third checkpoint %+v, %v", rep, err)
	}
	_, heads = store.verify(t, pub)
	h3, _ := rdb.HGet(ctx, consentKey(prefix, rdb, "consent:head"), "3").Result()
	if !slices.Equal(heads, []CheckpointHead{{3, h3, 2}}) {
		t.Fatalf("third checkpoint heads %v", heads)
	}

	// A checkpoint that fails to store keeps its marks for the next one, with the new ones.
	apply(mk(1, events.Revoke))
	store.refuse = errors.New("clickhouse away")
	if _, err := cpr.Checkpoint(ctx); err == nil {
		t.Fatal("checkpoint succeeded while the store refused it")
	}
	store.refuse = nil
	apply(mk(4, events.Grant))
	if rep, err = cpr.Checkpoint(ctx); err != nil || rep.Seq != 4 || rep.Heads != 2 {
		t.Fatalf("checkpoint after a failed one: %+v, %v", rep, err)
	}
	_, heads = store.verify(t, pub)
	if heads[0].ContactID != 1 || heads[0].Records != 2 || heads[1].ContactID != 4 {
		t.Fatalf("checkpoint after a failed one lists %v", heads)
	}

	// One checkpoint at a time.
	rdb.Set(ctx, consentKey(prefix, rdb, "ledger:lock"), "someone", time.Minute)
	if _, err := cpr.Checkpoint(ctx); !errors.Is(err, ErrCheckpointBusy) {
		t.Fatalf("checkpoint while another is taken: %v", err)
	}
	rdb.Del(ctx, consentKey(prefix, rdb, "ledger:lock"))

	// A chain from before lengths were counted is left out until a rebuild counts it.
	rdb.HSet(ctx, consentKey(prefix, rdb, "consent:head"), "9", hashOf("old"))
	rdb.SAdd(ctx, consentKey(prefix, rdb, "consent:dirty"), "9")
	if rep, err = cpr.Checkpoint(ctx); err != nil || rep.Heads != 0 || rep.Skipped != 1 {
		t.Fatalf("checkpoint with a chain of unknown length: %+v, %v", rep, err)
	}
	apply(mk(9, events.Grant))
	if n, _ := rdb.HExists(ctx, consentKey(prefix, rdb, "consent:len"), "9").Result(); n {
		t.Fatal("a chain of unknown length got a length from one new record")
	}
}

// A rebuild counts every chain's records (copies of a record written twice count once)
// and marks every chain for the next checkpoint.
func TestRebuildCountsChainsForCheckpoints(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := rulesRedis(t)
	brokers, topics := testenv.Kafka(t, 2)
	w := kafkax.NewWriter(brokers, topics.Consent)
	defer w.Close()
	l := NewLedger(rdb, prefix, w)
	mk := func(id uint32, a events.ConsentAction) Change {
		return Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: a, Source: "api"}
	}
	var all []events.ConsentRecord
	for _, cs := range [][]Change{
		{mk(1, events.Grant), mk(2, events.Grant), mk(3, events.Grant), mk(4, events.Grant), mk(5, events.Grant)},
		{mk(1, events.Revoke), mk(2, events.Revoke)},
		{mk(1, events.Grant)},
	} {
		recs, err := l.Apply(ctx, cs, false)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	lens, _ := rdb.HGetAll(ctx, consentKey(prefix, rdb, "consent:len")).Result()
	if lens["1"] != "3" || lens["2"] != "2" || lens["5"] != "1" {
		t.Fatalf("chain lengths kept by the ledger: %v", lens)
	}
	heads, _ := rdb.HGetAll(ctx, consentKey(prefix, rdb, "consent:head")).Result()
	// A retried write: the first two records of contact 1 again, after the rest.
	var copies []kafka.Message
	for _, r := range all {
		if r.ContactID == 1 && len(copies) < 2 {
			b, _ := r.Marshal()
			copies = append(copies, kafka.Message{Key: kafkax.ContactKey(r.ContactID), Value: b})
		}
	}
	if err := w.WriteMessages(ctx, copies...); err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, consentKey(prefix, rdb, "consent:len"), consentKey(prefix, rdb, "consent:dirty"))
	rep, err := l.Rebuild(ctx, brokers, topics.Consent)
	if err != nil || rep.Copies != 2 || rep.UnknownLength != 0 {
		t.Fatalf("rebuild %+v, %v", rep, err)
	}
	got, _ := rdb.HGetAll(ctx, consentKey(prefix, rdb, "consent:len")).Result()
	if fmt.Sprint(got) != fmt.Sprint(lens) || len(got) != 5 {
		t.Fatalf("chain lengths after rebuild %v, want %v", got, lens)
	}
	if h, _ := rdb.HGetAll(ctx, consentKey(prefix, rdb, "consent:head")).Result(); fmt.Sprint(h) != fmt.Sprint(heads) {
		t.Fatalf("heads after rebuild %v, want %v", h, heads)
	}
	if n, _ := rdb.SCard(ctx, consentKey(prefix, rdb, "consent:dirty")).Result(); n != 5 {
		t.Fatalf("%d chains marked for the next checkpoint, want 5", n)
	}
}
