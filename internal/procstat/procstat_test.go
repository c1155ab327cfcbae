package procstat

import (
	"os"
	"testing"
	"time"
)

// ProcessCPU (from /proc) agrees with getrusage for this process, within the 10 ms
// ticks of /proc.
func TestProcessCPU(t *testing.T) {
	pid := os.Getpid()
	start, self := ProcessCPU(pid), CPU()
	for CPU()-self < 200*time.Millisecond { // spin until 200 ms of CPU are used
	}
	got := ProcessCPU(pid) - start
	if got < 150*time.Millisecond || got > 400*time.Millisecond {
		t.Fatalf("200 ms of CPU (getrusage) counted as %v in /proc", got)
	}
	if ProcessCPU(-1) != 0 {
		t.Fatal("no process: want 0")
	}
}
