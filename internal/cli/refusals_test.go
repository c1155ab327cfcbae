package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

const cliTextTemplate = "name: thanks\nchannel: whatsapp\nlocale: en_US\nkind: text\nbody: \"Thanks, {{ name }}!\"\nvariables:\n  name: {type: string, default: \"\"}\n"

// campaigns create --fallback-template takes only an approved WhatsApp template, and the
// campaign keeps it; consent show says when a contact is suppressed as undeliverable.
func TestFallbackTemplateAndSuppressionShown(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	ids, err := segments.NewStore(rdb, prefix).Upsert(ctx, []segments.Contact{{Phone: "+66812345678", Name: "Ana", Tags: []string{"vip"}}})
	if err != nil {
		t.Fatal(err)
	}
	g := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix}
	cmd := func(args ...string) (int, string, string) { return run(append(append([]string{}, g...), args...)...) }
	for _, f := range []string{writeFile(t, "promo.yaml", cliTemplate), writeFile(t, "thanks.yaml", cliTextTemplate)} {
		if code, _, errOut := cmd("templates", "add", f); code != 0 {
			t.Fatalf("templates add %s: %s", f, errOut)
		}
	}
	if code, _, errOut := cmd("senders", "add", "--phone-number-id", "1065", "--token", "t", "--rate", "40"); code != 0 {
		t.Fatal(errOut)
	}
	create := []string{"campaigns", "create", "--segment", "vip", "--template", "thanks", "--sender", "1065"}
	code, _, errOut := cmd(append(create, "--fallback-template", "thanks")...)
	if code != 2 || !strings.Contains(errOut, `--fallback-template: "thanks" is a text template`) {
		t.Fatalf("a free-form fallback: exit %d, %s", code, errOut)
	}
	if code, _, errOut := cmd(append(create, "--fallback-template", "nope")...); code != 2 || !strings.Contains(errOut, `--fallback-template: "nope"`) {
		t.Fatalf("a missing fallback: exit %d, %s", code, errOut)
	}
	code, out, errOut := cmd(append(create, "--fallback-template", "promo", "-o", "json")...)
	var cp dispatcher.Campaign
	if code != 0 || json.Unmarshal([]byte(out), &cp) != nil || cp.FallbackTemplate != "promo" {
		t.Fatalf("create with a fallback: exit %d, %s%s", code, out, errOut)
	}

	// consent show: no suppression, then one in force, then one run out.
	showJSON := func() []app.ConsentRow {
		t.Helper()
		code, out, errOut := cmd("consent", "show", "+66812345678", "-o", "json")
		var rows []app.ConsentRow
		if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 {
			t.Fatalf("consent show: exit %d, %s%s", code, out, errOut)
		}
		return rows
	}
	if rows := showJSON(); rows[0].Suppression != nil {
		t.Fatalf("a suppression before any: %+v", rows[0])
	}
	p := throttle.NewPolicy(rdb, prefix, nil)
	until := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Millisecond)
	if err := p.Suppress(ctx, "whatsapp", ids, []throttle.Suppression{{Reason: throttle.ReasonUndeliverable, Until: until, Proof: "whatsapp error 131026 on message wamid.X"}}); err != nil {
		t.Fatal(err)
	}
	if rows := showJSON(); rows[0].Suppression == nil || rows[0].Suppression.Reason != "undeliverable" || !rows[0].Suppression.Until.Equal(until) {
		t.Fatalf("suppression not shown: %+v", rows[0])
	}
	if code, out, _ := cmd("consent", "show", "+66812345678"); code != 0 || !strings.Contains(out, "suppressed on whatsapp as undeliverable until") || !strings.Contains(out, "131026") {
		t.Fatalf("consent show table: %s", out)
	}
	if err := p.Suppress(ctx, "whatsapp", ids, []throttle.Suppression{{Reason: throttle.ReasonUndeliverable, At: time.Now().Add(-40 * 24 * time.Hour), Until: time.Now().Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if rows := showJSON(); rows[0].Suppression != nil {
		t.Fatalf("a suppression that ran out is shown: %+v", rows[0])
	}
}
