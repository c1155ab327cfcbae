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
}
