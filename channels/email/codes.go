package email

import (
	"time"

	"github.com/herald-dev/herald/dispatcher"
)

// CodeInfo is one SMTP reply Herald classifies: a basic reply code (RFC 5321), an
// enhanced status code (RFC 3463), or both, what it means and what Herald does.
type CodeInfo struct {
	Reply      int    // basic reply code; 0: any
	Enhanced   string // enhanced status code "c.s.d"; "": any
	Meaning    string
	Action     string        // a dispatcher.Action… constant
	Retryable  bool          // the same message may be sent again later
	RetryAfter time.Duration // suggested wait before that; 0: the worker's back-off
}

// Codes is every SMTP reply Herald classifies: the one source of ClassifyReply (so of
// Classify and of ParseReport's actions) and of docs/providers/email.md
// (TestProviderReference keeps the two equal).
//
// A reply is looked up by its exact (reply, enhanced) pair first, then by its enhanced
// code alone (rows with Reply 0), then by its basic code alone (rows with Enhanced "");
// anything else retries when it is a 4xx and fails the job when it is a 5xx.
var Codes = []CodeInfo{
	// Temporary: the same message, later.
	{Reply: 421, Meaning: "service not available: the server is closing the connection (too many connections or messages, rate, shutdown)", Action: dispatcher.ActionRetry, Retryable: true, RetryAfter: time.Minute},
	{Reply: 450, Meaning: "mailbox unavailable for now (busy, temporarily blocked, greylisted)", Action: dispatcher.ActionRetry, Retryable: true},
	{Reply: 451, Meaning: "local error in processing, or deferred: try again later", Action: dispatcher.ActionRetry, Retryable: true},
	{Reply: 451, Enhanced: "4.7.1", Meaning: "greylisted: try again once the server's delay has passed", Action: dispatcher.ActionRetry, Retryable: true, RetryAfter: 5 * time.Minute},
	{Reply: 452, Meaning: "insufficient system storage, or too many recipients", Action: dispatcher.ActionRetry, Retryable: true},
	{Enhanced: "4.2.2", Meaning: "mailbox full (over quota): try again later (usually 452)", Action: dispatcher.ActionRetry, Retryable: true, RetryAfter: 30 * time.Minute},
	{Reply: 454, Meaning: "TLS or authentication temporarily unavailable", Action: dispatcher.ActionRetry, Retryable: true},

	// The recipient's address cannot receive mail: suppress it on email.
	{Enhanced: "5.1.1", Meaning: "bad destination mailbox: the user does not exist (usually 550)", Action: dispatcher.ActionUndeliverable},
	{Enhanced: "5.1.10", Meaning: "the recipient's domain publishes a null MX (RFC 7505): it accepts no mail", Action: dispatcher.ActionUndeliverable},
	{Enhanced: "5.1.2", Meaning: "bad destination system: the domain does not exist or has no mail server", Action: dispatcher.ActionUndeliverable},
	{Enhanced: "5.1.3", Meaning: "bad destination mailbox address syntax", Action: dispatcher.ActionUndeliverable},
	{Enhanced: "5.1.6", Meaning: "the mailbox has moved and left no forwarding address", Action: dispatcher.ActionUndeliverable},
	{Enhanced: "5.2.1", Meaning: "mailbox disabled: not accepting messages", Action: dispatcher.ActionUndeliverable},
	{Enhanced: "5.2.2", Meaning: "mailbox full, permanently (usually 552)", Action: dispatcher.ActionUndeliverable},
	{Enhanced: "5.4.4", Meaning: "unable to route: no mail server answers for the domain", Action: dispatcher.ActionUndeliverable},
	{Reply: 550, Meaning: "mailbox unavailable (not found), with no enhanced code to say more", Action: dispatcher.ActionUndeliverable},
	{Reply: 551, Meaning: "user not local", Action: dispatcher.ActionUndeliverable},
	{Reply: 553, Meaning: "mailbox name not allowed", Action: dispatcher.ActionUndeliverable},

	// Refused for its content or by the receiver's policy: never retried.
	{Enhanced: "5.7.1", Meaning: "rejected as spam or by the receiver's policy (usually 550 or 554)", Action: dispatcher.ActionDrop},

	// The message itself is wrong: a bug or a template to fix.
	{Enhanced: "5.3.4", Meaning: "message too big for the system (usually 552)", Action: dispatcher.ActionFailJob},
	{Enhanced: "5.2.3", Meaning: "message length exceeds the mailbox's administrative limit", Action: dispatcher.ActionFailJob},

	// The sending account is misconfigured: every message would fail the same way.
	{Reply: 530, Meaning: "authentication required, or STARTTLS must come first (usually 5.7.0)", Action: dispatcher.ActionPauseAccount},
	{Reply: 535, Meaning: "authentication failed: bad user name or password (usually 5.7.8)", Action: dispatcher.ActionPauseAccount},
	{Enhanced: "5.7.8", Meaning: "authentication credentials invalid", Action: dispatcher.ActionPauseAccount},
	{Reply: 523, Meaning: "encryption required for the requested authentication mechanism (5.7.10)", Action: dispatcher.ActionPauseAccount},
	{Enhanced: "5.1.8", Meaning: "the sender's address or domain is refused (bad or non-existent sending domain)", Action: dispatcher.ActionPauseAccount},
	{Enhanced: "5.7.26", Meaning: "unauthenticated mail: SPF, DKIM and DMARC failed for the sending domain (Gmail)", Action: dispatcher.ActionPauseAccount},
}

