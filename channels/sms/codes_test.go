package sms

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/herald-dev/herald/dispatcher"
)

var update = flag.Bool("update", false, "rewrite docs/providers/sms.md from the Codes table")

const referencePath = "../../docs/providers/sms.md"

// knownActions are the actions the Reactor carries out (dispatcher/reactions.go).
var knownActions = map[string]bool{
	dispatcher.ActionNone: true, dispatcher.ActionRetry: true, dispatcher.ActionBackoffRecipient: true,
	dispatcher.ActionConvertToTemplate: true, dispatcher.ActionHoldMarketing: true, dispatcher.ActionOptOut: true,
	dispatcher.ActionUndeliverable: true, dispatcher.ActionDrop: true, dispatcher.ActionFailJob: true,
	dispatcher.ActionPauseCampaign: true, dispatcher.ActionPauseSender: true, dispatcher.ActionPauseAccount: true,
	dispatcher.ActionSkipCountry: true, dispatcher.ActionTransport: true,
}

// TestProviderReference keeps the repository's SMS provider reference equal to the
// table the classifier reads: a code added, removed or reclassified without the docs
// fails here (run with -update to rewrite them).
func TestProviderReference(t *testing.T) {
	seen := map[int]bool{}
	used := map[string]bool{dispatcher.ActionTransport: true}
	for _, c := range Codes {
		if seen[c.Code] {
			t.Errorf("code %d is listed twice", c.Code)
		}
		seen[c.Code] = true
		used[c.Action] = true
		if c.Meaning == "" {
			t.Errorf("code %d has no meaning", c.Code)
		}
		if !knownActions[c.Action] {
			t.Errorf("code %d: action %q is not a dispatcher.Action… constant", c.Code, c.Action)
		}
		if c.SlowSender && !c.Retryable {
			t.Errorf("code %d slows the sender but is not retried", c.Code)
		}
		if c.Retryable != (c.Action == dispatcher.ActionRetry) {
			t.Errorf("code %d: retryable %v with action %s", c.Code, c.Retryable, c.Action)
		}
		if got := ClassifyCode(c.Code); got.Action != c.Action || got.Retryable != c.Retryable || got.SlowSender != c.SlowSender {
			t.Errorf("ClassifyCode(%d) = %+v, table says %+v", c.Code, got, c)
		}
	}
	documented := map[string]bool{}
	for _, r := range reactions {
		documented[r.action] = true
		if !used[r.action] {
			t.Errorf("reaction for %s, which no code asks for", r.action)
		}
	}
	for a := range used {
		if !documented[a] {
			t.Errorf("action %s has no documented reaction", a)
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
		t.Fatalf("%v (run go test ./channels/sms -run TestProviderReference -update)", err)
	}
	if string(got) != want {
		t.Errorf("%s differs from the Codes table; run go test ./channels/sms -run TestProviderReference -update and review the diff", referencePath)
	}
}

func renderReference() string {
	var b strings.Builder
	b.WriteString(`# SMS (Twilio Messages API): error codes and Herald's reactions

Generated from ` + "`channels/sms/codes.go`" + ` (the table the classifier reads) by
` + "`go test ./channels/sms -run TestProviderReference -update`" + `; a test fails when the two differ.
A code arrives either in the error body of a refused send (` + "`{\"code\":21610,\"message\":…,\"more_info\":…,\"status\":400}`" + `)
or as the ` + "`ErrorCode`" + ` of a ` + "`failed`" + ` or ` + "`undelivered`" + ` status callback; both go through the same
classification and the same reaction (` + "`dispatcher.Reactor`" + `). Codes not listed fail the job; an unlisted
code on an HTTP 5xx answer, and errors with no code at all (network, timeouts, 5xx pages), are
retried as ` + "`transport`" + `. An HTTP 429 without a body is 20429. A Retry-After header, when Twilio
sends one, sets the wait. Meanings marked *(unverified)* could not be confirmed in Twilio's public
error dictionary.

| code | meaning | retried | slows the sender | action |
| --- | --- | --- | --- | --- |
`)
	yn := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	for _, c := range Codes {
		m := c.Meaning
		if c.Unverified {
			m += " *(unverified)*"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | `%s` |\n", c.Code, m, yn(c.Retryable), yn(c.SlowSender), c.Action)
	}
	b.WriteString("\n## What Herald does for each action\n\n| action | reaction |\n| --- | --- |\n")
	for _, r := range reactions {
		fmt.Fprintf(&b, "| `%s` | %s |\n", r.action, r.reaction)
	}
	b.WriteString(`
## Carrier keywords

An inbound message that is exactly one of these words (any case, surrounding whitespace ignored)
is a carrier keyword (` + "`sms.Keyword`" + `); Twilio enforces them itself, and a send to a number that
opted out is refused with 21610.

- opt-out: ` + strings.Join(OptOutKeywords, ", ") + `
- opt-in: ` + strings.Join(OptInKeywords, ", ") + `
`)
	return b.String()
}
