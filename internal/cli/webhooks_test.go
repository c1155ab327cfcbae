package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/webhooks"
)

// webhooks create prints the secret once; bad input exits 2 and stores nothing; list,
// deliveries, replay and delete, in every output format.
func TestWebhooksCommands(t *testing.T) {
	_, prefix := testenv.Redis(t)
	g := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix}
	cmd := func(args ...string) (int, string, string) { return run(append(append([]string{}, g...), args...)...) }

	for _, bad := range [][]string{
		{"--url", "ftp://x.example.com/", "--kinds", "sent"},
		{"--url", "https://x.example.com/", "--kinds", "sent,queued"},
		{"--url", "https://x.example.com/", "--kinds", ""},
		{"--url", "example.com/in", "--kinds", "sent"},
	} {
		if code, _, errOut := cmd(append([]string{"webhooks", "create"}, bad...)...); code != 2 {
			t.Errorf("webhooks create %v: exit %d %s, want 2", bad, code, errOut)
		}
	}
	if code, out, _ := cmd("webhooks", "list", "-o", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("refused subscriptions were stored: exit %d %s", code, out)
	}
	code, out, errOut := cmd("webhooks", "create", "--url", "https://crm.example.com/in", "--kinds", "delivered,read", "--campaigns", "7,8", "-o", "json")
	var sub webhooks.Created
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil || !strings.HasPrefix(sub.Secret, "whsec_") || len(sub.Campaigns) != 2 {
		t.Fatalf("webhooks create: exit %d %s%s", code, out, errOut)
	}
	code, out, _ = cmd("webhooks", "create", "--url", "http://localhost:9000/hook", "--kinds", "all")
	if code != 0 || !strings.Contains(out, "shown only this once") || !strings.Contains(out, "whsec_") || !strings.Contains(out, "opted_out") {
		t.Fatalf("webhooks create (table): exit %d %s", code, out)
	}
	code, out, _ = cmd("webhooks", "list", "-o", "json")
	var list []webhooks.Subscription
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].ID != sub.ID || strings.Contains(out, "whsec_") {
		t.Fatalf("webhooks list: exit %d %s", code, out)
	}
	if code, out, _ := cmd("webhooks", "list", "-o", "csv"); code != 0 || !strings.HasPrefix(out, "ID,URL,KINDS,CAMPAIGNS,ACTIVE,CREATED") || strings.Count(out, "\n") != 3 {
		t.Fatalf("webhooks list -o csv: exit %d %s", code, out)
	}
	if code, out, _ := cmd("webhooks", "deliveries", sub.ID, "-o", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("webhooks deliveries: exit %d %s", code, out)
	}
	if code, out, _ := cmd("webhooks", "deliveries", sub.ID); code != 0 || !strings.Contains(out, "NEXT ATTEMPT") {
		t.Fatalf("webhooks deliveries (table): exit %d %s", code, out)
	}
	if code, _, _ := cmd("webhooks", "deliveries", "wh_0000000000000000"); code != 2 {
		t.Fatalf("deliveries of an unknown subscription: exit %d, want 2", code)
	}
	if code, _, _ := cmd("webhooks", "replay", sub.ID); code != 2 {
		t.Fatalf("replay without --id or --from: exit %d, want 2", code)
	}
	if code, out, _ := cmd("webhooks", "replay", sub.ID, "--from", "2026-01-01T00:00:00Z", "-o", "json"); code != 0 || !strings.Contains(out, `"replayed": 0`) {
		t.Fatalf("webhooks replay: exit %d %s", code, out)
	}
	if code, _, errOut := cmd("webhooks", "delete", sub.ID); code != 0 {
		t.Fatalf("webhooks delete: exit %d %s", code, errOut)
	}
	if code, _, _ := cmd("webhooks", "delete", sub.ID); code != 2 {
		t.Fatalf("deleting twice: exit %d, want 2", code)
	}
}
