package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRotationGrace is how long a rotated-out secret still signs deliveries.
const DefaultRotationGrace = 24 * time.Hour

// Signatures is the signature header's value for a delivery at ts: "v1=<hex>" with the
// subscription's secret and, while a rotated-out secret is in its grace period, a
// second ",v1=<hex>" with it (as Stripe does): a receiver accepts the delivery when
// any v1 matches, so it can change its secret at any time within the grace period.
func Signatures(sub Subscription, ts int64, body []byte, now time.Time) string {
	sig := Sign(sub.Secret, ts, body)
	if sub.PreviousSecret != "" && now.Before(sub.PreviousUntil) {
		sig += "," + Sign(sub.PreviousSecret, ts, body)
	}
	return sig
}

// RotateSecret gives a subscription a new signing secret, returned this once; the old
// one keeps signing deliveries (next to the new) for grace (DefaultRotationGrace when
// 0; a negative grace ends the old one at once).
func (s *Store) RotateSecret(ctx context.Context, id string, grace time.Duration) (Created, error) {
	sub, err := s.Get(ctx, id)
	if err != nil {
		return Created{}, err
	}
	if grace == 0 {
		grace = DefaultRotationGrace
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret := "whsec_" + base64.RawURLEncoding.EncodeToString(b)
	until := s.now().UTC().Add(max(grace, 0)).Truncate(time.Millisecond)
	prev := sub.Secret
	if grace < 0 {
		prev = ""
	}
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.subKey(id), "secret", secret, "previous_secret", prev, "previous_until", until.UnixMilli())
		p.Incr(ctx, s.versionKey())
		return nil
	}); err != nil {
		return Created{}, fmt.Errorf("rotate webhook secret: %w", err)
	}
	sub.Secret, sub.PreviousSecret, sub.PreviousUntil = secret, prev, time.Time{}
	if prev != "" {
		sub.PreviousUntil = until
	}
	return Created{Subscription: sub, Secret: secret}, nil
}

// SetActive pauses (active false) or resumes a subscription. While paused its events
// are still queued, not sent; on resume the backlog goes out (an event older than the
// 72 h retry window by then is given up as its retries would be).
func (s *Store) SetActive(ctx context.Context, id string, active bool) (Subscription, error) {
	sub, err := s.Get(ctx, id)
	if err != nil {
		return Subscription{}, err
	}
	v := "0"
	if active {
		v = "1"
	}
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.subKey(id), "active", v)
		p.Incr(ctx, s.versionKey())
		return nil
	}); err != nil {
		return Subscription{}, fmt.Errorf("pause or resume webhook subscription: %w", err)
	}
	sub.Active = active
	return sub, nil
}

func previousFrom(sub *Subscription, m map[string]string) {
	ms, _ := strconv.ParseInt(m["previous_until"], 10, 64)
	if m["previous_secret"] != "" && ms > 0 {
		sub.PreviousSecret, sub.PreviousUntil = m["previous_secret"], time.UnixMilli(ms).UTC()
	}
}
