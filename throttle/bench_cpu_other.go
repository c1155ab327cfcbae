//go:build !unix

package throttle

import "time"

// processCPU is not measured on this platform: per-CPU figures read 0.
func processCPU() time.Duration { return 0 }
