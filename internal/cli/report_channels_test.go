package cli

import (
	"context"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// seedFailover writes campaign "fo": 6 contacts queued on WhatsApp; 1-3 delivered
// there; 4 and 5 failed with 131026 and fell back to SMS, delivered there (4's WhatsApp
// failure came after a late retry, still one contact); 6 fell back on an open circuit
// and its SMS was never delivered. Every row is written twice.
func seedFailover(t *testing.T, conn driver.Conn) {
	t.Helper()
	ctx := context.Background()
	if _, err := analytics.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, reason, error_code, from_channel)")
	if err != nil {
		t.Fatal(err)
	}
	add := func(kind events.Kind, c uint32, ch string, after time.Duration, reason string, code int32, from string) {
		at := auditBase.Add(time.Duration(c)*time.Minute + after)
		disc := ""
		if ch == "sms" {
			disc = "sms"
		}
		for range 2 {
			if err := b.Append(events.ID("fo", c, kind, disc), string(kind), at, uint64(at.UnixMilli()), "fo", c, ch+"-1", ch, reason, code, from); err != nil {
				t.Fatal(err)
			}
		}
	}
	for c := uint32(1); c <= 6; c++ {
		add(events.Queued, c, "whatsapp", 0, "", 0, "")
		switch {
		case c <= 3:
			add(events.Sent, c, "whatsapp", time.Second, "", 0, "")
			add(events.Delivered, c, "whatsapp", time.Duration(c)*time.Second+time.Second, "", 0, "")
		case c <= 5:
			add(events.Sent, c, "whatsapp", time.Second, "", 0, "")
			add(events.Failed, c, "whatsapp", 2*time.Second, "provider_failed", 131026, "")
			add(events.Fallback, c, "sms", 2*time.Second, analytics.FallbackPermanentFailure, 131026, "whatsapp")
			add(events.Sent, c, "sms", 3*time.Second, "", 0, "")
			add(events.Delivered, c, "sms", time.Duration(c)*time.Second, "", 0, "")
		default:
			add(events.Fallback, c, "sms", 0, analytics.FallbackCircuitOpen, 0, "whatsapp")
			add(events.Sent, c, "sms", time.Second, "", 0, "")
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// herald report channels in each output format (its JSON is a golden contract), and
// the per-channel lines of herald report funnel for a campaign that used two channels.
func TestReportChannels(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	seedAudit(t, conn)
	seedFailover(t, conn)
	base := []string{"--clickhouse-dsn", testenv.ClickHouseDSN(t, db), "report"}

	code, out, errOut := run(append(base, "channels", "--campaign", "fo")...)
	if code != 0 || !strings.Contains(out, "permanent_failure 2") || !strings.Contains(out, "whatsapp → sms") || !strings.Contains(out, "sms") {
		t.Errorf("report channels: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(append(base, "channels", "--campaign", "fo", "--output", "json")...)
	if code != 0 {
		t.Fatalf("report channels --output json: exit %d\n%s%s", code, out, errOut)
	}
	goldenJSON(t, "report_channels", out)
	code, out, errOut = run(append(base, "channels", "--campaign", "fo", "--output", "csv")...)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 3 || recs[0][0] != "channel" || recs[1][0] != "whatsapp" || recs[2][0] != "sms" {
		t.Errorf("report channels --output csv: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	if code, _, errOut := run(append(base, "channels")...); code != 2 {
		t.Errorf("report channels without --campaign: exit %d, want 2 (%s)", code, errOut)
	}

	code, out, errOut = run(append(base, "funnel", "--campaign", "fo")...)
	if code != 0 || !strings.Contains(out, "channel    sms") || !strings.Contains(out, "3 contacts fell back") {
		t.Errorf("report funnel of a two-channel campaign: exit %d, want a line per channel\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(append(base, "funnel", "--campaign", "ok")...)
	if code != 0 || strings.Contains(out, "channel ") || strings.Contains(out, "fell back") {
		t.Errorf("report funnel of a one-channel campaign: exit %d, want no channel line\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("report", "channels", "--help"); code != 0 || !strings.Contains(out, "USAGE") {
		t.Errorf("report channels --help: exit %d\n%s%s", code, out, errOut)
	}
}
