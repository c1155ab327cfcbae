package cli

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

// herald schedules: create (flags named in refusals), list in every format, show, pause,
// resume, runs and delete, against the real Redis.
func TestSchedulesCommands(t *testing.T) {
	_, prefix := testenv.Redis(t)
	g := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix}
	cmd := func(args ...string) (int, string, string) { return run(append(append([]string{}, g...), args...)...) }
	sh := func(args ...string) string {
		t.Helper()
		code, out, errOut := cmd(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	sh("templates", "add", writeFile(t, "promo.yaml", cliTemplate))
	sh("senders", "add", "--phone-number-id", "1065", "--token", "t", "--rate", "40")
	base := []string{"schedules", "create", "--segment", "vip", "--template", "promo", "--sender", "1065"}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cron", "0 25 * * *", "--zone", "UTC"}, "--cron"},
		{[]string{"--cron", "0 10 * * *", "--zone", "Mars/Base"}, "--zone"},
		{[]string{"--cron", "0 10 * * *"}, "--zone"},
		{[]string{"--local-time", "25:00"}, "--local-time"},
		{[]string{"--local-time", "10:00", "--days", "funday"}, "--days"},
		{[]string{"--local-time", "10:00", "--exclude-reached-within", "7x"}, "--exclude-reached-within"},
		{[]string{"--local-time", "10:00", "--until", "someday"}, "--until"},
		{[]string{"--local-time", "10:00", "--id", "Bad Id"}, "--id"},
		{[]string{}, "--cron"},
		{[]string{"--local-time", "10:00", "--quiet-hours", "nightly"}, "--quiet-hours"},
		{[]string{"--local-time", "22:00", "--quiet-hours", "21:00-08:00"}, "--local-time"},
	} {
		code, _, errOut := cmd(append(append([]string{}, base...), tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", tc.args, code, errOut, tc.want)
		}
	}
	if code, _, errOut := cmd("schedules", "create", "--segment", "vip and (", "--template", "promo", "--sender", "1065", "--local-time", "10:00"); code != 2 || !strings.Contains(errOut, "--segment") {
		t.Errorf("bad segment: exit %d: %s", code, errOut)
	}

	out := sh(append(append([]string{}, base...), "--id", "weekly", "--cron", "0 10 * * mon", "--zone", "Europe/Berlin", "--max-runs", "5")...)
	if !strings.Contains(out, "schedule weekly created (active); first run") {
		t.Fatalf("create: %s", out)
	}
	out = sh(append(append([]string{}, base...), "--local-time", "10:00", "--days", "mon-fri", "--paused", "-o", "json")...)
	var created struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		LocalTime string `json:"local_time"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID != "s1" || created.State != "paused" || created.LocalTime != "10:00" {
		t.Fatalf("create -o json: %+v %v\n%s", created, err, out)
	}
	if out := sh("schedules", "list"); !strings.Contains(out, "0 10 * * mon Europe/Berlin") || !strings.Contains(out, "10:00 local mon-fri") {
		t.Fatalf("list: %s", out)
	}
	rows, err := csv.NewReader(strings.NewReader(sh("schedules", "list", "-o", "csv"))).ReadAll()
	if err != nil || len(rows) != 3 || rows[0][0] != "id" || rows[1][0] != "s1" || rows[2][3] != "active" {
		t.Fatalf("list -o csv: %v %v", rows, err)
	}
	if out := sh("schedules", "resume", "s1"); !strings.Contains(out, ": active") {
		t.Fatalf("resume: %s", out)
	}
	if out := sh("schedules", "pause", "weekly"); !strings.Contains(out, ": paused") || !strings.Contains(out, "max runs  5") {
		t.Fatalf("pause: %s", out)
	}
	if out := sh("schedules", "runs", "weekly", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("runs of a schedule that never ran: %s", out)
	}
	if out := sh("schedules", "delete", "weekly"); !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %s", out)
	}
	if code, _, errOut := cmd("schedules", "show", "weekly"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("show after delete: exit %d: %s", code, errOut)
	}
	if code, _, errOut := cmd("schedules", "pause"); code != 2 || !strings.Contains(errOut, "give one schedule ID") {
		t.Fatalf("pause without an id: exit %d: %s", code, errOut)
	}
}
