package sms

import (
	"time"

	"github.com/herald-dev/herald/dispatcher"
)

// CodeInfo is one Twilio error code Herald knows: what it means and what Herald does.
type CodeInfo struct {
	Code       int
	Meaning    string
	Action     string // a dispatcher.Action… constant
	Retryable  bool   // the same request may be sent again later
	SlowSender bool   // the sender's pace caused it: lower the sender's rate, too
	// Unverified marks a meaning Herald could not confirm in Twilio's public error
	// dictionary; the docs say so.
	Unverified bool
}

// Codes is every Twilio Messaging error code Herald classifies: the one source of
// ClassifyCode and of docs/providers/sms.md (TestProviderReference keeps the two equal).
// A code arrives either in the error body of a refused send (HTTP 4xx/5xx) or as the
// ErrorCode of a failed or undelivered status callback. Codes not listed fail the job;
// an unlisted code on an HTTP 5xx answer is retried like a transport error.
var Codes = []CodeInfo{
	// The recipient.
	{Code: 21610, Meaning: "attempt to send to an unsubscribed recipient (the number texted STOP to this sender)", Action: dispatcher.ActionOptOut},
	{Code: 21211, Meaning: "invalid 'To' phone number", Action: dispatcher.ActionUndeliverable},
	{Code: 21614, Meaning: "'To' number is not a valid mobile number (a landline, or not SMS-capable)", Action: dispatcher.ActionUndeliverable},
	{Code: 21635, Meaning: "'To' number cannot be a landline", Action: dispatcher.ActionUndeliverable},
	{Code: 30003, Meaning: "unreachable destination handset (off, out of coverage, cannot receive SMS)", Action: dispatcher.ActionUndeliverable},
	{Code: 30005, Meaning: "unknown destination handset (inactive or no longer in service)", Action: dispatcher.ActionUndeliverable},
	{Code: 30006, Meaning: "landline or unreachable carrier", Action: dispatcher.ActionUndeliverable},
	{Code: 21408, Meaning: "permission to send an SMS has not been enabled for the region of the 'To' number", Action: dispatcher.ActionSkipCountry},
	{Code: 30007, Meaning: "message filtered by Twilio or the carrier (spam, fraud, carrier rules)", Action: dispatcher.ActionDrop},
	// The sender's pace.
	{Code: 20429, Meaning: "too many concurrent REST API requests (HTTP 429; never processed, safe to retry)", Action: dispatcher.ActionRetry, Retryable: true, SlowSender: true},
	{Code: 21611, Meaning: "the 'From' number's queue is full (more than the queue time's worth of segments at its rate)", Action: dispatcher.ActionRetry, Retryable: true, SlowSender: true},
	{Code: 30001, Meaning: "queue overflow (a Messaging Service's sender queue was full; failed after creation)", Action: dispatcher.ActionRetry, Retryable: true, SlowSender: true},
	{Code: 30036, Meaning: "validity period expired: the message waited in the sender's queue longer than its ValidityPeriod", Action: dispatcher.ActionRetry, Retryable: true, SlowSender: true},
	// Transient.
	{Code: 30008, Meaning: "unknown error from the carrier", Action: dispatcher.ActionRetry, Retryable: true},
	{Code: 20500, Meaning: "Twilio internal server error", Action: dispatcher.ActionRetry, Retryable: true, Unverified: true},
	{Code: 20503, Meaning: "Twilio service unavailable", Action: dispatcher.ActionRetry, Retryable: true, Unverified: true},
	// The message.
	{Code: 21602, Meaning: "message body is required", Action: dispatcher.ActionFailJob},
	{Code: 21617, Meaning: "the concatenated message body exceeds the 1600 character limit", Action: dispatcher.ActionFailJob},
	{Code: 21624, Meaning: "invalid validity period (1 to 36,000 seconds)", Action: dispatcher.ActionFailJob},
	// The sender.
	{Code: 21606, Meaning: "the 'From' number is not a valid message-capable number of this account", Action: dispatcher.ActionPauseSender},
	{Code: 30032, Meaning: "toll-free number has not been verified", Action: dispatcher.ActionPauseSender},
	{Code: 30034, Meaning: "US A2P 10DLC: message from an unregistered number", Action: dispatcher.ActionPauseSender, Unverified: true},
	// The account.
	{Code: 20003, Meaning: "authentication failed (account SID or auth token; HTTP 401)", Action: dispatcher.ActionPauseAccount},
	{Code: 30002, Meaning: "account suspended", Action: dispatcher.ActionPauseAccount, Unverified: true},
}

