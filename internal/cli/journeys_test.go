package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad definition is refused before any server is asked, with the file and the line.
func TestJourneysValidateNamesTheLine(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.yaml")
	src := "id: j\nsenders: [s]\nentry: read\nsteps:\n  - id: a\n    send: t\n    next: b\n  - id: b\n    tag: x\n    next: a\n"
	if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run("journeys", "validate", f)
	if code != 2 || !strings.Contains(stderr, f+":5:") || !strings.Contains(stderr, "cycle without a wait") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = run("events", "send", "--phone", "+66810000001", "order_placed", "no-equals-sign")
	if code != 2 || !strings.Contains(stderr, "KEY=VALUE") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
