package telegram

import (
	"strings"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/throttle"
)

// CodeInfo is one Bot API error Herald knows: an error_code and the description it
// comes with (Telegram's codes are HTTP statuses; the description says which error it
// is), what it means and what Herald does.
type CodeInfo struct {
	Code        int
	Description string // a case-insensitive substring of the description; "" matches any
	Meaning     string
	Action      string          // a dispatcher.Action… constant
	Retryable   bool            // the same request may be sent again later
	Signal      throttle.Signal // what it asks of the pace of the bot or the chat
}

// Codes is every Bot API error Herald classifies: the one source of Classify and of
// docs/providers/telegram.md (TestProviderReference keeps the two equal). Entries of
// one code are tried in order, the first whose Description the error's contains wins;
// an entry without Description is the code's fallback. Codes not listed fail the job;
// a 5xx is retried as transport.
var Codes = []CodeInfo{
	// The chat's pace.
	{Code: 429, Description: "Too Many Requests", Meaning: "flood control: too many messages to this chat (1/s, 20/min for a group) or from the bot (about 30/s); parameters.retry_after says how long to wait",
		Action: dispatcher.ActionBackoffRecipient, Retryable: true, Signal: throttle.SignalBackoffRecipient},
	// The user.
	{Code: 403, Description: "bot was blocked by the user", Meaning: "the user blocked the bot", Action: dispatcher.ActionOptOut},
	{Code: 403, Description: "user is deactivated", Meaning: "the user deleted their account", Action: dispatcher.ActionOptOut},
	{Code: 403, Description: "bot can't initiate conversation with a user", Meaning: "the user never sent /start to the bot: no consent", Action: dispatcher.ActionOptOut},
	{Code: 403, Description: "bot was kicked from", Meaning: "the bot was removed from the group or channel", Action: dispatcher.ActionOptOut},
	{Code: 403, Description: "bot is not a member", Meaning: "the bot is not a member of the channel or group", Action: dispatcher.ActionUndeliverable},
	{Code: 403, Description: "", Meaning: "any other refusal of the chat (Forbidden)", Action: dispatcher.ActionUndeliverable},
	{Code: 400, Description: "chat not found", Meaning: "no such chat (a wrong or stale chat id)", Action: dispatcher.ActionUndeliverable},
	{Code: 400, Description: "PEER_ID_INVALID", Meaning: "the chat id is not one the bot can reach", Action: dispatcher.ActionUndeliverable},
	{Code: 400, Description: "group chat was upgraded to a supergroup", Meaning: "the group became a supergroup: parameters.migrate_to_chat_id is its new id", Action: dispatcher.ActionUndeliverable},
	// The message.
	{Code: 400, Description: "can't parse entities", Meaning: "the text is not valid MarkdownV2/HTML: a template problem (Herald escapes user data, so the template's own markup is wrong)", Action: dispatcher.ActionPauseCampaign},
	{Code: 400, Description: "message is too long", Meaning: "text over 4,096 (caption over 1,024) characters after entity parsing", Action: dispatcher.ActionFailJob},
	{Code: 400, Description: "message text is empty", Meaning: "empty text", Action: dispatcher.ActionFailJob},
	{Code: 400, Description: "wrong file identifier/HTTP URL", Meaning: "the photo or document URL is not one Telegram can fetch", Action: dispatcher.ActionPauseCampaign},
	{Code: 400, Description: "failed to get HTTP URL content", Meaning: "Telegram could not download the photo or document", Action: dispatcher.ActionPauseCampaign},
	{Code: 400, Description: "BUTTON_URL_INVALID", Meaning: "an inline button's URL is invalid", Action: dispatcher.ActionPauseCampaign},
	{Code: 400, Description: "", Meaning: "any other bad request", Action: dispatcher.ActionFailJob},
	// The bot.
	{Code: 401, Description: "", Meaning: "Unauthorized: the bot token is wrong or revoked", Action: dispatcher.ActionPauseAccount},
	{Code: 404, Description: "", Meaning: "Not Found: the method URL names no bot (a malformed token)", Action: dispatcher.ActionPauseAccount},
	// Transient.
	{Code: 500, Description: "", Meaning: "Internal Server Error", Action: dispatcher.ActionRetry, Retryable: true},
	{Code: 502, Description: "", Meaning: "Bad Gateway", Action: dispatcher.ActionRetry, Retryable: true},
}

// Class is the classification of a send error.
type Class struct {
	Action    string // a dispatcher.Action… constant
	Retryable bool
	Signal    throttle.Signal
	Code      int // the error_code; CodeTransport when there was none
}

// CodeTransport is Class.Code for errors that carry no Bot API answer.
const CodeTransport = 0

// ClassifyCode maps a Bot API error (error_code and description) to what Herald does,
// from the Codes table. Unknown 5xx codes are retried; other unknown codes fail the job.
func ClassifyCode(code int, description string) Class {
	d := strings.ToLower(description)
	for _, c := range Codes {
		if c.Code == code && strings.Contains(d, strings.ToLower(c.Description)) {
			return Class{Action: c.Action, Retryable: c.Retryable, Signal: c.Signal, Code: code}
		}
	}
	if code >= 500 {
		return Class{Action: dispatcher.ActionTransport, Retryable: true, Code: code}
	}
	return Class{Action: dispatcher.ActionFailJob, Code: code}
}

// Retry timing of errors without retry_after.
const (
	retryBase = time.Second
	retryCap  = 5 * time.Minute
	// maxRetryAfter bounds a retry_after Herald honours.
	maxRetryAfter = time.Hour
)

// reactions says, for people, what Herald does about each action a Bot API error can
// ask for (the provider reference).
var reactions = []struct{ action, reaction string }{
	{dispatcher.ActionBackoffRecipient, "the job waits `retry_after` seconds and is sent again; the chat (sender, contact) backs off in the policy (`Policy.Pushback`), other chats keep their pace. Telegram does not say whether the chat's or the bot's limit was hit: Herald paces the bot with the sender's rate (30/s, 1000/s with paid broadcast) and each chat with the pair interval (at least 1 s), so a 429 is never Herald's doing"},
	{dispatcher.ActionOptOut, "a consent revoke for (telegram, marketing) is written to the ledger (source `provider`, proof: the code) and an `opted_out` event is recorded; the job fails; later campaigns skip the contact until the user sends /start again"},
	{dispatcher.ActionUndeliverable, "the contact is suppressed on Telegram as `undeliverable` for 30 days (`HERALD_UNDELIVERABLE_FOR`); the job fails"},
	{dispatcher.ActionPauseCampaign, "the campaign is paused (`provider:<code>`): the template's markup or media is wrong for every contact; fix the template and resume"},
	{dispatcher.ActionFailJob, "the job fails with the code (a bug to fix: too long, empty)"},
	{dispatcher.ActionPauseAccount, "the campaign is paused (`provider:<code>`) until someone fixes the bot token and resumes it"},
	{dispatcher.ActionRetry, "retried with back-off (1 s doubling up to 5 min)"},
	{dispatcher.ActionTransport, "no Bot API answer (network error, timeout, an HTTP 5xx page): retried with back-off; the message may or may not have been sent (the Bot API has no idempotency key)"},
}
