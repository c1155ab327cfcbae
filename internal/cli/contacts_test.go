package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
)

// contacts import (column mapping, tags added and removed, emails), segments count,
// tags by email and contacts erase by email, against real Redis and kfake.
func TestContactsImportCountErase(t *testing.T) {
	_, prefix := testenv.Redis(t)
	brokers, topics := testenv.Kafka(t, 1)
	global := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix,
		"--kafka-brokers", strings.Join(brokers, ","), "--topic-prefix", strings.TrimSuffix(topics.Events, "events")}
	cmd := func(args ...string) (int, string, string) {
		return run(append(append([]string{}, global...), args...)...)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "crm.csv")
	csv := "Handphone,E-Mail,Nama,Labels,Consent,Internal\n" +
		"+66 81 700 1001,Ann@Example.com,Ann,old;vip,yes,1\n" +
		"0817001002,,Bob,old,no,2\n" +
		",cat@example.com,Cat,,,3\n" +
		"12,,Bad,,,4\n"
	if err := os.WriteFile(file, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cmd("--output", "json", "contacts", "import", file, "--default-region", "TH",
		"--column", "Handphone=phone", "--column", "Nama=name", "--column", "Internal=-", "--tag", "new", "--remove-tag", "old")
	var rep segments.ImportReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("contacts import: exit %d\n%s%s", code, out, errOut)
	}
	if rep.Created != 3 || rep.Rejected != 1 || rep.Rejects[0].Line != 5 || rep.Rejects[0].Reason != "invalid phone" {
		t.Fatalf("report %+v", rep)
	}
	count := func(expr string) string {
		t.Helper()
		code, out, errOut := cmd("segments", "count", expr)
		if code != 0 {
			t.Fatalf("segments count %q: exit %d\n%s%s", expr, code, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	if n := count("new and not old"); n != "3" {
		t.Fatalf("new and not old = %s", n)
	}
	if n := count("vip and country:TH"); n != "1" {
		t.Fatalf("vip and country:TH = %s", n)
	}
	code, out, _ = cmd("--output", "json", "segments", "count", "new")
	if code != 0 || !strings.Contains(out, `"contacts": 3`) {
		t.Fatalf("segments count --output json: %d %s", code, out)
	}
	if code, out, errOut := cmd("tags", "add", "gold", "--email", "CAT@example.com", "--phone", "+66817001002", "--email", "nobody@example.com"); code != 0 ||
		!strings.Contains(out, "2 contacts matched, 2 changed") || !strings.Contains(out, `no such contact "nobody@example.com"`) {
		t.Fatalf("tags add --email: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cmd("contacts", "erase", "ann@example.com"); code != 0 || !strings.Contains(out, "erased contact") {
		t.Fatalf("contacts erase: %d\n%s%s", code, out, errOut)
	}
	if n := count("new"); n != "2" {
		t.Fatalf("new after erasure = %s", n)
	}
	if code, _, errOut := cmd("contacts", "erase", "ann@example.com"); code != 2 || !strings.Contains(errOut, "not found") {
		t.Fatalf("erasing twice: %d %s", code, errOut)
	}
	for _, bad := range [][]string{
		{"contacts", "import", file, "--column", "Handphone"},
		{"contacts", "import", file, "--column", "=phone"},
		{"tags", "add", "gold", "--email", "a@example.com", "--segment", "vip"},
	} {
		if code, out, errOut := cmd(bad...); code != 2 {
			t.Errorf("herald %s: exit %d, want 2\n%s%s", strings.Join(bad, " "), code, out, errOut)
		}
	}
}
