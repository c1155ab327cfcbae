package throttle

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ReasonUndeliverable skips a contact the provider said cannot receive messages on the
// channel (WhatsApp 131026: not on WhatsApp, an old app, terms not accepted), until its
// suppression runs out: numbers join WhatsApp later.
const ReasonUndeliverable = "undeliverable"

// DefaultUndeliverableFor is how long an undeliverable contact stays suppressed.
const DefaultUndeliverableFor = 30 * 24 * time.Hour

// Suppression keeps a contact off a channel until a time, whatever its consent.
type Suppression struct {
	Reason string    `json:"reason"`      // a skip reason code (ReasonUndeliverable)
	At     time.Time `json:"at,omitzero"` // when it was recorded
	Until  time.Time `json:"until,omitzero"`
	Proof  string    `json:"proof,omitempty"` // what the provider said, and about which message
}

// Active reports whether s keeps its contact off the channel at now.
func (s Suppression) Active(now time.Time) bool { return s.Reason != "" && now.Before(s.Until) }

func (p *Policy) suppressKey(channel string) string { return p.prefix + "suppress:" + channel }

// encode is "reason|until ms|at ms|proof" (the proof last: it may hold '|').
func (s Suppression) encode() string {
	return s.Reason + "|" + strconv.FormatInt(s.Until.UnixMilli(), 10) + "|" + strconv.FormatInt(s.At.UnixMilli(), 10) + "|" + s.Proof
}

func parseSuppression(v string) Suppression {
	parts := strings.SplitN(v, "|", 4)
	if len(parts) != 4 {
		return Suppression{}
	}
	until, err1 := strconv.ParseInt(parts[1], 10, 64)
	at, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return Suppression{}
	}
	return Suppression{Reason: parts[0], Until: time.UnixMilli(until).UTC(), At: time.UnixMilli(at).UTC(), Proof: parts[3]}
}

// Suppress keeps each contact off channel as s says (s.At zero: now). A later call
// replaces an earlier one.
func (p *Policy) Suppress(ctx context.Context, channel string, contacts []uint32, s []Suppression) error {
	if len(contacts) == 0 {
		return nil
	}
	now := p.now()
	args := make([]any, 0, 2*len(contacts))
	for i, c := range contacts {
		sup := s[i]
		if sup.At.IsZero() {
			sup.At = now
		}
		args = append(args, strconv.FormatUint(uint64(c), 10), sup.encode())
	}
	if err := p.rdb.HSet(ctx, p.suppressKey(channel), args...).Err(); err != nil {
		return fmt.Errorf("suppress contacts on %s: %w", channel, err)
	}
	return nil
}

// Unsuppress lifts contacts' suppressions on channel.
func (p *Policy) Unsuppress(ctx context.Context, channel string, contacts []uint32) error {
	if len(contacts) == 0 {
		return nil
	}
	fields := make([]string, len(contacts))
	for i, c := range contacts {
		fields[i] = strconv.FormatUint(uint64(c), 10)
	}
	if err := p.rdb.HDel(ctx, p.suppressKey(channel), fields...).Err(); err != nil {
		return fmt.Errorf("lift suppressions on %s: %w", channel, err)
	}
	return nil
}

// Suppressions returns contacts' suppressions on channel, expired ones included (check
// Active); a contact never suppressed has the zero Suppression. One round trip.
func (p *Policy) Suppressions(ctx context.Context, channel string, contacts []uint32) ([]Suppression, error) {
	out := make([]Suppression, len(contacts))
	if len(contacts) == 0 {
		return out, nil
	}
	fields := make([]string, len(contacts))
	for i, c := range contacts {
		fields[i] = strconv.FormatUint(uint64(c), 10)
	}
	vals, err := p.rdb.HMGet(ctx, p.suppressKey(channel), fields...).Result()
	if err != nil {
		return nil, fmt.Errorf("read suppressions on %s: %w", channel, err)
	}
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i] = parseSuppression(s)
		}
	}
	return out, nil
}

// CloseWindow forgets the 24h windows of contacts with sender (the provider said a
// window Herald thought open is closed: 131047). A later inbound message opens it again.
func (p *Policy) CloseWindow(ctx context.Context, sender string, contacts []uint32) error {
	if len(contacts) == 0 {
		return nil
	}
	fields := make([]string, len(contacts))
	for i, c := range contacts {
		fields[i] = strconv.FormatUint(uint64(c), 10)
	}
	if err := p.rdb.HDel(ctx, p.windowKey(sender), fields...).Err(); err != nil {
		return fmt.Errorf("close windows: %w", err)
	}
	return nil
}
