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

func TestMachineCPU(t *testing.T) {
	busy0, idle0 := MachineCPU()
	if busy0+idle0 == 0 {
		t.Skip("no /proc/stat")
	}
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) { // spin: the machine is busy for a while
	}
	busy1, idle1 := MachineCPU()
	if busy1 < busy0 || idle1 < idle0 {
		t.Fatalf("machine CPU went back: busy %v → %v, idle %v → %v", busy0, busy1, idle0, idle1)
	}
	if busy1 == busy0 {
		t.Fatalf("100 ms of spinning added no busy time (%v)", busy1)
	}
}
