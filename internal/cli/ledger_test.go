package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

func TestLedgerKeygen(t *testing.T) {
	code, out, errOut := run("ledger", "keygen", "-o", "json")
	var keys map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &keys) != nil {
		t.Fatalf("keygen -o json: exit %d\n%s%s", code, out, errOut)
	}
	key, err := throttle.ParseLedgerKey(keys["private_key"])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := throttle.ParseLedgerPublicKey(keys["public_key"])
	if err != nil || !pub.Equal(key.Public()) || keys["key_id"] != throttle.LedgerKeyID(pub) {
		t.Fatalf("keygen: public key %s, key id %s, %v", keys["public_key"], keys["key_id"], err)
	}
	file := filepath.Join(t.TempDir(), "ledger.key")
	code, out, errOut = run("ledger", "keygen", "--out", file)
	if code != 0 || !strings.Contains(out, "herald audit ledger --public-key ") || strings.Contains(out, "private key: "+file+"\n") {
		t.Fatalf("keygen --out: exit %d\n%s%s", code, out, errOut)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", st, err)
	}
	if _, err := throttle.ParseLedgerKey(file); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = run("ledger", "keygen", "--out", file); code != 2 || !strings.Contains(errOut, "never overwritten") {
		t.Fatalf("keygen over an existing key: exit %d, %s", code, errOut)
	}
	if code, _, errOut = run("--ledger-signing-key", "not-a-key", "ledger", "checkpoint"); code != 2 || !strings.Contains(errOut, "HERALD_LEDGER_SIGNING_KEY") {
		t.Fatalf("a bad signing key: exit %d, %s", code, errOut)
	}
}

// deleteRows removes rows as someone with write access to ClickHouse can, and waits for
// the mutation.
func deleteRows(t *testing.T, conn driver.Conn, table, where string) {
	t.Helper()
	ctx := context.Background()
	if err := conn.Exec(ctx, "ALTER TABLE "+table+" DELETE WHERE "+where); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = ? AND is_done = 0", table).Scan(&n); err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the delete from %s did not finish", table)
		}
	}
}

