package procstat

import (
	"os"
	"runtime"
	"testing"
)

func TestPeakRSSAndCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if mb := PeakRSSMB(os.Getpid()); mb <= 0 || mb > 64<<10 {
		t.Fatalf("peak RSS %v MB", mb)
	}
	if mb := PeakRSSMB(-1); mb != 0 {
		t.Fatalf("peak RSS of no process: %v", mb)
	}
	c0 := CPU()
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i ^ x
	}
	if CPU() <= c0 || x == 1 {
		t.Fatalf("CPU time did not grow: %v → %v", c0, CPU())
	}
}
