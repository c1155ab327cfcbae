//go:build unix

package procstat

import (
	"syscall"
	"time"
)

// CPU is the CPU time (user + system) this process has used.
func CPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ExitedCPU is the CPU time an exited child used, from its wait status (0 if unknown).
func ExitedCPU(sysUsage any) time.Duration {
	ru, ok := sysUsage.(*syscall.Rusage)
	if !ok || ru == nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