var codeIndex = func() map[int]CodeInfo {
	m := make(map[int]CodeInfo, len(Codes))
	for _, c := range Codes {
		m[c.Code] = c
	}
	return m
}()

// Class is the classification of a send error or of a failed status.
type Class struct {
	Action     string // a dispatcher.Action… constant
	Retryable  bool
	SlowSender bool
	Code       int // the Twilio error code; CodeTransport when there was none
}

// CodeTransport is Class.Code for errors that carry no Twilio code (network errors,
// 5xx pages, garbage answers).
const CodeTransport = 0

// ClassifyCode maps a Twilio error code to what Herald does, from the Codes table.
// Unknown codes fail the job.
func ClassifyCode(code int) Class {
	if info, ok := codeIndex[code]; ok {
		return Class{Action: info.Action, Retryable: info.Retryable, SlowSender: info.SlowSender, Code: code}
	}
	return Class{Action: dispatcher.ActionFailJob, Code: code}
}

// Retry timing.
const (
	retryBase  = time.Second
	retryCap   = 5 * time.Minute
	queueRetry = time.Minute
)

// RetryAfter suggests how long to wait before the attempt-th retry (1 for the first) of a
// send refused with code: a full sender queue (21611, 30001, 30036) waits a minute for it
// to drain; other retryable codes and transport errors (CodeTransport) back off
// exponentially from 1 s up to 5 min. Codes that must not be retried return 0. A
// Retry-After header, when Twilio sends one, wins over this (SendError.RetryAfter).
func RetryAfter(code int, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if queueCode(code) {
		return queueRetry
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

// queueCode reports whether code says a sender's queue at Twilio is full or too slow.
func queueCode(code int) bool { return code == 21611 || code == 30001 || code == 30036 }

// reactions says, for people, what Herald does about each action an SMS code can ask
// for (the provider reference).
var reactions = []struct{ action, reaction string }{
	{dispatcher.ActionRetry, "the job waits in the delayed set and is sent again with back-off (the Retry-After header when Twilio sends one; a minute for a full sender queue; else 1 s doubling up to 5 min); the code goes to the sender's governor (`Pushback.Sender`), which slows the sender for the pace codes it knows (the slow-sender column)"},
	{dispatcher.ActionOptOut, "a consent revoke for (sms, marketing) is written to the ledger (source `provider`, proof: the code and message SID) and an `opted_out` event is recorded; the job fails; later campaigns skip the contact as `opted_out` until a START or a new grant"},
	{dispatcher.ActionUndeliverable, "the contact is suppressed on SMS as `undeliverable` for 30 days (`HERALD_UNDELIVERABLE_FOR`); the job fails; meanwhile later jobs are skipped `undeliverable`"},
	{dispatcher.ActionSkipCountry, "the contact is skipped as `country_restricted`, and the campaign stops trying that country on that sender"},
	{dispatcher.ActionDrop, "the job is skipped as `provider_dropped` with the code, never retried"},
	{dispatcher.ActionFailJob, "the job fails with the code (an empty or oversized body, a bad validity period: a bug to fix)"},
	{dispatcher.ActionPauseSender, "the code goes to the sender's governor (`Pushback.Sender`) to hold the sender while the number is registered, verified or fixed, and the job is deferred `sender_paused`"},
	{dispatcher.ActionPauseAccount, "the campaign is paused (`provider:<code>`) until someone fixes the account (credentials, suspension, a sender missing from the SMS configuration) and resumes it"},
	{dispatcher.ActionTransport, "no Twilio code (network error, timeout, an HTTP 5xx page): retried with back-off like `retry`; the message may or may not have been accepted, so the status callback settles it"},
}
