package app

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/throttle"
)

// With a signing key, the scheduler's leader signs a checkpoint of the ledger as soon as
// none is stored, and the audit verifies it and every chain.
func TestSchedulerCheckpointsTheLedger(t *testing.T) {
	_, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)
	brokers, topics := testenv.Kafka(t, 2)
	key := ed25519.NewKeyFromSeed([]byte("app test ledger key of 32 bytes."))
	cfg := Config{KafkaBrokers: brokers, TopicPrefix: strings.TrimSuffix(topics.Outbound, "outbound"),
		RedisURL: "redis://" + testenv.RedisAddr(t) + "/0", Prefix: prefix, ClickHouseDSN: testenv.ClickHouseDSN(t, db),
		Partitions: 2, LedgerKey: key, LedgerCheckpointEvery: time.Hour}
	d := NewDeps(cfg)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Migrate(ctx, d); err != nil {
		t.Fatal(err)
	}
	c, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ledger.Apply(ctx, []throttle.Change{
		{ContactID: 1, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"},
		{ContactID: 2, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"},
	}, false); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- Scheduler(sctx, d) }()
	go func() { done <- Sink(sctx, d) }()
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var cps []throttle.Checkpoint
	for len(cps) == 0 {
		if cps, err = analytics.Checkpoints(ctx, conn); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no checkpoint from the scheduler's leader")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := analytics.WaitCaughtUp(ctx, brokers, analytics.DefaultSinkGroup, topics.Consent); err != nil {
		t.Fatal(err)
	}
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if len(cps) != 1 || cps[0].Seq != 1 || cps[0].Heads != 2 {
		t.Fatalf("checkpoints %+v", cps)
	}
	a, err := analytics.AuditLedger(ctx, conn, analytics.LedgerAuditOptions{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil || !a.OK() || a.CheckpointsVerified != 1 || a.ChainsOK != 2 {
		t.Fatalf("audit: %+v, %v", a, err)
	}

	// A signing key without ClickHouse is a configuration error, said at start.
	d2 := NewDeps(Config{KafkaBrokers: brokers, RedisURL: cfg.RedisURL, Prefix: prefix, LedgerKey: key})
	defer d2.Close()
	if err := Scheduler(ctx, d2); err == nil || !strings.Contains(err.Error(), "HERALD_CLICKHOUSE_DSN") {
		t.Fatalf("scheduler with a signing key and no ClickHouse: %v", err)
	}
}

// dev and demo keep a signing key under the data dir: made once, then reused.
func TestDevLedgerKey(t *testing.T) {
	dir := t.TempDir()
	k1, path, err := devLedgerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, path2, err := devLedgerKey(dir)
	if err != nil || !k1.Equal(k2) || path != path2 {
		t.Fatalf("second call: %v, same key %v, %s vs %s", err, k1.Equal(k2), path, path2)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v", path, st.Mode(), err)
	}
	pub, err := throttle.ParseLedgerPublicKey(filepath.Join(dir, "ledger.pub"))
	if err != nil || !pub.Equal(k1.Public()) {
		t.Fatalf("ledger.pub: %v", err)
	}
}
