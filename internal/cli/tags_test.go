package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
)

// tags add/remove/list and segments preview against a real Redis.
func TestTagsAndPreview(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	url := "redis://" + testenv.RedisAddr(t) + "/0"
	s := segments.NewStore(rdb, prefix)
	csv := "phone,name,tags\n+66 81 700 0001,Ann,vip\n+66 81 700 0002,Bob,vip;churned\n+66 81 700 0003,Cat,\n"
	if _, err := s.ImportCSV(context.Background(), strings.NewReader(csv), segments.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	base := []string{"--redis-url", url, "--redis-prefix", prefix}
	cmd := func(args ...string) (int, string, string) {
		return run(append(append([]string{}, base...), args...)...)
	}

	if code, out, errOut := cmd("tags", "add", "gold", "--segment", "vip and not churned"); code != 0 || !strings.Contains(out, "1 contacts matched, 1 changed") {
		t.Fatalf("tags add --segment: %d\n%s%s", code, out, errOut)
	}
	list := filepath.Join(t.TempDir(), "phones.txt")
	if err := os.WriteFile(list, []byte("phone\n0817000003\n0817000099\nnope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cmd("tags", "add", "gold", "--file", list, "--default-region", "TH")
	if code != 0 || !strings.Contains(out, "1 contacts matched, 1 changed") || !strings.Contains(out, "line 3: no such contact") || !strings.Contains(out, "line 4: invalid phone") {
		t.Fatalf("tags add --file: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cmd("tags", "remove", "vip", "--phone", "+66817000001"); code != 0 || !strings.Contains(out, "1 changed") {
		t.Fatalf("tags remove --phone: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = cmd("--output", "json", "tags", "list")
	var tags []segments.TagCount
	if code != 0 || json.Unmarshal([]byte(out), &tags) != nil {
		t.Fatalf("tags list: %d\n%s%s", code, out, errOut)
	}
	got := map[string]uint64{}
	for _, tc := range tags {
		got[tc.Name] = tc.Count
	}
	if got["gold"] != 2 || got["vip"] != 1 || got["churned"] != 1 {
		t.Fatalf("tags list = %v", tags)
	}
	code, out, errOut = cmd("segments", "preview", "gold or nosuchtag", "--limit", "5")
	if code != 0 || !strings.Contains(out, "2 contacts") || !strings.Contains(out, "Ann") || !strings.Contains(out, "Cat") || !strings.Contains(out, "warning: column") {
		t.Fatalf("segments preview: %d\n%s%s", code, out, errOut)
	}
	for _, bad := range [][]string{
		{"tags", "add", "gold"},
		{"tags", "add", "gold", "--phone", "+66817000001", "--segment", "vip"},
		{"tags", "add", "gold", "--segment", "vip and"},
		{"segments", "preview", "vip and"},
	} {
		if code, out, errOut := cmd(bad...); code != 2 {
			t.Errorf("herald %s: exit %d, want 2\n%s%s", strings.Join(bad, " "), code, out, errOut)
		}
	}
}

// tags compute against real ClickHouse and Redis.
func TestTagsCompute(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ch, db := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := segments.NewStore(rdb, prefix)
	if _, err := s.ImportCSV(ctx, strings.NewReader("phone,tags\n+66 81 710 0001,vip\n+66 81 710 0002,\n+66 81 710 0003,\n"), segments.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	// CREATE … AS SELECT: one statement that clickhouse-server 18.16 and current ones run alike.
	if err := ch.Exec(ctx, "CREATE TABLE scores ENGINE = Memory AS SELECT toUInt32(number) AS contact_id, "+
		"multiIf(number = 2, 0.9, number = 3, 0.3, 0.95) AS score FROM (SELECT number FROM system.numbers LIMIT 1000) WHERE number IN (2, 3, 999)"); err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	body := "rules:\n  - tag: vip\n    query: SELECT contact_id FROM scores WHERE score >= 0.8\n  - tag: tier_c\n    query: SELECT toUInt64(contact_id) FROM scores WHERE score < 0.5\n"
	if err := os.WriteFile(rules, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix, "--clickhouse-dsn", testenv.ClickHouseDSN(t, db)}
	code, out, errOut := run(append(args, "--output", "json", "tags", "compute", rules)...)
	var res []segments.RuleResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("tags compute: %d\n%s%s", code, out, errOut)
	}
	want := []segments.RuleResult{{Tag: "vip", Members: 1, Added: 1, Removed: 1}, {Tag: "tier_c", Members: 1, Added: 1}}
	if len(res) != 2 || res[0] != want[0] || res[1] != want[1] {
		t.Fatalf("results %+v, want %+v", res, want)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - tag: x\n    query: DROP TABLE scores\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run(append(args, "tags", "compute", bad)...); code != 2 {
		t.Fatalf("a DROP rule: exit %d\n%s%s", code, out, errOut)
	}
	twoCols := filepath.Join(t.TempDir(), "two.yaml")
	if err := os.WriteFile(twoCols, []byte("rules:\n  - tag: x\n    query: SELECT contact_id, score FROM scores\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run(append(args, "tags", "compute", twoCols)...); code != 1 || !strings.Contains(errOut, "one column") {
		t.Fatalf("two columns: exit %d\n%s%s", code, out, errOut)
	}
}
