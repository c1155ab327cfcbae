package app

import (
	"context"
	"errors"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// Channel failover's wiring: the records every worker and serve share (which contacts
// fell back, whose first send was delivered) and the per-sender circuit breakers.

// failover returns the failover records, requests going to the delayed set.
func (d *Deps) failover(c *Components) *dispatcher.Failover {
	rdb, err := d.Redis()
	if err != nil {
		return nil
	}
	return dispatcher.NewFailover(rdb, d.Cfg.Prefix, c.Delayed)
}

// breaker returns the per-(channel, sender) circuit breakers, tuned by Config.Breaker.
func (d *Deps) breaker() *dispatcher.Breaker {
	rdb, err := d.Redis()
	if err != nil {
		return nil
	}
	return dispatcher.NewBreaker(rdb, d.Cfg.Prefix, d.Cfg.Breaker)
}

// checkFallback checks a campaign's channel policy: each fallback channel's senders send
// it, its template (or the campaign's) exists and is of that channel, the triggers are
// known; it fills in the default triggers.
func checkFallback(ctx context.Context, comp *Components, cp *dispatcher.Campaign) error {
	if !cp.HasFailover() && len(cp.FallbackOn) == 0 && cp.NotDeliveredWithinMS == 0 {
		return nil
	}
	for _, cs := range cp.Fallback {
		name := cs.Template
		if name == "" {
			name = cp.Template
		}
		t, err := comp.Templates.Get(ctx, name)
		if errors.Is(err, templates.ErrNotFound) {
			return fieldErr("fallback", "channel %s: template %q: %w (add it with `herald templates add FILE`)", cs.Channel, name, err)
		}
		if err != nil {
			return err
		}
		if t.Channel != "" && t.Channel != cs.Channel {
			return fieldErr("fallback", "channel %s: template %q is a %s template (give the channel its own: --template-for %s=NAME)", cs.Channel, name, t.Channel, cs.Channel)
		}
	}
	if cp.Channel == "" {
		cp.Channel = "whatsapp"
	}
	err := cp.ValidatePolicy(func(id string) (dispatcher.Sender, error) { return comp.Senders.Get(ctx, id) })
	if err != nil {
		return &FieldError{Field: "fallback", Err: err}
	}
	return nil
}
