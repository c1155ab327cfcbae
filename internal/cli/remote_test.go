package cli

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/api"
	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/testenv"
)

// The same commands give the same output run locally (Redis, ClickHouse, Kafka) and
// remotely (--api-url and --api-key against the API of the same stack): segments count,
// tags list/add, campaigns create/list/status/dry-run/pause/cancel, report funnel, and
// the same exit codes when refused.
func TestRemoteCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rig := newCLIRig(ctx, t)
	local, remote, comp, srvURL := rig.local, rig.remote, rig.comp, rig.apiURL

	var lo string
	cmd := func(args []string, rest ...string) (int, string, string) {
		return run(append(append([]string{}, args...), rest...)...)
	}
	same := func(rest ...string) string {
		t.Helper()
		lc, lo, le := cmd(local, rest...)
		rc, ro, re := cmd(remote, rest...)
		if lc != rc || lo != ro {
			t.Fatalf("herald %s:\nlocal exit %d\n%s%s\nremote exit %d\n%s%s", strings.Join(rest, " "), lc, lo, le, rc, ro, re)
		}
		return lo
	}

	csv := writeFile(t, "crm.csv", "phone,name,tags\n+66817001001,Ann,vip;customer\n+66817001002,Bob,customer\n+66817001003,Cat,customer\n")
	if code, out, errOut := cmd(local, "contacts", "import", csv); code != 0 {
		t.Fatalf("import: %d %s%s", code, out, errOut)
	}
	// An import: the same file's shape locally and through the API (an import job).
	for i, who := range []string{"local", "remote"} {
		args := local
		if who == "remote" {
			args = remote
		}
		f := writeFile(t, who+".csv", "phone,name,tags\n+6681800"+string(rune('0'+i))+"001,Dee,lead\n12,Bad,\n+6681800"+string(rune('0'+i))+"002,Eve,lead\n")
		code, out, errOut := cmd(args, "-o", "json", "contacts", "import", f, "--tag", "import-"+who)
		if code != 0 || !strings.Contains(out, `"created": 2`) || !strings.Contains(out, `"line": 3`) {
			t.Fatalf("%s import: %d %s%s", who, code, out, errOut)
		}
		if who == "local" {
			lo = out
		} else if out != lo {
			t.Fatalf("import:\nlocal %s\nremote %s", lo, out)
		}
	}
	if n, err := comp.Contacts.Count(ctx, "import-remote and lead"); err != nil || n != 2 {
		t.Fatalf("imported remotely: %d %v", n, err)
	}
	if code, _, errOut := cmd(remote, "contacts", "import", writeFile(t, "x.csv", "phone\n+66818009001\n"), "--column", "phone=phone"); code != 2 || !strings.Contains(errOut, "--column") {
		t.Fatalf("--column remotely: exit %d %s", code, errOut)
	}
	// Consent: recorded remotely (the API names its key as the actor), then the same
	// change is no change both ways; a bad phone is refused both ways.
	rc0, ro0, re0 := cmd(remote, "consent", "grant", "+66817001001", "--source", "web_form")
	if rc0 != 0 || !strings.HasPrefix(ro0, "recorded grant for contact 1 (whatsapp/marketing): record cr_") {
		t.Fatalf("consent grant remotely: %d %s%s", rc0, ro0, re0)
	}
	same("consent", "grant", "+66817001001")
	same("consent", "revoke", "12")
	if out := same("segments", "count", "customer and not vip"); strings.TrimSpace(out) != "2" {
		t.Fatalf("segments count: %q", out)
	}
	same("-o", "json", "segments", "count", "customer")
	same("segments", "count", "customer and (")
	same("-o", "json", "tags", "list")

	// A change made remotely, then the same change locally on another tag.
	same("tags", "add", "gold", "--segment", "vip", "--phone", "+66817001002") // refused: two ways at once
	rc, ro, re := cmd(remote, "tags", "add", "gold", "--segment", "vip")
	lc, lo, le := cmd(local, "tags", "add", "silver", "--segment", "vip")
	if rc != 0 || lc != 0 || strings.ReplaceAll(lo, "silver", "gold") != ro || !strings.Contains(ro, "1 changed") {
		t.Fatalf("tags add:\nremote %d %s%s\nlocal %d %s%s", rc, ro, re, lc, lo, le)
	}
	list := writeFile(t, "phones.txt", "phone\n+66817001003\n+66819999999\n")
	rc, ro, _ = cmd(remote, "tags", "add", "bronze", "--file", list)
	lc, lo, _ = cmd(local, "tags", "add", "copper", "--file", list)
	if rc != 0 || strings.ReplaceAll(lo, "copper", "bronze") != ro || !strings.Contains(ro, "line 3: no such contact") {
		t.Fatalf("tags add --file:\nremote %d %s\nlocal %d %s", rc, ro, lc, lo)
	}
	same("tags", "list")

	// Campaigns: one created locally, one remotely; everything read both ways.
	if code, out, errOut := cmd(local, "senders", "add", "--phone-number-id", "100000000000001", "--token", "t", "--rate", "20"); code != 0 {
		t.Fatalf("senders add: %s%s", out, errOut)
	}
	if code, out, errOut := cmd(local, "templates", "add", writeFile(t, "promo.yaml", cliTemplate)); code != 0 {
		t.Fatalf("templates add: %s%s", out, errOut)
	}
	create := []string{"campaigns", "create", "--segment", "customer", "--template", "promo", "--sender", "100000000000001", "--name", "spring"}
	_, lo, _ = cmd(local, create...)
	_, ro, _ = cmd(remote, create...)
	if lo != strings.ReplaceAll(ro, "2", "1") || !strings.Contains(ro, "campaign 2 created") {
		t.Fatalf("campaigns create:\nlocal %s\nremote %s", lo, ro)
	}
	same("campaigns", "create", "--segment", "customer and (", "--template", "promo", "--sender", "100000000000001")
	same("campaigns", "create", "--segment", "customer", "--template", "nope", "--sender", "100000000000001")
	same("-o", "json", "campaigns", "list")
	same("campaigns", "list")
	same("-o", "json", "campaigns", "status", "2")
	same("campaigns", "status", "1")
	same("campaigns", "status", "77")
	same("-o", "json", "campaigns", "dry-run", "2")
	same("campaigns", "dry-run", "1")
	same("campaigns", "pause", "1") // a draft: refused, exit 1 both ways
	same("-o", "json", "report", "funnel", "--campaign", "1")
	same("report", "funnel", "--campaign", "1", "--by", "sender")

	rc, ro, re = cmd(remote, "-o", "json", "campaigns", "launch", "1")
	if rc != 0 || !strings.Contains(ro, `"queued": 3`) {
		t.Fatalf("launch remotely: %d %s%s", rc, ro, re)
	}
	same("-o", "json", "campaigns", "status", "1")
	rc, ro, re = cmd(remote, "-o", "json", "campaigns", "cancel", "2")
	if rc != 0 || !strings.Contains(ro, `"state": "cancelled"`) {
		t.Fatalf("cancel remotely: %d %s%s", rc, ro, re)
	}
	same("-o", "json", "campaigns", "status", "2")

	// A contact and its consent, found by any identity or #id; unknown ones are usage
	// errors both ways.
	same("contacts", "show", "+66817001001")
	same("-o", "json", "contacts", "show", "#2")
	same("contacts", "show", "+66810000000")
	same("consent", "show", "+66817001001")
	same("-o", "json", "consent", "show", "+66817001002", "--purpose", "marketing")
	same("consent", "show", "+66817001001", "--channel", "pigeon")
	// Erasure: one contact erased locally, another remotely; each leaves no trace of its
	// phone, and erasing it again is an unknown contact both ways.
	lc, lo, le = cmd(local, "contacts", "erase", "+66817001002")
	rc, ro, re = cmd(remote, "contacts", "erase", "+66817001003")
	// Contact 3 has more tags (customer, bronze, copper) than contact 2 (customer).
	if lc != 0 || rc != 0 || lo != "erased contact 2 (1 tags); the consent ledger has its tombstone\n" ||
		ro != "erased contact 3 (3 tags); the consent ledger has its tombstone\n" {
		t.Fatalf("contacts erase:\nlocal %d %s%s\nremote %d %s%s", lc, lo, le, rc, ro, re)
	}
	for _, phone := range []string{"+66817001002", "+66817001003"} {
		lc, _, _ = cmd(local, "contacts", "show", phone)
		rc, _, _ = cmd(remote, "contacts", "erase", phone)
		if lc != 2 || rc != 2 {
			t.Fatalf("%s after its erasure: show exit %d, erase remotely exit %d (want 2, 2)", phone, lc, rc)
		}
	}

	// A wrong key: exit 1, and the key is not printed.
	rc, ro, re = cmd(append(append([]string{}, local...), "--api-url", srvURL, "--api-key", "hk_000000000000_"+strings.Repeat("A", 43)), "campaigns", "list")
	if rc != 1 || strings.Contains(ro+re, strings.Repeat("A", 43)) || !strings.Contains(re, "API key") {
		t.Fatalf("wrong key: %d %s%s", rc, ro, re)
	}
}

