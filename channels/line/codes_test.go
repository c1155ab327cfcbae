package line

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/throttle"
)

var update = flag.Bool("update", false, "rewrite docs/providers/line.md from the Codes table")

const referencePath = "../../docs/providers/line.md"

// TestProviderReference keeps the repository's LINE provider reference equal to the
// table the classifier reads: a row added, removed or reclassified without the docs
// fails here (run with -update to rewrite them).
func TestProviderReference(t *testing.T) {
	used := map[string]bool{dispatcher.ActionTransport: true}
	seen := map[string]bool{}
	for _, c := range Codes {
		k := fmt.Sprintf("%d|%s|%s", c.Status, c.Message, c.Property)
		if seen[k] {
			t.Errorf("row %s is listed twice", k)
		}
		seen[k] = true
		used[c.Action] = true
		if c.Meaning == "" {
			t.Errorf("status %d has no meaning", c.Status)
		}
		if !slices.Contains(dispatcher.Actions(), c.Action) {
			t.Errorf("status %d: action %q is not a dispatcher.Action… constant", c.Status, c.Action)
		}
		if c.Retryable != (c.Action == dispatcher.ActionRetry) {
			t.Errorf("status %d: retryable %v with action %s", c.Status, c.Retryable, c.Action)
		}
		var props []string
		if c.Property != "" {
			props = []string{c.Property}
		}
		msg := c.Message
		if got := ClassifyStatus(c.Status, msg, props); got.Action != c.Action || got.Retryable != c.Retryable || got.Signal != c.Signal || got.Accepted != c.Accepted {
			t.Errorf("ClassifyStatus(%d, %q, %v) = %+v, table says %+v", c.Status, msg, props, got, c)
		}
	}
	documented := map[string]bool{}
	for _, r := range reactions {
		documented[r.action] = true
		if !used[r.action] {
			t.Errorf("reaction for %s, which no row asks for", r.action)
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
		t.Fatalf("%v (run go test ./channels/line -run TestProviderReference -update)", err)
	}
	if string(got) != want {
		t.Errorf("%s differs from the Codes table; run go test ./channels/line -run TestProviderReference -update and review the diff", referencePath)
	}
}

func renderReference() string {
	var b strings.Builder
	b.WriteString(`# LINE (Messaging API): answers and Herald's reactions

Generated from ` + "`channels/line/codes.go`" + ` (the table the classifier reads) by
` + "`go test ./channels/line -run TestProviderReference -update`" + `; a test fails when the two differ.
LINE answers with an HTTP status and a body ` + "`{\"message\":…,\"details\":[{\"message\":…,\"property\":…}]}`" + `;
one status can mean several things, told apart by the message (429) or the property the details
name (400 about ` + "`to`" + `). The first matching row wins. Statuses not listed fail the job; an
unlisted 5xx, and errors with no answer at all (network, timeouts), are retried as ` + "`transport`" + `.
LINE sends no Retry-After. Every push and multicast carries an ` + "`X-Line-Retry-Key`" + ` derived from
the (campaign, contact) — or, for a multicast, from its exact members — so a retry never sends twice.
LINE reports no delivery status for push or multicast: a 200 (or a 409) is the final word, and a
user who blocked the account is answered 200 and gets nothing (the ` + "`unfollow`" + ` event says so).
A multicast returns no message ids: each contact's provider id is ` + "`<x-line-request-id>:<index>`" + `.

| status | message | property | meaning | retried | signal | action |
| --- | --- | --- | --- | --- | --- | --- |
`)
	yn := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	dash := func(s string) string {
		if s == "" {
			return "—"
		}
		return "`" + s + "`"
	}
	for _, c := range Codes {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | `%s` |\n", c.Status, dash(c.Message), dash(c.Property), c.Meaning, yn(c.Retryable), c.Signal, c.Action)
	}
	b.WriteString("\n## What Herald does for each action\n\n| action | reaction |\n| --- | --- |\n")
	for _, r := range reactions {
		fmt.Fprintf(&b, "| `%s` | %s |\n", r.action, r.reaction)
	}
	b.WriteString(`
## Webhook events

` + "`POST /webhooks/line`" + `, verified with ` + "`X-Line-Signature`" + ` (base64 HMAC-SHA256 of the raw body under the
channel secret, the sender's ` + "`channel_secret`" + ` setting; a forged or missing signature is answered
401 and records nothing).

| event | Herald records |
| --- | --- |
| ` + "`follow`" + ` | a consent grant for (line, marketing), source ` + "`provider`" + `, proof: the webhookEventId and the event's time |
| ` + "`unfollow`" + ` | a consent revoke for (line, marketing): the user blocked the account |
| ` + "`message`" + ` | an inbound message (a reply, for analytics); it opens no window: LINE has none |

A redelivered event (` + "`deliveryContext.isRedelivery`" + `) carries the same webhookEventId and collapses.
`)
	return b.String()
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		msg    string
		props  []string
		action string
		retry  bool
		signal throttle.Signal
	}{
		{"monthly limit", 429, MonthlyLimitMessage, nil, dispatcher.ActionPauseSender, false, throttle.SignalHoldSender},
		{"monthly limit, other case", 429, "you have reached your monthly limit.", nil, dispatcher.ActionPauseSender, false, throttle.SignalHoldSender},
		{"rate", 429, "Too Many Requests", nil, dispatcher.ActionRetry, true, throttle.SignalSlowSender},
		{"bad user id", 400, "The request body has 1 error(s)", []string{"to"}, dispatcher.ActionUndeliverable, false, 0},
		{"bad user id in a multicast", 400, "The request body has 1 error(s)", []string{"to[7]"}, dispatcher.ActionUndeliverable, false, 0},
		{"bad message", 400, "The request body has 1 error(s)", []string{"messages[0].text"}, dispatcher.ActionFailJob, false, 0},
		{"token", 401, "Authentication failed", nil, dispatcher.ActionPauseAccount, false, 0},
		{"plan", 403, "Access to this API is not available for your account", nil, dispatcher.ActionPauseAccount, false, 0},
		{"too large", 413, "Request Entity Too Large", nil, dispatcher.ActionFailJob, false, 0},
		{"unlisted 5xx", 502, "Bad Gateway", nil, dispatcher.ActionTransport, true, 0},
		{"unlisted 4xx", 418, "teapot", nil, dispatcher.ActionFailJob, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ClassifyStatus(c.status, c.msg, c.props)
			if got.Action != c.action || got.Retryable != c.retry || got.Signal != c.signal {
				t.Fatalf("got %+v, want %s retry %v signal %s", got, c.action, c.retry, c.signal)
			}
		})
	}
	if cl := ClassifyStatus(http.StatusConflict, "The retry key is already accepted", nil); !cl.Accepted {
		t.Fatalf("409 is not accepted: %+v", cl)
	}
}

