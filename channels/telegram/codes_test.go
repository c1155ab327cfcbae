package telegram

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/throttle"
)

var update = flag.Bool("update", false, "rewrite docs/providers/telegram.md from the Codes table")

const referencePath = "../../docs/providers/telegram.md"

// TestProviderReference keeps docs/providers/telegram.md equal to the table the
// classifier reads (run with -update to rewrite it), and checks the table itself.
func TestProviderReference(t *testing.T) {
	type key struct {
		code int
		desc string
	}
	seen := map[key]bool{}
	used := map[string]bool{dispatcher.ActionTransport: true}
	fallback := map[int]bool{}
	for _, c := range Codes {
		k := key{c.Code, strings.ToLower(c.Description)}
		if seen[k] {
			t.Errorf("code %d %q is listed twice", c.Code, c.Description)
		}
		if fallback[c.Code] {
			t.Errorf("code %d %q comes after the code's fallback entry: it never matches", c.Code, c.Description)
		}
		if c.Description == "" {
			fallback[c.Code] = true
		}
		seen[k] = true
		used[c.Action] = true
		if c.Meaning == "" {
			t.Errorf("code %d %q has no meaning", c.Code, c.Description)
		}
		if !slices.Contains(dispatcher.Actions(), c.Action) {
			t.Errorf("code %d: action %q is not one the Reactor carries out", c.Code, c.Action)
		}
		if c.Signal.AboutSender() {
			t.Errorf("code %d: signal %s holds the whole bot; Telegram's errors are about a chat", c.Code, c.Signal)
		}
		desc := "Error: " + c.Description
		if got := ClassifyCode(c.Code, desc); got.Action != c.Action || got.Retryable != c.Retryable || got.Signal != c.Signal {
			t.Errorf("ClassifyCode(%d, %q) = %+v, table says %+v", c.Code, desc, got, c)
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
		t.Fatalf("%v (run go test ./channels/telegram -run TestProviderReference -update)", err)
	}
	if string(got) != want {
		t.Errorf("%s differs from the Codes table; run go test ./channels/telegram -run TestProviderReference -update and review the diff", referencePath)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		code   int
		desc   string
		action string
		signal throttle.Signal
	}{
		{429, "Too Many Requests: retry after 5", dispatcher.ActionBackoffRecipient, throttle.SignalBackoffRecipient},
		{403, "Forbidden: bot was blocked by the user", dispatcher.ActionOptOut, 0},
		{403, "Forbidden: user is deactivated", dispatcher.ActionOptOut, 0},
		{403, "Forbidden: something new", dispatcher.ActionUndeliverable, 0},
		{400, "Bad Request: chat not found", dispatcher.ActionUndeliverable, 0},
		{400, "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'", dispatcher.ActionPauseCampaign, 0},
		{400, "Bad Request: something new", dispatcher.ActionFailJob, 0},
		{401, "Unauthorized", dispatcher.ActionPauseAccount, 0},
		{503, "Service Unavailable", dispatcher.ActionTransport, 0},
		{418, "I'm a teapot", dispatcher.ActionFailJob, 0},
	} {
		if got := ClassifyCode(c.code, c.desc); got.Action != c.action || got.Signal != c.signal {
			t.Errorf("ClassifyCode(%d, %q) = %+v, want %s %s", c.code, c.desc, got, c.action, c.signal)
		}
	}
}

func renderReference() string {
	var b strings.Builder
	b.WriteString(`# Telegram (Bot API): errors and Herald's reactions

Generated from ` + "`channels/telegram/codes.go`" + ` (the table the classifier reads) by
` + "`go test ./channels/telegram -run TestProviderReference -update`" + `; a test fails when the two differ.

A refused call answers ` + "`{\"ok\":false,\"error_code\":N,\"description\":\"…\",\"parameters\":{\"retry_after\":S}}`" + `.
Telegram's error codes are HTTP statuses; the description says which error it is, so an entry
matches a code and a part of the description (case-insensitive), first match wins, and an entry
with no description is the code's fallback. Unlisted 5xx codes and errors with no answer are
retried as ` + "`transport`" + `; other unlisted codes fail the job. A 429's ` + "`retry_after`" + ` sets the wait.

Telegram reports nothing about a message after accepting it (no delivery or read receipts for
bots): a Telegram campaign's funnel is ` + "`sent`" + `, plus replies.

| code | description contains | meaning | retried | signal | action |
| --- | --- | --- | --- | --- | --- |
`)
	yn := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	for _, c := range Codes {
		d := "`" + c.Description + "`"
		if c.Description == "" {
			d = "*(any)*"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | `%s` |\n", c.Code, d, c.Meaning, yn(c.Retryable), c.Signal, c.Action)
	}
	b.WriteString("\n## What Herald does\n\n| action | reaction |\n| --- | --- |\n")
	for _, r := range reactions {
		fmt.Fprintf(&b, "| `%s` | %s |\n", r.action, r.reaction)
	}
	b.WriteString(`
## Limits

| limit | Telegram | Herald |
| --- | --- | --- |
| per bot | about 30 messages/s | the sender's ` + "`rate`" + ` (30 by default) in the governor |
| paid broadcast | up to 1,000 messages/s, billed above the free rate | sender setting ` + "`paid_broadcast=true`" + ` sends ` + "`allow_paid_broadcast`" + `; raise the sender's rate up to 1,000 |
| per chat | 1 message/s, short bursts tolerated, then 429 | the policy's pair interval (6 s by default) between two messages of one sender to one contact |
| per group | 20 messages/min | the same pair interval: at most 10/min to one group |
| text | 4,096 characters (caption 1,024) after entity parsing | checked before sending for plain text; Telegram's 400 "message is too long" fails the job |
`)
	return b.String()
}
