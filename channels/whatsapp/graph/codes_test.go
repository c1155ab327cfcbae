package graph

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/providers/whatsapp.md from the Codes table")

const referencePath = "../../../docs/providers/whatsapp.md"

// TestProviderReference keeps the repository's provider reference equal to the table the
// classifier reads: a code added, removed or reclassified without the docs fails here
// (run with -update to rewrite them).
func TestProviderReference(t *testing.T) {
	seen := map[int]bool{}
	for _, c := range Codes {
		if seen[c.Code] {
			t.Errorf("code %d is listed twice", c.Code)
		}
		seen[c.Code] = true
		if c.Meaning == "" {
			t.Errorf("code %d has no meaning", c.Code)
		}
		if got := ClassifyCode(c.Code); got.Action != c.Action || got.Retryable != c.Retryable || got.SlowSender != c.SlowSender || got.Signal != c.Signal {
			t.Errorf("ClassifyCode(%d) = %+v, table says %+v", c.Code, got, c)
		}
	}
	for _, a := range Actions() {
		if a.Reaction() == "" || a.String() == "unknown" {
			t.Errorf("action %d (%s) has no documented reaction", a, a)
		}
	}
	want := renderReference()
	if *update {
		if err := os.WriteFile(referencePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v (run go test ./channels/whatsapp/graph -run TestProviderReference -update)", err)
	}
	if string(got) != want {
		t.Errorf("%s differs from the Codes table; run go test ./channels/whatsapp/graph -run TestProviderReference -update and review the diff", referencePath)
	}
}

func renderReference() string {
	var b strings.Builder
	b.WriteString(`# WhatsApp Cloud API: error codes and Herald's reactions

Generated from ` + "`channels/whatsapp/graph/codes.go`" + ` (the table the classifier reads) by
` + "`go test ./channels/whatsapp/graph -run TestProviderReference -update`" + `; a test fails when the two differ.
A code arrives either as the error of a send request or in the ` + "`errors`" + ` of a ` + "`failed`" + ` status
webhook; both go through the same classification and the same reaction (` + "`dispatcher.Reactor`" + `);
the pace signal goes to the throttle (the sender's governor, or the recipient's rules).
Codes not listed fail the job, except 200–299 (permission errors), which pause like 190.

| code | meaning | retried | action | pace signal |
| --- | --- | --- | --- | --- |
`)
	for _, c := range Codes {
		retry := "no"
		if c.Retryable {
			retry = "yes"
		}
		sig := ""
		if c.Signal != 0 {
			sig = "`" + c.Signal.String() + "`"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | `%s` | %s |\n", c.Code, c.Meaning, retry, c.Action, sig)
	}
	b.WriteString("\n## What Herald does for each action\n\n| action | reaction |\n| --- | --- |\n")
	for _, a := range Actions() {
		fmt.Fprintf(&b, "| `%s` | %s |\n", a, a.Reaction())
	}
	return b.String()
}
