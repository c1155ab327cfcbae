// Package procstat reads what benchmarks report about processes: CPU time used and
// peak memory.
package procstat

import (
	"os"
	"strconv"
	"strings"
	"time"
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

// ProcessCPU returns the CPU time (user + system) process pid has used so far, from
// /proc/PID/stat (clock ticks of 1/100 s, the fixed USER_HZ of that file); 0 where
// unknown.
func ProcessCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces and ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 { // state is f[0]; utime and stime are fields 14 and 15 of the line
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// MachineCPU returns the machine's CPU time so far over all its CPUs, busy (user, nice,
// system, irq, softirq, steal) and idle (idle, iowait), from the first line of
// /proc/stat (ticks of 1/100 s); zeros where unknown.
func MachineCPU() (busy, idle time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * 10 * time.Millisecond }
	// user nice system idle iowait irq softirq steal
	return tick(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]), tick(v[3] + v[4])
}
