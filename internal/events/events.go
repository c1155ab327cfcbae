// Package events defines the lifecycle event that flows on herald.events and lands in
// ClickHouse: the contract between the dispatcher and webhook server (producers) and the
// analytics sink (consumer). It owns the encoding and event identity, nothing else.
package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Kind is an event type.
type Kind string

// The lifecycle of a message, in funnel order where one exists.
const (
	Queued    Kind = "queued"    // fan-out wrote the send job
	Skipped   Kind = "skipped"   // policy said no; Reason holds the code
	Deferred  Kind = "deferred"  // policy said not yet; Reason holds the code, Until the time
	Sent      Kind = "sent"      // the provider accepted it; ProviderMessageID set
	Failed    Kind = "failed"    // the provider refused or reported failure; ErrorCode set
	Delivered Kind = "delivered" // status webhook
	Read      Kind = "read"      // status webhook
	Clicked   Kind = "clicked"
	Replied   Kind = "replied"
	Converted Kind = "converted"
	OptedOut  Kind = "opted_out"
	OptedIn   Kind = "opted_in"

	// Custom is an event a customer's system posted (POST /v1/events): Name names it,
	// Properties carry its data; journeys are entered by and wait for them.
	Custom Kind = "custom"
	// TagAdded and TagRemoved say a contact got or lost a tag (Reason: the tag).
	TagAdded   Kind = "tag_added"
	TagRemoved Kind = "tag_removed"
	// Journey events: CampaignID is "journey:ID", Variant the version ("v2"); Reason is
	// the entry event, the step reached or the exit reason.
	JourneyEntered Kind = "journey_entered"
	JourneyStep    Kind = "journey_step"
	JourneyExited  Kind = "journey_exited"

	// Fallback: a campaign's send to a contact moves to the next channel of its policy.
	// Channel is the channel it moves to, FromChannel the one it leaves, Reason the
	// trigger (permanent_failure, circuit_open, not_delivered_within).
	Fallback Kind = "fallback"
)

var kinds = map[Kind]bool{Queued: true, Skipped: true, Deferred: true, Sent: true, Failed: true, Delivered: true,
	Read: true, Clicked: true, Replied: true, Converted: true, OptedOut: true, OptedIn: true,
	Custom: true, TagAdded: true, TagRemoved: true, JourneyEntered: true, JourneyStep: true, JourneyExited: true, Fallback: true}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return kinds[k] }

// ReasonFreeForm, on a sent event, marks a free-form message (not an approved template):
// the consent audit checks those against the 24-hour window.
const ReasonFreeForm = "free_form"

// Event is one row of the events table.
type Event struct {
	ID                string    `json:"id"`
	Kind              Kind      `json:"kind"`
	Time              time.Time `json:"ts"`
	CampaignID        string    `json:"campaign,omitempty"`
	ContactID         uint32    `json:"contact"`
	SenderID          string    `json:"sender,omitempty"`
	Channel           string    `json:"channel,omitempty"`
	Template          string    `json:"template,omitempty"`
	Variant           string    `json:"variant,omitempty"`
	Country           string    `json:"country,omitempty"`
	ProviderMessageID string    `json:"provider_msg_id,omitempty"`
	Reason            string    `json:"reason,omitempty"`     // skip reason code
	ErrorCode         int       `json:"error_code,omitempty"` // provider error code on failed
	Retryable         bool      `json:"retryable,omitempty"`
	ConsentRef        string    `json:"consent_ref,omitempty"`  // the ledger record a send relied on
	Until             time.Time `json:"until,omitzero"`         // on deferred: when the job is due again
	OrderID           string    `json:"order_id,omitempty"`     // on converted: the order
	Value             float64   `json:"value,omitempty"`        // on converted: the order's value, in Currency
	Currency          string    `json:"currency,omitempty"`     // on converted: ISO 4217 code, e.g. THB
	Name              string    `json:"name,omitempty"`         // on custom: the event's name
	FromChannel       string    `json:"from_channel,omitempty"` // on fallback: the channel the send leaves
	// Properties are a custom event's data: a JSON object of strings (EncodeProperties),
	// kept as text so that an Event stays comparable.
	Properties string `json:"properties,omitempty"`
}

// EncodeProperties writes properties as Event.Properties holds them ("" for none).
func EncodeProperties(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// Props decodes Properties (nil when there are none or they do not parse).
func (e Event) Props() map[string]string {
	if e.Properties == "" {
		return nil
	}
	var m map[string]string
	if json.Unmarshal([]byte(e.Properties), &m) != nil {
		return nil
	}
	return m
}

// ID is the identity of an event. Lifecycle events are deterministic in (campaign,
// contact, kind) so that a redelivered job, a duplicated webhook or a status that both the
// worker and the webhook report all collapse to one row; discriminator separates events
// that may legitimately repeat (a click on another link, another conversion).
func ID(campaign string, contact uint32, kind Kind, discriminator string) string {
	h := sha256.New()
	h.Write([]byte(campaign))
	h.Write([]byte{0})
	h.Write(strconv.AppendUint(nil, uint64(contact), 10))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(discriminator))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// New returns an event with its deterministic ID set.
func New(kind Kind, campaign string, contact uint32, at time.Time) Event {
	return Event{ID: ID(campaign, contact, kind, ""), Kind: kind, Time: at.UTC(), CampaignID: campaign, ContactID: contact}
}

// Marshal encodes e for Kafka (as encoding/json would; see AppendJSON).
func (e Event) Marshal() ([]byte, error) { return e.AppendJSON(make([]byte, 0, 256)) }

// Unmarshal decodes and validates an event.
func Unmarshal(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if e.ID == "" {
		return Event{}, fmt.Errorf("decode event: missing id")
	}
	if !e.Kind.Valid() {
		return Event{}, fmt.Errorf("decode event %s: unknown kind %q", e.ID, e.Kind)
	}
	if e.Time.IsZero() {
		return Event{}, fmt.Errorf("decode event %s: missing ts", e.ID)
	}
	return e, nil
}