// codeIndex keys rows by "reply enhanced", "0 enhanced" and "reply " (see Codes).
var codeIndex = func() map[codeKey]CodeInfo {
	m := make(map[codeKey]CodeInfo, len(Codes))
	for _, c := range Codes {
		k := codeKey{c.Reply, c.Enhanced}
		if _, dup := m[k]; !dup {
			m[k] = c
		}
	}
	return m
}()

type codeKey struct {
	reply    int
	enhanced string
}

// ClassifyReply returns what Herald does about an SMTP reply: reply is the basic code
// (0 when only an enhanced code is known), enhanced the enhanced status code ("" when
// the reply had none). The row returned has Reply and Enhanced set to the reply's own.
func ClassifyReply(reply int, enhanced string) CodeInfo {
	info, ok := codeIndex[codeKey{reply, enhanced}]
	if !ok && enhanced != "" {
		info, ok = codeIndex[codeKey{0, enhanced}]
	}
	if !ok && reply != 0 {
		info, ok = codeIndex[codeKey{reply, ""}]
	}
	if !ok {
		class := reply / 100
		if reply == 0 && enhanced != "" {
			class = int(enhanced[0] - '0')
		}
		switch class {
		case 4:
			info = CodeInfo{Meaning: "temporary failure", Action: dispatcher.ActionRetry, Retryable: true}
		default:
			info = CodeInfo{Meaning: "permanent failure", Action: dispatcher.ActionFailJob}
		}
	}
	info.Reply, info.Enhanced = reply, enhanced
	return info
}

// Actions lists every action the table names, plus transport (connection errors),
// opt_out (complaints) and none (delayed or delivered reports), in a stable order.
func Actions() []string {
	return []string{dispatcher.ActionRetry, dispatcher.ActionTransport, dispatcher.ActionUndeliverable,
		dispatcher.ActionDrop, dispatcher.ActionFailJob, dispatcher.ActionPauseAccount, dispatcher.ActionOptOut,
		dispatcher.ActionNone}
}

// Reaction says, for people, what Herald does about an action on the email channel (the
// provider reference).
func Reaction(action string) string { return actionReactions[action] }

var actionReactions = map[string]string{
	dispatcher.ActionRetry:         "the job waits in the delayed set and is sent again with back-off (the row's wait when it names one); a report (a bounce) never retries: its message is gone",
	dispatcher.ActionTransport:     "the connection broke or timed out (code 0): the adapter first retries once on a fresh connection when nothing was sent yet, then the job is retried with back-off like `retry`",
	dispatcher.ActionUndeliverable: "the contact is suppressed on email as `undeliverable` for 30 days (`HERALD_UNDELIVERABLE_FOR`); the job fails; a hard bounce (a DSN with `Action: failed` and a 5.x.x status) does the same",
	dispatcher.ActionDrop:          "the job is skipped as `provider_dropped` with the code, never retried",
	dispatcher.ActionFailJob:       "the job fails with the code (the message itself is wrong, or the code is unknown)",
	dispatcher.ActionPauseAccount:  "the campaign is paused (`provider:<code>`) until someone fixes the sender's SMTP account (credentials, TLS, DNS) and resumes it",
	dispatcher.ActionOptOut:        "a complaint (an ARF report with `Feedback-Type: abuse` or `fraud`): a consent revoke for (email, marketing) is written to the ledger and an `opted_out` event recorded",
	dispatcher.ActionNone:          "nothing: a `delivered` DSN is recorded as delivered; a `delayed` one is ignored (the receiving side still tries)",
}
