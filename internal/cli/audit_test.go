package cli

import (
	"context"
	"encoding/csv"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var auditBase = time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)

// seedAudit writes, with plain batches, campaign "ok" (contact 1, granted before the
// send) and campaign "bad" (contact 2, revoked before the send), each event twice.
func seedAudit(t *testing.T, conn driver.Conn) {
	t.Helper()
	ctx := context.Background()
	if _, err := analytics.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	g1 := events.ConsentRecord{ID: "g1", ContactID: 1, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "import", Time: auditBase}
	g1.Seal("")
	g2 := events.ConsentRecord{ID: "g2", ContactID: 2, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "import", Time: auditBase}
	g2.Seal("")
	r2 := events.ConsentRecord{ID: "r2", ContactID: 2, Channel: "whatsapp", Purpose: "marketing", Action: events.Revoke, Source: "keyword", Time: auditBase.Add(time.Minute)}
	r2.Seal(g2.Hash)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO consent_log (id, contact_id, channel, purpose, action, source, ts, ts_ms, prev_hash, hash)")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []events.ConsentRecord{g1, g2, r2} {
		if err := b.Append(r.ID, r.ContactID, r.Channel, r.Purpose, string(r.Action), r.Source, r.Time, uint64(r.Time.UnixMilli()), r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	b, err = conn.PrepareBatch(ctx, "INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, template, consent_ref)")
	if err != nil {
		t.Fatal(err)
	}
	at := auditBase.Add(time.Hour)
	for range 2 {
		for _, e := range []struct {
			campaign string
			contact  uint32
			ref      string
		}{{"ok", 1, "g1"}, {"bad", 2, "g2"}} {
			id := events.ID(e.campaign, e.contact, events.Sent, "")
			if err := b.Append(id, "sent", at, uint64(at.UnixMilli()), e.campaign, e.contact, "s1", "whatsapp", "promo", e.ref); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	// Contact 2 was deferred by quiet hours in campaign "later" and not sent yet.
	b, err = conn.PrepareBatch(ctx, "INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, reason, until)")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []events.Kind{events.Queued, events.Deferred} {
		reason, until := "", time.Unix(0, 0)
		if k == events.Deferred {
			reason, until = "quiet_hours", auditBase.Add(12*time.Hour)
		}
		if err := b.Append(events.ID("later", 2, k, ""), string(k), at, uint64(at.UnixMilli()), "later", uint32(2), "s1", "whatsapp", reason, until); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func TestAuditCommands(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	seedAudit(t, conn)
	dsn := testenv.ClickHouseDSN(t, db)

	code, out, errOut := run("--clickhouse-dsn", dsn, "audit", "campaign", "ok")
	if code != 0 || !strings.Contains(out, "1 sent messages checked (0 free-form), 0 violations") {
		t.Fatalf("audit campaign ok: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("--clickhouse-dsn", dsn, "audit", "campaign", "bad")
	if code != 1 || !strings.Contains(out, "1 violations") || !strings.Contains(out, "no_consent") || !strings.Contains(errOut, "1 violations") {
		t.Fatalf("audit campaign bad: exit %d (want 1)\n%s%s", code, out, errOut)
	}
	code, out, _ = run("--clickhouse-dsn", dsn, "audit", "campaign", "bad", "--output", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 1 || err != nil || len(recs) != 2 || recs[1][0] != "no_consent" || recs[1][2] != "2" {
		t.Fatalf("audit campaign bad --output csv: exit %d, %v\n%s", code, err, out)
	}

	code, out, errOut = run("--clickhouse-dsn", dsn, "audit", "export", "--from", "2025-03-10", "--to", "2025-03-11")
	recs, err = csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 3 || recs[0][0] != "event_id" {
		t.Fatalf("audit export: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	for _, r := range recs[1:] {
		if r[12] != "marketing" || r[11] != "grant" {
			t.Fatalf("audit export: row without its consent proof: %v", r)
		}
	}
	code, _, errOut = run("--clickhouse-dsn", dsn, "audit", "export", "--from", "yesterday", "--to", "2025-03-11")
	if code != 2 || !strings.Contains(errOut, "--from") {
		t.Fatalf("audit export with a bad --from: exit %d, %s", code, errOut)
	}

	rdb, prefix := testenv.Redis(t)
	if _, err := segments.NewStore(rdb, prefix).Upsert(context.Background(), []segments.Contact{{Phone: "+66812345678"}, {Phone: "+66812345679"}}); err != nil {
		t.Fatal(err)
	}
	redisURL := "redis://" + testenv.RedisAddr(t) + "/0"
	code, out, errOut = run("--clickhouse-dsn", dsn, "--redis-url", redisURL, "--redis-prefix", prefix, "audit", "contact", "+66812345679")
	if code != 0 || !strings.Contains(out, "2 consent records, hash chain verified") || !strings.Contains(out, "1 messages sent") ||
		!strings.Contains(out, "2 campaigns: why each did or did not send") {
		t.Fatalf("audit contact: exit %d\n%s%s", code, out, errOut)
	}
	// The deferral shows with its reason and when the job is due again.
	if !regexp.MustCompile(`later +deferred +quiet_hours +2025-03-10T10:00:00.000Z +2025-03-10T21:00:00.000Z +1`).MatchString(out) {
		t.Fatalf("audit contact: no deferral of campaign later in\n%s", out)
	}
	if strings.Contains(out, "suppressed on") {
		t.Fatalf("audit contact shows a suppression before any:\n%s", out)
	}
	// A number WhatsApp could not reach is suppressed there: the audit says so.
	ids, _ := segments.NewStore(rdb, prefix).Upsert(context.Background(), []segments.Contact{{Phone: "+66812345679"}})
	if err := throttle.NewPolicy(rdb, prefix, nil).Suppress(context.Background(), "whatsapp", ids, []throttle.Suppression{{Reason: throttle.ReasonUndeliverable,
		Until: time.Now().Add(time.Hour), Proof: "whatsapp error 131026 on message wamid.Z"}}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run("--clickhouse-dsn", dsn, "--redis-url", redisURL, "--redis-prefix", prefix, "audit", "contact", "+66812345679")
	if code != 0 || !strings.Contains(out, "suppressed on whatsapp as undeliverable until") || !strings.Contains(out, "wamid.Z") {
		t.Fatalf("audit contact of a suppressed contact: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("--clickhouse-dsn", dsn, "--redis-url", redisURL, "--redis-prefix", prefix, "audit", "contact", "+66812345679", "--output", "json")
	if code != 0 || !strings.Contains(out, `"outcome": "deferred"`) || !strings.Contains(out, `"until": "2025-03-10T21:00:00Z"`) ||
		!strings.Contains(out, `"reason": "undeliverable"`) {
		t.Fatalf("audit contact --output json: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = run("--clickhouse-dsn", dsn, "--redis-url", redisURL, "--redis-prefix", prefix, "audit", "contact", "+66899999999")
	if code != 2 || !strings.Contains(errOut, "not found") {
		t.Fatalf("audit contact of an unknown phone: exit %d, %s", code, errOut)
	}

	// Without --purpose, the campaign's own purpose comes from Redis: "ok" sent under
	// utility has no utility consent.
	rdb.HSet(context.Background(), prefix+"{cmp:ok}", "spec", `{"id":"ok","purpose":"utility"}`, "state", "completed")
	code, out, errOut = run("--clickhouse-dsn", dsn, "--redis-url", redisURL, "--redis-prefix", prefix, "audit", "campaign", "ok")
	if code != 1 || !strings.Contains(out, "purpose utility") || !strings.Contains(out, "no_consent") {
		t.Fatalf("audit campaign ok as utility: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = run("--clickhouse-dsn", dsn, "--redis-url", redisURL, "--redis-prefix", prefix, "audit", "campaign", "nope")
	if code != 2 || !strings.Contains(errOut, "--purpose") {
		t.Fatalf("audit of a campaign unknown to Redis: exit %d, %s", code, errOut)
	}
}
