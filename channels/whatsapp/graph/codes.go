package graph

import "github.com/herald-dev/herald/throttle"

// CodeInfo is one Graph error code Herald knows: what it means and what Herald does.
type CodeInfo struct {
	Code       int
	Meaning    string
	Action     Action
	Retryable  bool            // the same request may be sent again later
	SlowSender bool            // the sender's pace caused it
	Signal     throttle.Signal // what it asks of the pace of the sender or the recipient
}

// Codes is every WhatsApp Cloud API error code Herald classifies: the one source of
// ClassifyCode and of docs/providers/whatsapp.md (TestProviderReference keeps the two
// equal). Codes not listed fail the job, except 200–299 (permissions: pause the account).
var Codes = []CodeInfo{
	{Code: 130429, Meaning: "sender throughput exceeded (Cloud API message throughput)", Action: ActionRetry, Retryable: true, SlowSender: true, Signal: throttle.SignalSlowSender},
	{Code: 131056, Meaning: "pair rate: too many messages from this number to the same user", Action: ActionBackoffRecipient, Retryable: true, Signal: throttle.SignalBackoffRecipient},
	{Code: 4, Meaning: "app API call rate", Action: ActionRetry, Retryable: true},
	{Code: 80007, Meaning: "WhatsApp Business Account rate limit", Action: ActionRetry, Retryable: true},
	{Code: 131057, Meaning: "business account in maintenance mode (throughput upgrade)", Action: ActionRetry, Retryable: true, Signal: throttle.SignalSenderMaintenance},
	{Code: 131000, Meaning: "something went wrong (unknown error)", Action: ActionRetry, Retryable: true},
	{Code: 131016, Meaning: "service unavailable", Action: ActionRetry, Retryable: true},
	{Code: 133004, Meaning: "server temporarily unavailable", Action: ActionRetry, Retryable: true},
	{Code: 1, Meaning: "API unknown error", Action: ActionRetry, Retryable: true},
	{Code: 2, Meaning: "API service temporarily unavailable", Action: ActionRetry, Retryable: true},
	{Code: 131047, Meaning: "re-engagement message: more than 24 hours since the user's last message", Action: ActionConvertToTemplate},
	{Code: 131049, Meaning: "not delivered to keep a healthy ecosystem (per-user marketing limit)", Action: ActionHoldMarketing, Signal: throttle.SignalHoldMarketing},
	{Code: 131050, Meaning: "the user stopped marketing messages from this business", Action: ActionOptOut},
	{Code: 131026, Meaning: "message undeliverable (not on WhatsApp, old app, terms not accepted)", Action: ActionUndeliverable},
	{Code: 130403, Meaning: "the business blocked this user", Action: ActionDrop},
	{Code: 130472, Meaning: "the user's number is part of a Meta experiment", Action: ActionDrop},
	{Code: 100, Meaning: "invalid parameter", Action: ActionFailJob},
	{Code: 131008, Meaning: "required parameter missing", Action: ActionFailJob},
	{Code: 131009, Meaning: "parameter value not valid", Action: ActionFailJob},
	{Code: 131051, Meaning: "unsupported message type", Action: ActionFailJob},
	{Code: 132000, Meaning: "template parameter count mismatch", Action: ActionPauseCampaign},
	{Code: 132012, Meaning: "template parameter format mismatch", Action: ActionPauseCampaign},
	{Code: 132001, Meaning: "template does not exist in that language", Action: ActionPauseCampaign},
	{Code: 132015, Meaning: "template paused for low quality", Action: ActionPauseCampaign},
	{Code: 132016, Meaning: "template disabled", Action: ActionPauseCampaign},
	{Code: 131048, Meaning: "spam rate limit: the number's quality is at stake", Action: ActionPauseSender, Signal: throttle.SignalHoldSender},
	{Code: 131064, Meaning: "template category violation", Action: ActionPauseAccount},
	{Code: 190, Meaning: "access token expired", Action: ActionPauseAccount},
	{Code: 0, Meaning: "authentication failed (AuthException)", Action: ActionPauseAccount},
	{Code: 10, Meaning: "permission denied", Action: ActionPauseAccount},
	{Code: 368, Meaning: "temporarily blocked for policy violations", Action: ActionPauseAccount},
	{Code: 131031, Meaning: "business account locked", Action: ActionPauseAccount},
	{Code: 131042, Meaning: "business eligibility: payment issue", Action: ActionPauseAccount},
	{Code: 130497, Meaning: "the business account may not message users in this country", Action: ActionSkipCountry},
}

var codeIndex = func() map[int]CodeInfo {
	m := make(map[int]CodeInfo, len(Codes))
	for _, c := range Codes {
		m[c.Code] = c
	}
	return m
}()

// Actions lists every Action a classification can return, in order.
func Actions() []Action {
	out := make([]Action, 0, len(actionNames))
	for a := range actionNames {
		out = append(out, Action(a))
	}
	return out
}

// Reaction says, for people, what Herald does about an action (the provider reference).
func (a Action) Reaction() string {
	return actionReactions[a]
}

var actionReactions = [...]string{
	ActionNone:              "nothing: the send was accepted",
	ActionRetry:             "the job waits in the delayed set and is sent again with back-off (at most 5 min apart; 60 s for 131057); 130429 also slows the sender's governor",
	ActionBackoffRecipient:  "this recipient is backed off (4^n s, up to 1 h); the job is sent again then",
	ActionConvertToTemplate: "Herald's 24h-window record for (sender, contact) is closed and the job is checked again: sent with the campaign's fallback template (`--fallback-template`) if it has one, else skipped `outside_window`",
	ActionHoldMarketing:     "the contact's marketing is held for 24 h (a marketing job waits, deferred `marketing_hold`; another purpose fails)",
	ActionOptOut:            "a consent revoke for (whatsapp, marketing) is written to the ledger (source `provider`, proof: the code and message id) and an `opted_out` event is recorded; the job fails; later campaigns skip the contact as `opted_out` until a START or a new grant",
	ActionUndeliverable:     "the contact is suppressed on WhatsApp as `undeliverable` for 30 days (`HERALD_UNDELIVERABLE_FOR`); the job fails; meanwhile later jobs are skipped `undeliverable`",
	ActionDrop:              "the job is skipped as `provider_dropped` with the code, never retried",
	ActionFailJob:           "the job fails with the code (bad parameters or template data: a bug to fix)",
	ActionPauseCampaign:     "the campaign is paused (`provider:<code>`); its jobs wait, parked, for `campaigns resume`",
	ActionPauseSender:       "the sender is held by the governor (15 min unless it says longer) and the job is deferred `sender_paused`",
	ActionPauseAccount:      "the campaign is paused (`provider:<code>`) until someone fixes the account and resumes it",
	ActionSkipCountry:       "the contact is skipped as `country_restricted`, and the campaign stops trying that country on that sender (its other jobs there are skipped the same way)",
}
