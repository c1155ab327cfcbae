//go:build !unix

package procstat

import "time"

// CPU is not measured on this platform: per-CPU figures read 0.
func CPU() time.Duration { return 0 }

// ExitedCPU is not measured on this platform.
func ExitedCPU(any) time.Duration { return 0 }
