package email

import (
	"errors"
	"flag"
	"fmt"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
)

var update = flag.Bool("update", false, "rewrite docs/providers/email.md from the Codes table")

const referencePath = "../../docs/providers/email.md"

// TestProviderReference keeps the repository's provider reference equal to the table the
// classifier reads: a reply added, removed or reclassified without the docs fails here
// (run with -update to rewrite them).
func TestProviderReference(t *testing.T) {
	seen := map[codeKey]bool{}
	for _, c := range Codes {
		k := codeKey{c.Reply, c.Enhanced}
		if seen[k] {
			t.Errorf("reply %d %s is listed twice", c.Reply, c.Enhanced)
		}
		seen[k] = true
		if c.Meaning == "" {
			t.Errorf("reply %d %s has no meaning", c.Reply, c.Enhanced)
		}
		if c.Enhanced != "" && parseEnhanced(c.Enhanced) != c.Enhanced {
			t.Errorf("reply %d: enhanced code %q is malformed", c.Reply, c.Enhanced)
		}
		if c.Reply != 0 && c.Enhanced != "" && c.Reply/100 != int(c.Enhanced[0]-'0') {
			t.Errorf("reply %d %s: classes differ", c.Reply, c.Enhanced)
		}
		if got := ClassifyReply(c.Reply, c.Enhanced); got.Action != c.Action || got.Retryable != c.Retryable || got.RetryAfter != c.RetryAfter {
			t.Errorf("ClassifyReply(%d, %q) = %+v, table says %+v", c.Reply, c.Enhanced, got, c)
		}
		if !slices.Contains(Actions(), c.Action) {
			t.Errorf("reply %d %s: action %q is not in Actions()", c.Reply, c.Enhanced, c.Action)
		}
		if c.Retryable != (c.Action == dispatcher.ActionRetry) {
			t.Errorf("reply %d %s: retryable %v with action %s", c.Reply, c.Enhanced, c.Retryable, c.Action)
		}
	}
	for _, a := range Actions() {
		if Reaction(a) == "" {
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
		t.Fatalf("%v (run go test ./channels/email -run TestProviderReference -update)", err)
	}
	if string(got) != want {
		t.Errorf("%s differs from the Codes table; run go test ./channels/email -run TestProviderReference -update and review the diff", referencePath)
	}
}

func renderReference() string {
	var b strings.Builder
	b.WriteString(`# Email (SMTP): replies, bounces, complaints and Herald's reactions

Generated from ` + "`channels/email/codes.go`" + ` (the table the classifier reads) by
` + "`go test ./channels/email -run TestProviderReference -update`" + `; a test fails when the two differ.
A reply arrives either as the SMTP server's answer to a send (AUTH, MAIL, RCPT or the end of
DATA) or later in a bounce (an RFC 3464 DSN: its ` + "`Status`" + ` and ` + "`Diagnostic-Code`" + `); both go
through the same table and the same reaction (` + "`dispatcher.Reactor`" + `).

A reply is looked up by its exact (reply, enhanced code) pair first, then by its enhanced code
alone (rows whose reply is "any"), then by its basic code alone (rows whose enhanced code is
"any"). Anything else retries when it is a 4xx and fails the job when it is a 5xx. Connection
errors and timeouts are ` + "`transport`" + ` (code 0, retried); a sender configuration the client refuses
(STARTTLS required but not offered, an untrusted certificate, an AUTH mechanism the server
lacks) pauses like 530. In a bounce, a reply the table would retry becomes ` + "`none`" + `: the
receiving MTA already gave up, so there is nothing left to retry.

| reply | enhanced | meaning | retried | wait | action |
| --- | --- | --- | --- | --- | --- |
`)
	for _, c := range Codes {
		reply, enh, retry, wait := "any", "any", "no", ""
		if c.Reply != 0 {
			reply = fmt.Sprint(c.Reply)
		}
		if c.Enhanced != "" {
			enh = c.Enhanced
		}
		if c.Retryable {
			retry = "yes"
		}
		if c.RetryAfter > 0 {
			wait = c.RetryAfter.String()
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | `%s` |\n", reply, enh, c.Meaning, retry, wait, c.Action)
	}
	b.WriteString(`
## Bounces and complaints

| report | Herald's report |
| --- | --- |
| DSN, ` + "`Action: failed`" + ` | ` + "`failed`" + ` with the Diagnostic-Code's reply (else 550 / 450 from the Status class) and the table's action |
| DSN, ` + "`Action: delivered`" + ` (or relayed, expanded) | ` + "`delivered`" + `, action ` + "`none`" + ` |
| DSN, ` + "`Action: delayed`" + ` | nothing: the receiving MTA still tries |
| ARF, ` + "`Feedback-Type: abuse`" + ` or ` + "`fraud`" + ` | ` + "`opted_out`" + `, action ` + "`opt_out`" + ` |
| ARF, any other feedback type (not-spam, auth-failure, virus, other) | nothing |

The (campaign, contact) comes from the original message's Message-ID quoted in the report,
` + "`<herald.{campaign}.{contact}[.{variant}].{random}@{domain}>`" + `, whose random part is a nonce and an
HMAC-SHA256 of the rest under a key Herald keeps in Redis: a report quoting an id that does
not verify (forged for a guessed contact, or made by another Herald) is ignored, since anyone
can mail a bounce or a complaint.

## What Herald does for each action

| action | reaction |
| --- | --- |
`)
	for _, a := range Actions() {
		fmt.Fprintf(&b, "| `%s` | %s |\n", a, Reaction(a))
	}
	return b.String()
}

// TestClassifyReply holds the classifications the channel's users rely on.
func TestClassifyReply(t *testing.T) {
	for _, tc := range []struct {
		reply     int
		enhanced  string
		action    string
		retryable bool
	}{
		{421, "4.7.0", dispatcher.ActionRetry, true},
		{450, "", dispatcher.ActionRetry, true},
		{451, "4.7.1", dispatcher.ActionRetry, true},
		{451, "4.3.0", dispatcher.ActionRetry, true},
		{452, "4.2.2", dispatcher.ActionRetry, true},
		{452, "", dispatcher.ActionRetry, true},
		{550, "5.1.1", dispatcher.ActionUndeliverable, false},
		{550, "5.1.10", dispatcher.ActionUndeliverable, false},
		{552, "5.2.2", dispatcher.ActionUndeliverable, false},
		{554, "5.7.1", dispatcher.ActionDrop, false},
		{550, "5.7.1", dispatcher.ActionDrop, false},
		{535, "5.7.8", dispatcher.ActionPauseAccount, false},
		{535, "", dispatcher.ActionPauseAccount, false},
		{530, "5.7.0", dispatcher.ActionPauseAccount, false},
		{552, "5.3.4", dispatcher.ActionFailJob, false},
		{554, "5.7.0", dispatcher.ActionFailJob, false}, // not 530: a content filter, not the account
		{499, "", dispatcher.ActionRetry, true},         // unknown 4xx
		{554, "5.6.0", dispatcher.ActionFailJob, false}, // unknown 5xx
		{0, "4.4.7", dispatcher.ActionRetry, true},      // a status alone
	} {
		got := ClassifyReply(tc.reply, tc.enhanced)
		if got.Action != tc.action || got.Retryable != tc.retryable {
			t.Errorf("ClassifyReply(%d, %q) = %s retryable %v, want %s retryable %v", tc.reply, tc.enhanced, got.Action, got.Retryable, tc.action, tc.retryable)
		}
	}
}

// TestClassifyErrors maps the errors the SMTP client returns to refusals.
func TestClassifyErrors(t *testing.T) {
	greylisted := replyError("RCPT", &textproto.Error{Code: 451, Msg: "4.7.1 <a@b.example>: Recipient address rejected: Greylisted"})
	se := Classify(greylisted)
	if se.Code != 451 || se.Action != dispatcher.ActionRetry || !se.Retryable || se.RetryAfter != 5*time.Minute {
		t.Errorf("greylisted: %+v", se)
	}
	// A multi-line Gmail reply: the enhanced code starts each line.
	gmail := replyError("RCPT", &textproto.Error{Code: 550, Msg: "5.1.1 The email account that you tried to reach does not exist.\n5.1.1 https://support.google.com/mail/?p=NoSuchUser"})
	if se := Classify(gmail); se.Code != 550 || se.Action != dispatcher.ActionUndeliverable {
		t.Errorf("gmail 550: %+v", se)
	}
	// An enhanced code of the wrong class is ignored.
	if re := replyError("MAIL", &textproto.Error{Code: 550, Msg: "4.2.2 odd"}).(*ReplyError); re.Enhanced != "" {
		t.Errorf("mismatched enhanced code kept: %+v", re)
	}
	if se := Classify(&ConfigError{Err: errors.New("no STARTTLS")}); se.Action != dispatcher.ActionPauseAccount || se.Retryable {
		t.Errorf("config error: %+v", se)
	}
	if se := Classify(errors.New("EOF")); se.Action != dispatcher.ActionTransport || !se.Retryable || se.Code != 0 {
		t.Errorf("transport: %+v", se)
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) is not nil")
	}
	for _, s := range []string{"5.1.1", "4.7.1 text", "5.1.10", "2.0.0;"} {
		if parseEnhanced(s) == "" {
			t.Errorf("parseEnhanced(%q) found nothing", s)
		}
	}
	for _, s := range []string{"5.1", "6.1.1", "5.1.1x", "5..1", "5.1234.1", ""} {
		if got := parseEnhanced(s); got != "" {
			t.Errorf("parseEnhanced(%q) = %q", s, got)
		}
	}
}
