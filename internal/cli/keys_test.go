package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/testenv"
)

// keys create prints the secret once; list never does; revoke by name or id.
func TestKeysCommands(t *testing.T) {
	_, prefix := testenv.Redis(t)
	g := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix}
	cmd := func(args ...string) (int, string, string) { return run(append(append([]string{}, g...), args...)...) }

	code, out, errOut := cmd("keys", "create", "--role", "marketer", "--name", "crm", "--can-launch", "-o", "json")
	var k apikeys.Created
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil || !strings.HasPrefix(k.Secret, "hk_"+k.ID+"_") || !k.Can(apikeys.CampaignsLaunch) {
		t.Fatalf("keys create: exit %d %s%s", code, out, errOut)
	}
	code, out, _ = cmd("keys", "create", "--role", "auditor", "--name", "compliance")
	if code != 0 || !strings.Contains(out, "shown only this once") || !strings.Contains(out, "hk_") {
		t.Fatalf("keys create (table): exit %d %s", code, out)
	}
	for _, bad := range [][]string{
		{"--role", "analyst", "--name", "x", "--can-launch"}, // analysts cannot launch
		{"--role", "owner", "--name", "x"},
		{"--role", "admin", "--name", "crm"}, // taken
		{"--role", "admin", "--name", "has space"},
	} {
		if code, _, errOut := cmd(append([]string{"keys", "create"}, bad...)...); code != 2 {
			t.Errorf("keys create %v: exit %d %s, want 2", bad, code, errOut)
		}
	}
	code, out, _ = cmd("keys", "list", "-o", "json")
	var list []apikeys.Key
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].Name != "crm" || list[1].Role != apikeys.Auditor {
		t.Fatalf("keys list: exit %d %s", code, out)
	}
	if strings.Contains(out, k.Secret[16:]) || strings.Contains(out, "secret") {
		t.Fatalf("keys list shows a secret: %s", out)
	}
	if code, out, _ := cmd("keys", "list", "-o", "csv"); code != 0 || !strings.HasPrefix(out, "ID,NAME,ROLE,PERMISSIONS") || strings.Count(out, "\n") != 3 {
		t.Fatalf("keys list -o csv: exit %d %s", code, out)
	}
	if code, out, errOut := cmd("keys", "revoke", "crm"); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("keys revoke crm: exit %d %s%s", code, out, errOut)
	}
	if code, _, _ := cmd("keys", "revoke", "crm"); code != 2 {
		t.Fatalf("revoking a revoked name: exit %d, want 2 (the name is free now)", code)
	}
	if code, out, _ := cmd("keys", "revoke", k.ID, "-o", "json"); code != 0 || !strings.Contains(out, `"revoked_at"`) {
		t.Fatalf("revoke by id again: exit %d %s", code, out)
	}
	// The name is free again.
	if code, _, errOut := cmd("keys", "create", "--role", "marketer", "--name", "crm"); code != 0 {
		t.Fatalf("re-create crm: %s", errOut)
	}
}
