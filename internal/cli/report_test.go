package cli

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

// Every report runs against a real ClickHouse in each output format.
func TestReportCommands(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	seedAudit(t, conn)
	dsn := testenv.ClickHouseDSN(t, db)
	period := []string{"--from", "2025-03-01", "--to", "2025-03-20"}
	for _, tc := range []struct {
		args []string
		csv0 string // first header column
		has  string // in the table output
	}{
		{[]string{"funnel", "--campaign", "ok"}, "kind", "sent"},
		{[]string{"funnel", "--campaign", "ok", "--by", "sender"}, "sender", "s1"},
		{append([]string{"retention", "--weeks", "2"}, period...), "cohort", "2025-03-10"},
		{append([]string{"retention", "--weeks", "2", "--by", "campaign"}, period...), "campaign", "bad"},
		{append([]string{"retention", "--by", "campaign", "--campaign", "ok"}, period...), "campaign", "ok"},
		{[]string{"ab", "--campaign", "ok", "--step", "read"}, "variant", "control"},
		{[]string{"heatmap"}, "weekday", "Mon"},
		{[]string{"lift", "--campaign", "ok", "--window", "72h"}, "group", "no holdout group"},
		{append([]string{"senders"}, period...), "sender", "s1"},
		{append([]string{"anomalies", "--all", "--history", "3"}, period...), "day", "2025-03-10"},
	} {
		name := strings.Join(tc.args, " ")
		base := append([]string{"--clickhouse-dsn", dsn, "report"}, tc.args...)
		code, out, errOut := run(base...)
		if code != 0 || !strings.Contains(out, tc.has) {
			t.Errorf("report %s: exit %d, want %q in\n%s%s", name, code, tc.has, out, errOut)
		}
		code, out, errOut = run(append(base, "--output", "json")...)
		if code != 0 || !json.Valid([]byte(out)) {
			t.Errorf("report %s --output json: exit %d\n%s%s", name, code, out, errOut)
		}
		code, out, errOut = run(append(base, "--output", "csv")...)
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if code != 0 || err != nil || len(recs) < 2 || recs[0][0] != tc.csv0 {
			t.Errorf("report %s --output csv: exit %d, %v\n%s%s", name, code, err, out, errOut)
		}
	}
	for _, args := range [][]string{
		{"funnel", "--campaign", "ok", "--by", "colour"},
		{"ab", "--campaign", "ok", "--step", "opened"},
		{"lift", "--campaign", "ok", "--window", "-1h"},
		{"retention", "--by", "sender"},
		{"retention", "--campaign", "ok"},
		{"funnel", "--campaign", "ok", "--output", "yaml"},
	} {
		if code, _, errOut := run(append([]string{"--clickhouse-dsn", dsn, "report"}, args...)...); code != 2 {
			t.Errorf("report %s: exit %d, want 2 (%s)", strings.Join(args, " "), code, errOut)
		}
	}
}

func TestAuditTrackReportHelp(t *testing.T) {
	for _, path := range [][]string{
		{"audit"}, {"audit", "campaign"}, {"audit", "contact"}, {"audit", "export"}, {"track"}, {"track", "conversion"},
		{"report", "funnel"}, {"report", "retention"}, {"report", "ab"}, {"report", "heatmap"}, {"report", "senders"}, {"report", "anomalies"}, {"report", "lift"},
	} {
		code, out, errOut := run(append(path, "--help")...)
		if code != 0 || !strings.Contains(out, "USAGE") {
			t.Errorf("herald %s --help: exit %d\n%s%s", strings.Join(path, " "), code, out, errOut)
		}
	}
}
