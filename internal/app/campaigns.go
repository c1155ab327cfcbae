package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// FieldError is input a use case refuses, naming the field as the JSON does
// (snake_case: segment, fallback_template, max_error_rate): the API points at it, the
// CLI names the flag (--segment, --fallback-template, --max-error-rate).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, a...)}
}

// CreateCampaign checks a draft campaign against what it names (its segment parses,
// its templates and senders exist, a fallback is an approved WhatsApp template,
// tracked links have their key) and stores it. Refused input is a *FieldError.
func CreateCampaign(ctx context.Context, d *Deps, comp *Components, cp dispatcher.Campaign) (dispatcher.Campaign, error) {
	cp, err := CheckCampaign(ctx, d, comp, cp)
	if err != nil {
		return cp, err
	}
	return comp.Campaigns.Create(ctx, cp, comp.Senders)
}

// CheckCampaign makes CreateCampaign's checks without storing anything, and returns the
// campaign with its channel filled in from its senders (a schedule's runs are checked
// once, when the schedule is created).
func CheckCampaign(ctx context.Context, d *Deps, comp *Components, cp dispatcher.Campaign) (dispatcher.Campaign, error) {
	if cp.Segment == "" {
		return cp, fieldErr("segment", "a segment expression is required, e.g. 'vip and not churned'")
	}
	if _, err := segments.Parse(cp.Segment); err != nil {
		return cp, &FieldError{Field: "segment", Err: err}
	}
	if cp.Template == "" {
		return cp, fieldErr("template", "a template name is required")
	}
	if len(cp.Senders) == 0 {
		return cp, fieldErr("senders", "at least one sender id is required")
	}
	if r := cp.MaxErrorRate; r > 1 || (r < 0 && r != -1) {
		return cp, fieldErr("max_error_rate", "max error rate %v: want a share between 0 and 1, or -1", r)
	}
	if !(cp.Holdout >= 0 && cp.Holdout <= 0.5) {
		return cp, fieldErr("holdout", "holdout %v: want a share between 0 and 0.5", cp.Holdout)
	}
	switch cp.Routing {
	case "", dispatcher.RouteRoundRobin, dispatcher.RouteCountry:
	default:
		return cp, fieldErr("routing", "routing %q: want %s or %s", cp.Routing, dispatcher.RouteRoundRobin, dispatcher.RouteCountry)
	}
	if cp.QuietHours != "" {
		if _, err := throttle.ParseQuietHours(cp.QuietHours); err != nil {
			return cp, &FieldError{Field: "quiet_hours", Err: err}
		}
	}
	if cp.AllowedDays != "" {
		if _, err := throttle.ParseDays(cp.AllowedDays); err != nil {
			return cp, &FieldError{Field: "allowed_days", Err: err}
		}
	}
	if _, tracker, err := d.Links(); err != nil || (cp.TrackLinks && tracker == nil) {
		return cp, fieldErr("track_links", "tracked links need HERALD_CLICK_KEY and HERALD_CLICK_BASE_URL (the same on serve and the workers): %v", err)
	}
	if _, err := comp.Templates.Get(ctx, cp.Template); err != nil {
		if errors.Is(err, templates.ErrNotFound) {
			return cp, fieldErr("template", "%q: %w (add it with `herald templates add FILE`)", cp.Template, err)
		}
		return cp, err
	}
	if fb := cp.FallbackTemplate; fb != "" {
		t, err := comp.Templates.Get(ctx, fb)
		if errors.Is(err, templates.ErrNotFound) {
			return cp, fieldErr("fallback_template", "%q: %w (add it with `herald templates add FILE`)", fb, err)
		}
		if err != nil {
			return cp, err
		}
		if t.Kind != templates.KindWhatsAppTemplate {
			return cp, fieldErr("fallback_template", "%q is a %s template: it must be an approved WhatsApp template (kind whatsapp_template), which may be sent outside the 24h window", fb, t.Kind)
		}
	}
	for _, id := range cp.Senders {
		s, err := comp.Senders.Get(ctx, id)
		if errors.Is(err, dispatcher.ErrNotFound) {
			return cp, fieldErr("senders", "%q: %w (add it with `herald senders add`)", id, err)
		}
		if err != nil {
			return cp, err
		}
		if cp.Channel != "" && s.Channel != cp.Channel {
			return cp, fieldErr("senders", "sender %q sends %s, not %s: a campaign's senders are all of its channel", id, s.Channel, cp.Channel)
		}
		if cp.Channel == "" {
			cp.Channel = s.Channel
		}
	}
	if err := checkFallback(ctx, comp, &cp); err != nil {
		return cp, err
	}
	return cp, nil
}

// Finished reports whether a campaign will change no more (completed or cancelled).
func Finished(st dispatcher.Status) bool {
	return st.State == dispatcher.Completed || st.State == dispatcher.Cancelled
}

// FollowCampaign reads a campaign's status every interval and calls fn with each,
// changed telling whether it differs from the last (the first one does), until the
// campaign is finished (fn has seen its last status), fn returns an error, or ctx ends.
func FollowCampaign(ctx context.Context, c *dispatcher.Campaigns, id string, every time.Duration, fn func(st dispatcher.Status, changed bool) error) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last dispatcher.Status
	for first := true; ; first = false {
		st, err := c.Status(ctx, id)
		if err != nil {
			return err
		}
		changed := first || !sameProgress(st, last)
		if err := fn(st, changed); err != nil {
			return err
		}
		last = st
		if Finished(st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func sameProgress(a, b dispatcher.Status) bool {
	return a.State == b.State && a.Audience == b.Audience && a.Queued == b.Queued && a.Sent == b.Sent &&
		a.Skipped == b.Skipped && a.Failed == b.Failed && a.Done == b.Done && a.FanoutDone == b.FanoutDone &&
		a.PauseReason == b.PauseReason
}
