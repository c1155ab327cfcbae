package cli

import (
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

// senders show/hold/resume drive the sender's governor in the real Redis.
func TestSendersHoldAndResume(t *testing.T) {
	_, prefix := testenv.Redis(t)
	g := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix}
	sh := func(args ...string) string {
		t.Helper()
		code, out, errOut := run(append(append([]string{}, g...), args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	sh("senders", "add", "--phone-number-id", "1065", "--token", "t", "--rate", "40", "--per-minute", "1000", "--tier", "2000", "--warm-up", "50/30s")
	if out := sh("senders", "show", "1065"); !strings.Contains(out, "40 msg/s, at most 1000 a minute, tier 2000") || !strings.Contains(out, "warm-up 50/30s") || strings.Contains(out, "held until") {
		t.Fatalf("show: %s", out)
	}
	if out := sh("senders", "hold", "1065", "--for", "2h"); !strings.Contains(out, "held until") {
		t.Fatalf("hold: %s", out)
	}
	if out := sh("senders", "resume", "1065"); strings.Contains(out, "held until") {
		t.Fatalf("resume: %s", out)
	}
	if code, _, errOut := run(append(append([]string{}, g...), "senders", "add", "--phone-number-id", "1066", "--token", "t", "--warm-up", "fifty")...); code != 2 || !strings.Contains(errOut, "--warm-up") {
		t.Fatalf("bad --warm-up: exit %d: %s", code, errOut)
	}
	// An email sender with its provider's hourly quota; a per-minute cap with it is refused.
	sh("senders", "add", "--id", "news", "--channel", "email", "--rate", "20", "--per-hour", "500",
		"--setting", "smtp_addr=127.0.0.1:2525", "--setting", "from=news@shop.example")
	if out := sh("senders", "show", "news"); !strings.Contains(out, "20 msg/s, at most 500 an hour") {
		t.Fatalf("show: %s", out)
	}
	if out := sh("senders", "show", "news", "-o", "json"); !strings.Contains(out, `"per_hour": 500`) && !strings.Contains(out, `"per_hour":500`) {
		t.Fatalf("show -o json: %s", out)
	}
	if code, _, errOut := run(append(append([]string{}, g...), "senders", "add", "--id", "news2", "--channel", "email", "--rate", "20",
		"--per-hour", "500", "--per-minute", "10", "--setting", "smtp_addr=127.0.0.1:2525", "--setting", "from=news@shop.example")...); code == 0 || !strings.Contains(errOut, "not both") {
		t.Fatalf("--per-minute with --per-hour: exit %d: %s", code, errOut)
	}
}