func insertRecords(t *testing.T, conn driver.Conn, recs []events.ConsentRecord) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), "INSERT INTO consent_log (id, contact_id, channel, purpose, action, source, ts, ts_ms, prev_hash, hash)")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := b.Append(r.ID, r.ContactID, r.Channel, r.Purpose, string(r.Action), r.Source, r.Time, uint64(r.Time.UnixMilli()), r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func TestAuditLedger(t *testing.T) {
	ctx := context.Background()
	conn, db := testenv.ClickHouse(t)
	if _, err := analytics.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	dsn := testenv.ClickHouseDSN(t, db)
	rdb, prefix := testenv.Redis(t)
	redisURL := "redis://" + testenv.RedisAddr(t) + "/0"
	brokers, topics := testenv.Kafka(t, 2)
	w := kafkax.NewWriter(brokers, topics.Consent)
	defer w.Close()
	ids, err := segments.NewStore(rdb, prefix).Upsert(ctx, []segments.Contact{{Phone: "+66812345601"}, {Phone: "+66812345602"}})
	if err != nil {
		t.Fatal(err)
	}
	// Contact 2: grant, revoke, grant. The sink's copy is written straight into consent_log.
	l := throttle.NewLedger(rdb, prefix, w)
	var all []events.ConsentRecord
	for _, c := range []struct {
		id uint32
		a  events.ConsentAction
	}{{ids[0], events.Grant}, {ids[1], events.Grant}, {ids[1], events.Revoke}, {ids[1], events.Grant}} {
		recs, err := l.Apply(ctx, []throttle.Change{{ContactID: c.id, Channel: "whatsapp", Purpose: "marketing", Action: c.a, Source: "api"}}, false)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	insertRecords(t, conn, all)

	code, out, _ := run("ledger", "keygen", "-o", "json")
	var keys map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &keys) != nil {
		t.Fatalf("keygen: %d %s", code, out)
	}
	servers := []string{"--clickhouse-dsn", dsn, "--redis-url", redisURL, "--redis-prefix", prefix}
	code, out, errOut := run(append(servers, "--ledger-signing-key", keys["private_key"], "ledger", "checkpoint")...)
	if code != 0 || !strings.Contains(out, "checkpoint 1 at ") || !strings.Contains(out, ": 2 chain heads") {
		t.Fatalf("ledger checkpoint: exit %d\n%s%s", code, out, errOut)
	}
	audit := func(args ...string) (int, string, string) {
		return run(append([]string{"--clickhouse-dsn", dsn, "audit", "ledger", "--public-key", keys["public_key"]}, args...)...)
	}
	code, out, errOut = audit()
	if code != 0 || !strings.Contains(out, "ledger: 1 checkpoints, 1 verified (latest 1 at ") || !strings.Contains(out, "2 chains checked, 2 ok (0 not in a checkpoint yet), 0 failed") {
		t.Fatalf("audit ledger: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = audit("-o", "json")
	var rep map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep["checkpoints_verified"] != 1.0 || rep["chains_ok"] != 2.0 ||
		rep["chain_failures"] == nil || rep["latest"].(map[string]any)["key_id"] != keys["key_id"] {
		t.Fatalf("audit ledger -o json: exit %d\n%s", code, out)
	}
	if code, _, errOut = run("--clickhouse-dsn", dsn, "audit", "ledger"); code != 2 || !strings.Contains(errOut, "--public-key") {
		t.Fatalf("audit ledger with no key: exit %d, %s", code, errOut)
	}
	contact := func(args ...string) (int, string, string) {
		return run(append(append(servers, "audit", "contact", "+66812345602"), args...)...)
	}
	code, out, errOut = contact("--public-key", keys["public_key"])
	if code != 0 || !strings.Contains(out, "3 consent records, hash chain verified\nledger checkpoint: matches the latest checkpoint listing it, 1 of ") ||
		!strings.Contains(out, "(3 records ending in ") || !strings.Contains(out, "signature and digest verified)") {
		t.Fatalf("audit contact: exit %d\n%s%s", code, out, errOut)
	}

	// Someone removes contact 2's revoke from consent_log and re-seals the rest.
	chain, err := analytics.ConsentLedger(ctx, conn, ids[1])
	if err != nil || len(chain) != 3 {
		t.Fatalf("chain of contact 2: %d records, %v", len(chain), err)
	}
	forged := []events.ConsentRecord{chain[0], chain[2]}
	forged[1].Seal(forged[0].Hash)
	deleteRows(t, conn, "consent_log", fmt.Sprintf("contact_id = %d", ids[1]))
	insertRecords(t, conn, forged)

	code, out, errOut = contact()
	if code != 1 || !strings.Contains(out, "2 consent records, hash chain verified\nledger checkpoint: TRUNCATED: 2 records where checkpoint 1") ||
		!strings.Contains(out, "(signature not checked: give --public-key)") || !strings.Contains(errOut, "truncated against the ledger checkpoints") {
		t.Fatalf("audit contact after the rewrite: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = audit()
	if code != 1 || !strings.Contains(out, "2 chains checked, 1 ok (0 not in a checkpoint yet), 1 failed") ||
		!strings.Contains(out, fmt.Sprintf("\n%d        truncated  2        1           2 records where checkpoint 1", ids[1])) ||
		!strings.Contains(errOut, fmt.Sprintf("0 checkpoint problems, 1 chains failed (contacts %d)", ids[1])) {
		t.Fatalf("audit ledger after the rewrite: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = audit("-o", "csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 1 || err != nil || len(rows) != 2 || strings.Join(rows[0], ",") != "kind,contact_id,checkpoint_id,seq,status,detail" ||
		rows[1][0] != "chain" || rows[1][1] != fmt.Sprint(ids[1]) || rows[1][3] != "1" || rows[1][4] != "truncated" {
		t.Fatalf("audit ledger -o csv: exit %d, %v\n%s", code, err, out)
	}

	// Another key does not verify the checkpoint: it is named, and so are its contacts.
	code, out, _ = run("ledger", "keygen", "-o", "json")
	var other map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &other) != nil {
		t.Fatal(out)
	}
	code, out, errOut = run("--clickhouse-dsn", dsn, "audit", "ledger", "--public-key", other["public_key"], "-o", "csv")
	rows, _ = csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 1 || len(rows) != 4 || rows[1][0] != "checkpoint" || rows[1][4] != "signature" || rows[2][4] != "checkpoint_invalid" {
		t.Fatalf("audit ledger with another key: exit %d\n%s%s", code, out, errOut)
	}
}
