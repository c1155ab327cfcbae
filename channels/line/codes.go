package line

import (
	"net/http"
	"strings"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/throttle"
)

// CodeInfo is one answer of the Messaging API Herald knows: an HTTP status, narrowed by
// the error body's message when one status means several things (429), what it means
// and what Herald does.
type CodeInfo struct {
	Status int
	// Message, when set, is matched (case-insensitively) as a prefix of the error body's
	// message; the first row whose status and message match wins.
	Message string
	// Property, when set, is matched against the property of the body's details: a 400
	// about the "to" property is about the recipient, not the message.
	Property  string
	Meaning   string
	Action    string          // a dispatcher.Action… constant
	Retryable bool            // the same request (same retry key) may be sent again later
	Signal    throttle.Signal // what it asks of the sender's pace
	// Accepted marks the answer that means the request was already accepted (409 with
	// the retry key): the send is settled as sent, never failed.
	Accepted bool
}

// MonthlyLimitMessage is the message of the 429 LINE answers once the channel's monthly
// message quota is used up.
const MonthlyLimitMessage = "You have reached your monthly limit."

// Codes is every Messaging API answer Herald classifies: the one source of Classify and
// of docs/providers/line.md (TestProviderReference keeps the two equal). Statuses not
// listed fail the job; an unlisted 5xx is retried like a transport error.
var Codes = []CodeInfo{
	{Status: http.StatusConflict, Meaning: "a request with this X-Line-Retry-Key was already accepted (x-line-accepted-request-id names it): the message was sent", Action: dispatcher.ActionNone, Accepted: true},
	// The recipient.
	{Status: http.StatusBadRequest, Property: "to", Meaning: "the recipient is not a valid LINE user id of this channel (the 'to' property is invalid)", Action: dispatcher.ActionUndeliverable},
	// The message.
	{Status: http.StatusBadRequest, Meaning: "invalid request: a message object is malformed or over a limit (text over 5,000 characters, more than 5 messages, a bad action URI)", Action: dispatcher.ActionFailJob},
	{Status: http.StatusRequestEntityTooLarge, Meaning: "the request body is over 2 MB (Herald splits batches to stay under it; refused before sending when one message is)", Action: dispatcher.ActionFailJob},
	// The sender's pace and quota.
	{Status: http.StatusTooManyRequests, Message: MonthlyLimitMessage, Meaning: "the channel's monthly message quota is used up: nothing more goes out until the quota resets on the 1st of next month (or the plan is upgraded)", Action: dispatcher.ActionPauseSender, Signal: throttle.SignalHoldSender},
	{Status: http.StatusTooManyRequests, Meaning: "too many requests: the endpoint's rate limit (push 2,000 req/s, multicast 200 req/s per channel) was exceeded; nothing in the request was sent", Action: dispatcher.ActionRetry, Retryable: true, Signal: throttle.SignalSlowSender},
	// Transient.
	{Status: http.StatusInternalServerError, Meaning: "LINE platform error: the request may or may not have been accepted; retried with the same retry key", Action: dispatcher.ActionRetry, Retryable: true},
	{Status: http.StatusServiceUnavailable, Meaning: "LINE platform temporarily unavailable; retried with the same retry key", Action: dispatcher.ActionRetry, Retryable: true},
	// The account.
	{Status: http.StatusUnauthorized, Meaning: "the channel access token is invalid or expired", Action: dispatcher.ActionPauseAccount},
	{Status: http.StatusForbidden, Meaning: "not authorized to use this API (the plan does not include it, or the channel is not allowed)", Action: dispatcher.ActionPauseAccount},
}

// Class is the classification of a Messaging API answer.
type Class struct {
	Action    string
	Retryable bool
	Signal    throttle.Signal
	Accepted  bool
	Status    int // the HTTP status; StatusTransport when none was read
}

// StatusTransport is Class.Status for errors that carry no answer (network errors,
// timeouts).
const StatusTransport = 0

// ClassifyStatus maps an HTTP status, the error body's message and the properties its
// details name to what Herald does, from the Codes table. An unknown 5xx is a transport
// error (retried); any other unknown status fails the job.
func ClassifyStatus(status int, message string, properties []string) Class {
	for _, c := range Codes {
		if c.Status != status {
			continue
		}
		if c.Message != "" && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(message)), strings.ToLower(c.Message)) {
			continue
		}
		if c.Property != "" && !hasProperty(properties, c.Property) {
			continue
		}
		return Class{Action: c.Action, Retryable: c.Retryable, Signal: c.Signal, Accepted: c.Accepted, Status: status}
	}
	if status >= 500 {
		return Class{Action: dispatcher.ActionTransport, Retryable: true, Status: status}
	}
	return Class{Action: dispatcher.ActionFailJob, Status: status}
}

func hasProperty(props []string, want string) bool {
	for _, p := range props {
		// "to", "to[3]" (multicast names the index of the bad user id)
		if p == want || strings.HasPrefix(p, want+"[") {
			return true
		}
	}
	return false
}

// Retry timing.
const (
	retryBase = time.Second
	retryCap  = 5 * time.Minute
)

// RetryAfter suggests how long to wait before the attempt-th retry (1 for the first) of
// a retryable answer: LINE sends no Retry-After, so 1 s doubling up to 5 min; a 429 for
// the rate limit waits a full second window first.
func RetryAfter(attempt int) time.Duration {
	d := retryBase
	for i := 1; i < attempt && d < retryCap; i++ {
		d *= 2
	}
	return min(d, retryCap)
}

// NextMonth is when a channel's monthly quota resets: the first instant of the month
// after now, in Japan time (LINE counts months in JST).
func NextMonth(now time.Time) time.Time {
	jst := time.FixedZone("JST", 9*3600)
	t := now.In(jst)
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, jst)
}

// reactions says, for people, what Herald does about each action a LINE answer can ask
// for (the provider reference).
var reactions = []struct{ action, reaction string }{
	{dispatcher.ActionNone, "409 with the retry key: the request was accepted earlier (a retry after a timeout or a crash); the job is settled as `sent` with the accepted request's message id (push) or `<accepted request id>:<index>` (multicast), never failed"},
	{dispatcher.ActionRetry, "the job waits in the delayed set and is sent again with the same `X-Line-Retry-Key` (1 s doubling up to 5 min; LINE sends no Retry-After); a rate 429 also goes to the sender's governor (`Pushback.Sender`, slow_sender), which lowers the sender's pace and recovers it gradually"},
	{dispatcher.ActionUndeliverable, "the contact is suppressed on LINE as `undeliverable` for 30 days (`HERALD_UNDELIVERABLE_FOR`); the job fails"},
	{dispatcher.ActionFailJob, "the job fails with the status (a malformed or oversized message: a template to fix)"},
	{dispatcher.ActionPauseSender, "the monthly quota: the sender's governor holds the sender (`hold_sender`) and the job is deferred `sender_paused` until the quota resets on the 1st of next month (JST), so the refusals do not turn into a retry storm; raise the plan's quota and resume to go on sooner"},
	{dispatcher.ActionPauseAccount, "the campaign is paused (`provider:<status>`) until someone fixes the channel access token or the plan and resumes it"},
	{dispatcher.ActionTransport, "no answer (network error, timeout) or an unlisted 5xx: retried with back-off like `retry`, with the same `X-Line-Retry-Key`, so a request LINE had accepted comes back 409 and is settled as sent"},
}