func TestNextMonth(t *testing.T) {
	for _, c := range []struct{ now, want string }{
		{"2026-03-05T12:00:00Z", "2026-04-01T00:00:00+09:00"},
		{"2026-03-31T15:30:00Z", "2026-05-01T00:00:00+09:00"}, // already April 1st in Japan
		{"2026-12-20T00:00:00Z", "2027-01-01T00:00:00+09:00"},
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		want, _ := time.Parse(time.RFC3339, c.want)
		if got := NextMonth(now); !got.Equal(want) {
			t.Errorf("NextMonth(%s) = %s, want %s", c.now, got, want)
		}
	}
}

func TestRetryKey(t *testing.T) {
	a, b := RetryKey("c1:7"), RetryKey("c1:7:v.b")
	if a != b {
		t.Fatalf("the variant changed the key: %s %s", a, b)
	}
	if a == RetryKey("c1:8") || a == RetryKey("c2:7") {
		t.Fatal("keys of different jobs collide")
	}
	if len(a) != 36 || a[14] != '5' {
		t.Fatalf("not a UUID v5 layout: %s", a)
	}
	x := BatchRetryKey([]string{"c1:1", "c1:2"})
	if x != BatchRetryKey([]string{"c1:1", "c1:2:v.a"}) || x == BatchRetryKey([]string{"c1:1"}) || x == BatchRetryKey([]string{"c1:2", "c1:1"}) {
		t.Fatal("batch keys must follow the exact members in order")
	}
}
