package dispatcher

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/throttle"
)

// Settlement is a provider status naming one (campaign, contact): proof that the
// provider accepted its message.
type Settlement struct {
	Key
	Channel       string
	PhoneNumberID string
	MessageID     string
	Variant       string
}

// Settle turns the statuses of sends still in doubt (their worker died before recording
// them) into their sent events, once per key, and returns those events and keys: publish
// the events, then record the keys' outcome with Tracker.Finish, so that a failed publish
// leaves them in doubt for the provider's retry of the webhook. Each event names the
// consent record, purpose and template its send's policy check relied on (carried by the
// "sending" mark) and is marked free-form when it was, so the audit checks it like any
// other send. A mark written before marks carried proofs falls back to the marketing
// consent in force now. One round trip, two for such old marks.
func Settle(ctx context.Context, t *Tracker, policy *throttle.Policy, sts []Settlement, now time.Time) ([]kafka.Message, []Key, error) {
	return SettleNoting(ctx, t, policy, sts, now, nil)
}

// SettleNoting is Settle, and tells finished of every key found finished already (its
// later statuses have nothing to settle: a caller may skip them without asking Redis).
func SettleNoting(ctx context.Context, t *Tracker, policy *throttle.Policy, sts []Settlement, now time.Time, finished func(Key)) ([]kafka.Message, []Key, error) {
	if len(sts) == 0 {
		return nil, nil, nil
	}
	keys := make([]Key, len(sts))
	for i, st := range sts {
		keys[i] = st.Key
	}
	doubt, err := t.InDoubt(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	seen := map[Key]bool{}
	var todo []int // indexes in sts
	var unproven []uint32
	for i, st := range sts {
		if doubt[i].Finished && finished != nil {
			finished(st.Key)
		}
		if !doubt[i].InDoubt || seen[st.Key] {
			continue
		}
		seen[st.Key] = true
		todo = append(todo, i)
		if !doubt[i].Proven {
			unproven = append(unproven, st.Contact)
		}
	}
	var legacy []throttle.State
	if len(unproven) > 0 {
		if legacy, err = policy.Consent(ctx, "whatsapp", "marketing", unproven); err != nil {
			return nil, nil, err
		}
	}
	var evs []kafka.Message
	var settled []Key
	for _, i := range todo {
		st, d := sts[i], doubt[i]
		// Stamped when the send started (its mark's time, just before the request): what
		// the audit compares consent with; a consent change recorded after the send, such
		// as a provider's opt-out learnt from its refusal, does not put it in doubt. A
		// mark without a time is stamped now (never earlier than the real send). A
		// webhook racing a live worker settles the same event id; duplicates collapse.
		at := now
		if !d.Started.IsZero() {
			at = d.Started
		}
		ev := events.New(events.Sent, st.Campaign, st.Contact, at)
		ev.SenderID, ev.Channel, ev.ProviderMessageID, ev.Variant = st.PhoneNumberID, st.Channel, st.MessageID, st.Variant
		ev.Reason = "settled_by_webhook"
		if d.Proven {
			ev.ConsentRef, ev.Template = d.Proof.ConsentRef, d.Proof.Template
			if d.Proof.FreeForm {
				ev.Reason = events.ReasonFreeForm // the audit checks these against the 24h window
			}
		} else {
			if s := legacy[0]; s.Granted {
				ev.ConsentRef = s.RecordID
			}
			legacy = legacy[1:]
		}
		b, _ := ev.Marshal()
		evs = append(evs, kafka.Message{Key: kafkax.ContactKey(st.Contact), Value: b})
		settled = append(settled, st.Key)
	}
	return evs, settled, nil
}
