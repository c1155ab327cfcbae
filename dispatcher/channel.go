package dispatcher

import (
	"context"
	"fmt"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// The channel contract: what the core asks of a provider adapter (WhatsApp, email, SMS…)
// and what it gets back, in the core's own terms. An adapter owns everything about its
// provider — its client, its error table, its webhook decoding — and hands the core
// typed outcomes: a provider id, or a *SendError whose Action is one of the Action…
// constants (the signals the Reactor carries out), and Reports and Inbound messages
// decoded from its webhooks.

// Message is what a channel adapter sends.
type Message struct {
	To           string // the recipient's address on the channel: E.164 for WhatsApp and SMS, an email address for email
	Rendered     templates.Rendered
	CallbackData string // comes back with the provider's statuses: "campaign:contact[:variant]"
	// Unsubscribe is the one-click unsubscribe URL of a marketing message on channels
	// that carry one (email's List-Unsubscribe); "" for none.
	Unsubscribe string
}

// Channel sends one message from a sender. A refused send returns a *SendError.
type Channel interface {
	Send(ctx context.Context, s Sender, m Message) (providerID string, err error)
}

// SendError is a provider's refusal, classified by the channel adapter.
type SendError struct {
	Code       int             // provider error code (0 for transport errors)
	Retryable  bool            // try again later
	RetryAfter time.Duration   // suggested wait (of a retry, or of a marketing hold); 0: the worker's backoff, or throttle.MarketingHold
	Action     string          // what the provider's code asks for: one of the Action… constants (bounded: a metric label)
	Signal     throttle.Signal // what it asks of the pace of the sender or the recipient (the throttle's terms)
	Err        error
}

func (e *SendError) Error() string {
	return fmt.Sprintf("send refused (code %d, %s): %v", e.Code, e.Action, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// Report is one status a provider's webhook gives about a message Herald sent, decoded
// by the channel adapter: Kind is events.Sent (the provider accepted it), Delivered,
// Read or Failed (with Code and Action).
type Report struct {
	Kind      events.Kind
	Key                       // campaign and contact, from the callback data
	Variant   string          // from the callback data, when it carried one
	Channel   string          // whatsapp, email, sms…
	SenderRef string          // the provider-side sender: phone-number id, From number, sending domain
	MessageID string          // the provider's message id
	Time      time.Time       // when the provider says it happened
	Code      int             // Failed: the provider's error code
	Action    string          // Failed: what the code asks for (an Action… constant)
	Signal    throttle.Signal // Failed: what it asks of the pace of the sender or the recipient
}

// Inbound is a message a contact sent on a channel. Its text is matched against the
// opt-out and opt-in keywords (STOP, START…), and on WhatsApp it opens the 24h window.
type Inbound struct {
	Channel   string
	From      string // the sender's address on the channel (E.164, email address…)
	SenderRef string // the provider-side recipient: which of our numbers or addresses
	MessageID string
	Type      string // text, button, interactive…
	Text      string
	ReplyTo   string // the provider id of the message it answers, if any
	Time      time.Time
}

// Preference is a contact's consent choice reported by the provider itself (WhatsApp's
// user_preferences stop/resume, an email one-click unsubscribe, a complaint): it goes to
// the ledger as source "provider", effective when Herald learns it.
type Preference struct {
	Channel   string
	From      string // the contact's address on the channel
	SenderRef string
	OptIn     bool   // resume (true) or stop (false)
	Purpose   string // "" means marketing
	ID        string // a stable id of the report, so that a redelivery collapses
	Proof     string // what the provider said, with its own time
	// Create: an opt-in from an address no contact has yet makes a contact known by it
	// (a LINE follow: the user id is the only identity the channel gives).
	Create bool
}

// BatchChannel is a Channel that can also send the same message to many recipients in
// one provider request (LINE's multicast). The worker groups jobs of one campaign and
// sender whose messages have the same BatchKey into batches of at most MaxBatch, and
// still claims, paces (one governor slot per message), marks and settles each contact
// on its own.
type BatchChannel interface {
	Channel
	// MaxBatch is the most messages one SendBatch call takes.
	MaxBatch() int
	// BatchKey is what messages must share to go in one request (their content).
	BatchKey(m Message) string
	// SendBatch sends ms (all with one BatchKey) and returns one result per message, in
	// order: its provider id, or its *SendError.
	SendBatch(ctx context.Context, s Sender, ms []Message) []BatchResult
}

// BatchResult is one message's outcome in a SendBatch.
type BatchResult struct {
	ProviderID string
	Err        error
}
