package cli

import "testing"

// The cluster layout's flags: only with --redis-cluster, and within bounds.
func TestBenchE2EClusterFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--serves", "2"},
		{"--workers", "4"},
		{"--redis-cluster", "--redis-nodes", "0"},
		{"--redis-cluster", "--sinks", "0"},
		{"--redis-cluster", "--workers", "17"},
	} {
		if code, _, errOut := run(append([]string{"bench", "e2e", "--contacts", "10"}, args...)...); code != 2 {
			t.Errorf("bench e2e %v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
}