// cliRig is one stack to run the CLI against both ways: local holds the flags of its
// Redis, Kafka and ClickHouse; remote the same plus --api-url and an admin --api-key for
// the API served on that stack.
type cliRig struct {
	local, remote []string
	comp          *app.Components
	apiURL        string
}

func newCLIRig(ctx context.Context, t *testing.T) cliRig {
	t.Helper()
	_, prefix := testenv.Redis(t)
	brokers, topics := testenv.Kafka(t, 1)
	_, db := testenv.ClickHouse(t)
	redisURL := "redis://" + testenv.RedisAddr(t) + "/0"
	local := []string{"--redis-url", redisURL, "--redis-prefix", prefix, "--kafka-brokers", strings.Join(brokers, ","),
		"--topic-prefix", strings.TrimSuffix(topics.Events, "events"), "--clickhouse-dsn", testenv.ClickHouseDSN(t, db)}
	d := app.NewDeps(app.Config{KafkaBrokers: brokers, TopicPrefix: strings.TrimSuffix(topics.Events, "events"), RedisURL: redisURL,
		Prefix: prefix, ClickHouseDSN: testenv.ClickHouseDSN(t, db), Partitions: 1, APIRate: 1000, APIBurst: 1000})
	t.Cleanup(func() { d.Close() })
	if _, err := app.Migrate(ctx, d); err != nil {
		t.Fatal(err)
	}
	h, err := api.Handler(d)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	key, err := comp.Keys.Create(ctx, apikeys.Spec{Name: "cli", Role: apikeys.Admin})
	if err != nil {
		t.Fatal(err)
	}
	remote := append(append([]string{}, local...), "--api-url", srv.URL, "--api-key", key.Secret)
	return cliRig{local: local, remote: remote, comp: comp, apiURL: srv.URL}
}
