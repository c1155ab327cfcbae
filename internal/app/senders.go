package app

import (
	"context"
	"strings"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// SaveSender checks a sender and stores it (a new one, or the same id's new settings).
// Refused input is a *FieldError naming the JSON field the check is about.
func SaveSender(ctx context.Context, comp *Components, s dispatcher.Sender) (dispatcher.Sender, error) {
	if s.ID == "" {
		s.ID = s.PhoneNumberID
	}
	if s.ID == "" {
		return s, fieldErr("id", "give the sender an id (or, for WhatsApp, its phone_number_id)")
	}
	if err := s.Validate(); err != nil {
		return s, &FieldError{Field: senderField(err.Error()), Err: err}
	}
	if err := comp.Senders.Put(ctx, s); err != nil {
		return s, err
	}
	return s, nil
}

// senderField guesses the field a sender's Validate refused by its words.
func senderField(msg string) string {
	for _, f := range []struct{ word, field string }{{"sender id", "id"}, {"channel", "channel"}, {"token", "token"},
		{"phone-number id", "phone_number_id"}, {"rate", "rate"}, {"country", "countries"}, {"setting", "settings"},
		{"caps", "per_minute"}, {"per-minute", "per_minute"}, {"warm", "warm_up_burst"}} {
		if strings.Contains(msg, f.word) {
			return f.field
		}
	}
	return "id"
}

// SenderState is a sender and its governor's live state (senders show, hold, resume;
// GET /v1/senders/{id}/governor).
type SenderState struct {
	Sender   dispatcher.Sender      `json:"sender"`
	Governor throttle.GovernorState `json:"governor"`
	// TierUsed counts the distinct recipients against the sender's daily tier now (the
	// last 24 h), whether or not it has a tier.
	TierUsed int64 `json:"tier_used"`
}

// SenderGovernor runs do (may be nil) on a sender's governor, then returns the sender
// and its governor's state. An unknown sender wraps dispatcher.ErrNotFound.
func SenderGovernor(ctx context.Context, comp *Components, id string, do func(context.Context, *throttle.Governor) error) (SenderState, error) {
	s, err := comp.Senders.Get(ctx, id)
	if err != nil {
		return SenderState{}, err
	}
	if do != nil {
		if err := do(ctx, comp.Governor); err != nil {
			return SenderState{}, err
		}
	}
	st, err := comp.Governor.State(ctx, id)
	if err != nil {
		return SenderState{}, err
	}
	out := SenderState{Sender: s, Governor: st}
	if comp.Policy != nil {
		if out.TierUsed, err = comp.Policy.TierUsed(ctx, id); err != nil {
			return SenderState{}, err
		}
	}
	return out, nil
}

// HoldSender stops a sender's sends until until (its jobs wait, nothing is dropped).
func HoldSender(ctx context.Context, comp *Components, id string, until time.Time) (SenderState, error) {
	return SenderGovernor(ctx, comp, id, func(ctx context.Context, g *throttle.Governor) error { return g.Hold(ctx, id, until) })
}

// ResumeSender lifts a sender's hold.
func ResumeSender(ctx context.Context, comp *Components, id string) (SenderState, error) {
	return SenderGovernor(ctx, comp, id, func(ctx context.Context, g *throttle.Governor) error { return g.Resume(ctx, id) })
}

// DryRun is a campaign's dry run: who would be sent, skipped and why, per sender, and
// the ETA from the senders' rates; it changes nothing.
func DryRun(ctx context.Context, comp *Components, id string) (dispatcher.DryRun, error) {
	return comp.Campaigns.DryRun(ctx, id, templates.NewCache(comp.Templates, templates.CacheConfig{}), comp.Policy, comp.Senders)
}
