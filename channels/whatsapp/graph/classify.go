package graph

import (
	"context"

	"errors"
	"github.com/herald-dev/herald/throttle"
	"net"
	"time"
)

// Action is what Herald does about a failed send (the Codes table; docs/providers/whatsapp.md).
type Action uint8

// Actions, from the least to the most drastic scope.
const (
	ActionNone              Action = iota // no error
	ActionRetry                           // back off and retry the same job
	ActionBackoffRecipient                // back off this recipient only (pair rate)
	ActionConvertToTemplate               // outside the 24h window: resend as an approved template, or skip
	ActionHoldMarketing                   // hold this contact's marketing for at least 24h
	ActionOptOut                          // the user stopped marketing: record an opt-out
	ActionUndeliverable                   // mark the contact undeliverable; fall back to another channel if allowed
	ActionDrop                            // drop the job and record it
	ActionFailJob                         // fail the job: bad parameters, a bug or an unknown code
	ActionPauseCampaign                   // the template is wrong, missing, paused or disabled
	ActionPauseSender                     // the phone number's quality is at stake
	ActionPauseAccount                    // token, permission or account problem: stop the whole account and alert
	ActionSkipCountry                     // the account may not send to the recipient's country
)

var actionNames = [...]string{
	ActionNone:              "none",
	ActionRetry:             "retry",
	ActionBackoffRecipient:  "backoff_recipient",
	ActionConvertToTemplate: "convert_to_template",
	ActionHoldMarketing:     "hold_marketing",
	ActionOptOut:            "opt_out",
	ActionUndeliverable:     "undeliverable",
	ActionDrop:              "drop",
	ActionFailJob:           "fail_job",
	ActionPauseCampaign:     "pause_campaign",
	ActionPauseSender:       "pause_sender",
	ActionPauseAccount:      "pause_account",
	ActionSkipCountry:       "skip_country",
}

// String returns a bounded, metric-label-safe name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Class is the classification of a send error.
type Class struct {
	Action     Action
	Retryable  bool            // the same request may be sent again later (see RetryAfter)
	SlowSender bool            // the sender's pace caused it (130429): lower the sender's rate, too
	Signal     throttle.Signal // what it asks of the pace of the sender or the recipient
	Code       int             // the Graph error code, or CodeTransport when the error was not an *APIError
}

// CodeTransport is Class.Code for errors that carry no Graph code (transport, context and
// other local errors). Graph's own code 0 (AuthException) is a real code.
const CodeTransport = -1

// Classify maps an error returned by Client.Send to what Herald does about it. A nil error
// is ActionNone; *TransportError, network and context errors are ActionRetry; any other
// error (a bug) is ActionFailJob.
func Classify(err error) Class {
	if err == nil {
		return Class{}
	}
	retry := Class{Action: ActionRetry, Retryable: true, Code: CodeTransport}
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ClassifyCode(ae.Code)
	}
	if _, ok := errors.AsType[*TransportError](err); ok {
		return retry
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return retry
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return retry
	}
	return Class{Action: ActionFailJob, Code: CodeTransport}
}

// ClassifyCode maps a Graph error code (from a send error or from the errors of a
// "failed" status webhook) to what Herald does, from the Codes table. Unknown codes fail
// the job, except permission errors (200–299), which pause the account.
func ClassifyCode(code int) Class {
	if info, ok := codeIndex[code]; ok {
		return Class{Action: info.Action, Retryable: info.Retryable, SlowSender: info.SlowSender, Signal: info.Signal, Code: code}
	}
	if code >= 200 && code <= 299 { // permission errors
		return Class{Action: ActionPauseAccount, Code: code}
	}
	return Class{Action: ActionFailJob, Code: code}
}

// Retry timing.
const (
	retryBase     = time.Second
	retryCap      = 5 * time.Minute
	pairRetryCap  = time.Hour
	maintenance   = 60 * time.Second
	marketingHold = 24 * time.Hour
)

// RetryAfter suggests how long to wait before the attempt-th retry (1 for the first) of a
// send that failed with code: 131056 (pair rate) waits 4^attempt s (capped at 1 h), 131057
// (maintenance) 60 s, 131049 (marketing cap) 24 h before the contact gets marketing again,
// other retryable codes and transport errors (CodeTransport) back off exponentially from
// 1 s up to 5 min. Codes that must not be retried return 0. Callers add jitter.
func RetryAfter(code int, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	switch code {
	case 131056:
		d := time.Second
		for i := 0; i < attempt && d < pairRetryCap; i++ {
			d *= 4
		}
		return min(d, pairRetryCap)
	case 131057:
		return maintenance
	case 131049:
		return marketingHold
	}
	if code != CodeTransport && !ClassifyCode(code).Retryable {
		return 0
	}
	d := retryBase
	for i := 1; i < attempt && d < retryCap; i++ {
		d *= 2
	}
	return min(d, retryCap)
}
