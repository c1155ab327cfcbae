package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// volatile matches what changes from run to run in a command's JSON: times (RFC 3339)
// and the consent ledger's random record ids.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"`), `"<time>"`},
	{regexp.MustCompile(`"record_id": "[^"]*"`), `"record_id": "<record_id>"`},
}

// goldenJSON compares a command's JSON, its volatile values normalised, with
// testdata/name.golden, or rewrites the file with -update.
func goldenJSON(t *testing.T, name, got string) {
	t.Helper()
	for _, v := range volatile {
		got = v.re.ReplaceAllString(got, v.with)
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestJSONGolden -update writes it)", err)
	}
	if !bytes.Equal([]byte(got), want) {
		t.Errorf("%s differs from %s (go test -run TestJSONGolden -update rewrites it)\n got:\n%s\nwant:\n%s", name, path, got, want)
	}
}

// The JSON of representative commands, run against real Redis, kfake and ClickHouse:
// the shapes scripts and the HTTP API rely on. A change here is a change of contract.
func TestJSONGolden(t *testing.T) {
	_, prefix := testenv.Redis(t)
	brokers, topics := testenv.Kafka(t, 1)
	conn, db := testenv.ClickHouse(t)
	seedAudit(t, conn)
	global := []string{"--output", "json", "--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix,
		"--kafka-brokers", strings.Join(brokers, ","), "--topic-prefix", strings.TrimSuffix(topics.Events, "events"),
		"--clickhouse-dsn", testenv.ClickHouseDSN(t, db)}
	cmd := func(name string, wantCode int, args ...string) {
		t.Helper()
		code, out, errOut := run(append(append([]string{}, global...), args...)...)
		if code != wantCode {
			t.Fatalf("herald %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		if name != "" {
			goldenJSON(t, name, out)
		}
	}

	csv := writeFile(t, "crm.csv", "phone,email,name,tags,opted_in,plan\n"+
		"+66 81 700 1001,ann@example.com,Ann,vip;customer,yes,gold\n"+
		"0817001002,,Bob,customer,no,\n"+
		",cat@example.com,Cat,customer,,basic\n"+
		"12,,Bad,,,\n"+
		",,Nobody,vip,,\n")
	cmd("contacts_import", 0, "contacts", "import", csv, "--default-region", "TH")
	cmd("segments_count", 0, "segments", "count", "customer and not vip")
	cmd("consent_show", 0, "consent", "show", "+66817001001")

	cmd("", 0, "senders", "add", "--phone-number-id", "100000000000001", "--token", "t", "--rate", "20")
	cmd("", 0, "templates", "add", writeFile(t, "promo.yaml", cliTemplate))
	cmd("", 0, "campaigns", "create", "--segment", "customer", "--template", "promo", "--sender", "100000000000001", "--name", "spring")
	cmd("campaigns_dry_run", 0, "campaigns", "dry-run", "1")
	cmd("", 0, "campaigns", "launch", "1")
	cmd("campaigns_status", 0, "campaigns", "status", "1")
	cmd("senders_show", 0, "senders", "show", "100000000000001")

	cmd("report_funnel", 0, "report", "funnel", "--campaign", "ok")
}
