// Package procstat reads what benchmarks report about processes: CPU time used and
// peak memory.
package procstat

import (
	"os"
	"strconv"
	"strings"
)

// PeakRSSMB returns the peak resident set size of process pid in MB, from
// /proc/PID/status (VmHWM: the peak of the process's own address space, unlike
// ru_maxrss, which for an exec'd child also counts the parent's pages it had between
// fork and exec). 0 where unknown.
func PeakRSSMB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
