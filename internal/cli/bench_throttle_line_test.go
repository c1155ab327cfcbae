package cli

import (
	"encoding/json"
	"testing"
)

// `bench throttle --channel line`, briefly: two worker processes push through the LINE
// adapter to the LINE sandbox, whose push endpoint allows --rate requests per second.
// Only what holds on any machine is asserted: sends accepted, start times within the cap
// (one spill allowed, as for WhatsApp), no 429 from the sandbox.
func TestBenchThrottleLINE(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and worker processes")
	}
	workerProcessesFromTestBinary(t)
	code, out, errOut := run("bench", "throttle", "--channel", "line", "--scenario", "governor", "--processes", "2", "--rate", "50", "--duration", "2s", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var r ThrottleBenchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	g := r.Governor
	if g == nil || g.Accepted == 0 || g.Started < g.Accepted || g.AtStart.Max1s > g.Cap1s+1 || g.Throughput429 != 0 {
		t.Fatalf("governor scenario on LINE: %+v", g)
	}
	if code, _, _ := run("bench", "throttle", "--channel", "telegraph"); code != 2 {
		t.Fatalf("--channel telegraph: exit %d, want 2", code)
	}
}
