// Package webhooks owns Herald's outbound webhooks: subscriptions (a URL, the event kinds
// it wants, an optional campaign filter, a signing secret shown once), the deliverer that
// turns herald.events into signed POSTs, its retries (exponential backoff with jitter for
// up to 72 h), the bounded delivery log, and replay. It does not own the HTTP API or CLI
// that manage subscriptions (internal/api, internal/cli), nor the event contract
// (internal/events).
//
// Delivery is at least once: a receiver may get a delivery twice (when its answer was
// lost or the deliverer died mid-POST) and dedupes by Herald-Webhook-Id, the delivery's
// id, which is the same for every attempt and replay of one event to one subscription.
//
// Redis keys (P is the prefix; {webhooks} holds the registry, {wh:ID} one subscription's
// deliveries, so a Redis Cluster spreads subscriptions over its shards):
//
//	P{webhooks}:sub:ID   HASH: url, kinds, campaigns (comma-separated), secret, created (unix ms), active
//	P{webhooks}:subs     ZSET: subscription ids by creation time
//	P{webhooks}:version  STRING: bumped on every subscription change (deliverers reload)
//	P{wh:ID}:alive       STRING: present while the subscription exists
//	P{wh:ID}:d:DID       HASH: one delivery (sub, event, kind, body, created, deadline, attempts,
//	                     state, status, latency_us, error, next, delivered, replays); expires
//	                     MaxAge + Retention after creation
//	P{wh:ID}:due         ZSET: pending deliveries by due time (unix ms); a claimed one is
//	                     pushed a lease ahead, so a dead deliverer's claim comes due again
//	P{wh:ID}:log         ZSET: deliveries by creation time (the log), trimmed to Retention
//	                     and LogLimit entries
//
// Start with Store (subscriptions, log, replay) and Deliverer (Run).
package webhooks

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/events"
)

// Kinds a subscription may ask for.
var Kinds = []events.Kind{events.Sent, events.Delivered, events.Read, events.Clicked, events.Replied,
	events.Converted, events.OptedOut, events.Failed}

// Errors.
var (
	ErrNotFound = errors.New("no such webhook subscription")
	ErrInvalid  = errors.New("invalid webhook subscription")
)

// FieldError is bad input on one field (JSON name).
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Subscription is one receiver of events.
type Subscription struct {
	ID          string        `json:"id"`
	URL         string        `json:"url"`
	Kinds       []events.Kind `json:"kinds"`
	Campaigns   []string      `json:"campaigns"` // empty: every campaign (and events of none, such as opt-outs)
	Description string        `json:"description,omitempty"`
	Active      bool          `json:"active"` // false: paused (events are queued, not sent)
	Created     time.Time     `json:"created_at,omitzero"`
	Secret      string        `json:"-"`
	// PreviousSecret is the secret rotated out, which still signs deliveries (a second
	// v1) until PreviousUntil.
	PreviousSecret string    `json:"-"`
	PreviousUntil  time.Time `json:"previous_secret_until,omitzero"`
}

// Created is a new subscription with its signing secret, shown this once.
type Created struct {
	Subscription
	Secret string `json:"secret"`
}

// Spec is what Create needs.
type Spec struct {
	URL         string        `json:"url"`
	Kinds       []events.Kind `json:"kinds"`
	Campaigns   []string      `json:"campaigns,omitempty"`
	Description string        `json:"description,omitempty"`
}

// Validate checks a spec: an absolute http or https URL with a host and no user info,
// one or more known kinds (no repeats), plain campaign ids.
func (s Spec) Validate() error {
	u, err := url.Parse(s.URL)
	switch {
	case strings.TrimSpace(s.URL) == "":
		return &FieldError{"url", "give the receiver's URL, e.g. https://crm.example.com/herald"}
	case err != nil:
		return &FieldError{"url", "not a URL: " + err.Error()}
	case u.Scheme != "http" && u.Scheme != "https":
		return &FieldError{"url", fmt.Sprintf("scheme %q: want http or https", u.Scheme)}
	case u.Host == "" || u.Hostname() == "":
		return &FieldError{"url", "no host: want an absolute URL such as https://crm.example.com/herald"}
	case u.User != nil:
		return &FieldError{"url", "credentials in the URL are not accepted: verify the signature instead"}
	case u.Fragment != "":
		return &FieldError{"url", "a URL fragment is never sent: remove it"}
	case len(s.URL) > 2048:
		return &FieldError{"url", "longer than 2048 characters"}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return &FieldError{"url", "port " + p + ": want 1-65535"}
		}
	}
	if strings.ContainsAny(u.Hostname(), " \t") || (net.ParseIP(u.Hostname()) == nil && strings.ContainsAny(u.Hostname(), "[]")) {
		return &FieldError{"url", "malformed host"}
	}
	if len(s.Kinds) == 0 {
		return &FieldError{"kinds", "name at least one of " + kindList()}
	}
	for i, k := range s.Kinds {
		if !slices.Contains(Kinds, k) {
			return &FieldError{fmt.Sprintf("kinds/%d", i), fmt.Sprintf("%q: want one of %s", k, kindList())}
		}
		if slices.Contains(s.Kinds[:i], k) {
			return &FieldError{fmt.Sprintf("kinds/%d", i), fmt.Sprintf("%q is named twice", k)}
		}
	}
	for i, c := range s.Campaigns {
		if c == "" || len(c) > 64 || strings.ContainsAny(c, ", \t\n") {
			return &FieldError{fmt.Sprintf("campaigns/%d", i), "want a campaign id"}
		}
	}
	if len(s.Description) > 500 {
		return &FieldError{"description", "longer than 500 characters"}
	}
	return nil
}

func kindList() string {
	var s []string
	for _, k := range Kinds {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

// Wants reports whether the subscription takes e (paused or not).
func (s *Subscription) Wants(e events.Event) bool {
	if !slices.Contains(s.Kinds, e.Kind) { // a paused subscription's events wait for its resume
		return false
	}
	return len(s.Campaigns) == 0 || slices.Contains(s.Campaigns, e.CampaignID)
}

// Store keeps subscriptions and deliveries in Redis.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
	// MaxAge is how long a delivery is retried (72 h); Retention how long it stays in
	// the log after that (7 days); LogLimit the most log entries per subscription.
	MaxAge, Retention time.Duration
	LogLimit          int64
}

// NewStore returns the store under prefix.
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix, now: time.Now, MaxAge: 72 * time.Hour, Retention: 7 * 24 * time.Hour, LogLimit: 100000}
}

// WithClock sets the clock (tests).
func (s *Store) WithClock(now func() time.Time) *Store { s.now = now; return s }

func (s *Store) subKey(id string) string { return s.prefix + "{webhooks}:sub:" + id }
func (s *Store) subsKey() string         { return s.prefix + "{webhooks}:subs" }
func (s *Store) versionKey() string      { return s.prefix + "{webhooks}:version" }

// A subscription's deliveries share its own hash tag, so a Redis Cluster spreads
// subscriptions over its shards.
func (s *Store) tag(sub string) string        { return s.prefix + "{wh:" + sub + "}:" }
func (s *Store) aliveKey(sub string) string   { return s.tag(sub) + "alive" }
func (s *Store) delKey(sub, id string) string { return s.tag(sub) + "d:" + id }
func (s *Store) dueKey(sub string) string     { return s.tag(sub) + "due" }
func (s *Store) logKey(sub string) string     { return s.tag(sub) + "log" }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Create validates spec and stores a subscription with a new signing secret.
func (s *Store) Create(ctx context.Context, spec Spec) (Created, error) {
	if err := spec.Validate(); err != nil {
		return Created{}, err
	}
	if err := CheckTarget(ctx, spec.URL, nil); err != nil {
		return Created{}, err
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	now := s.now().UTC().Truncate(time.Millisecond)
	sub := Subscription{ID: "wh_" + randomHex(8), URL: spec.URL, Kinds: slices.Clone(spec.Kinds), Campaigns: slices.Clone(spec.Campaigns),
		Description: spec.Description, Active: true, Created: now, Secret: "whsec_" + base64.RawURLEncoding.EncodeToString(b)}
	if sub.Campaigns == nil {
		sub.Campaigns = []string{}
	}
	kinds := make([]string, len(sub.Kinds))
	for i, k := range sub.Kinds {
		kinds[i] = string(k)
	}
	if err := s.rdb.Set(ctx, s.aliveKey(sub.ID), "1", 0).Err(); err != nil {
		return Created{}, fmt.Errorf("store webhook subscription: %w", err)
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.subKey(sub.ID), "url", sub.URL, "kinds", strings.Join(kinds, ","), "campaigns", strings.Join(sub.Campaigns, ","),
			"description", sub.Description, "secret", sub.Secret, "created", now.UnixMilli(), "active", "1")
		p.ZAdd(ctx, s.subsKey(), redis.Z{Score: float64(now.UnixMilli()), Member: sub.ID})
		p.Incr(ctx, s.versionKey())
		return nil
	})
	if err != nil {
		return Created{}, fmt.Errorf("store webhook subscription: %w", err)
	}
	return Created{Subscription: sub, Secret: sub.Secret}, nil
}

func subFrom(id string, m map[string]string) Subscription {
	ms, _ := strconv.ParseInt(m["created"], 10, 64)
	sub := Subscription{ID: id, URL: m["url"], Campaigns: []string{}, Description: m["description"], Active: m["active"] == "1",
		Created: time.UnixMilli(ms).UTC(), Secret: m["secret"]}
	previousFrom(&sub, m)
	for _, k := range strings.Split(m["kinds"], ",") {
		if k != "" {
			sub.Kinds = append(sub.Kinds, events.Kind(k))
		}
	}
	for _, c := range strings.Split(m["campaigns"], ",") {
		if c != "" {
			sub.Campaigns = append(sub.Campaigns, c)
		}
	}
	return sub
}

// Get returns a subscription (with its secret, for the deliverer; its JSON never shows it).
func (s *Store) Get(ctx context.Context, id string) (Subscription, error) {
	if id == "" || strings.ContainsAny(id, "{}: ") {
		return Subscription{}, ErrNotFound
	}
	m, err := s.rdb.HGetAll(ctx, s.subKey(id)).Result()
	if err != nil {
		return Subscription{}, fmt.Errorf("get webhook subscription: %w", err)
	}
	if len(m) == 0 {
		return Subscription{}, ErrNotFound
	}
	return subFrom(id, m), nil
}

// List returns every subscription, oldest first.
func (s *Store) List(ctx context.Context) ([]Subscription, error) {
	ids, err := s.rdb.ZRange(ctx, s.subsKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list webhook subscriptions: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.subKey(id))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list webhook subscriptions: %w", err)
	}
	out := []Subscription{}
	for i, id := range ids {
		if m := cmds[i].Val(); len(m) > 0 {
			out = append(out, subFrom(id, m))
		}
	}
	return out, nil
}

// Version is bumped by every subscription change.
func (s *Store) Version(ctx context.Context) (int64, error) {
	v, err := s.rdb.Get(ctx, s.versionKey()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// Delete removes a subscription with its pending deliveries and its log.
func (s *Store) Delete(ctx context.Context, id string) error {
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	// The marker first: from then on no attempt in flight queues its delivery again.
	// Delivery hashes expire on their own (MaxAge + Retention).
	if err := s.rdb.Del(ctx, s.aliveKey(id)).Err(); err != nil {
		return fmt.Errorf("delete webhook subscription: %w", err)
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.subKey(id))
		p.ZRem(ctx, s.subsKey(), id)
		p.Incr(ctx, s.versionKey())
		return nil
	})
	if err == nil {
		err = s.rdb.Del(ctx, s.dueKey(id), s.logKey(id)).Err()
	}
	if err != nil {
		return fmt.Errorf("delete webhook subscription: %w", err)
	}
	return nil
}

// DeliveryID is the id of the delivery of event to sub: the same for every attempt
// and replay (Herald-Webhook-Id).
func DeliveryID(sub, event string) string {
	h := sha256.Sum256([]byte(sub + "\x00" + event))
	return "whd_" + hex.EncodeToString(h[:12])
}

// Delivery states.
const (
	StatePending   = "pending"   // waiting for its first attempt or a retry
	StateDelivered = "delivered" // the receiver answered 2xx
	StateFailed    = "failed"    // retried until MaxAge without a 2xx
)

// Delivery is one event for one subscription, as the log shows it.
type Delivery struct {
	ID           string      `json:"id"`
	Subscription string      `json:"subscription_id"`
	EventID      string      `json:"event_id"`
	Kind         events.Kind `json:"kind"`
	State        string      `json:"state"`
	Attempts     int         `json:"attempts"`
	StatusCode   int         `json:"status_code,omitempty"` // of the last attempt (0: no answer)
	Error        string      `json:"error,omitempty"`       // of the last attempt
	LatencyMS    float64     `json:"latency_ms,omitempty"`  // of the last attempt
	Created      time.Time   `json:"created_at,omitzero"`
	LastAttempt  time.Time   `json:"last_attempt_at,omitzero"`
	NextAttempt  time.Time   `json:"next_attempt_at,omitzero"` // pending only
	DeliveredAt  time.Time   `json:"delivered_at,omitzero"`
	body         []byte
	deadline     time.Time
	replays      string // the replay count when claimed: a replay meanwhile keeps the delivery due
}

func deliveryFrom(id string, m map[string]string) Delivery {
	t := func(f string) time.Time {
		n, _ := strconv.ParseInt(m[f], 10, 64)
		if n <= 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	d := Delivery{ID: id, Subscription: m["sub"], EventID: m["event"], Kind: events.Kind(m["kind"]), State: m["state"], Error: m["error"],
		Created: t("created"), LastAttempt: t("last"), DeliveredAt: t("delivered"), body: []byte(m["body"]), deadline: t("deadline"), replays: m["replays"]}
	d.Attempts, _ = strconv.Atoi(m["attempts"])
	d.StatusCode, _ = strconv.Atoi(m["status"])
	us, _ := strconv.ParseInt(m["latency_us"], 10, 64)
	d.LatencyMS = float64(us) / 1000
	if d.State == StatePending {
		d.NextAttempt = t("next")
	}
	return d
}

// enqueue stores a delivery and makes it due now, unless it exists (a redelivered
// event): KEYS d, due, log; ARGV id, sub, event, kind, body, now, deadline, ttl ms, log limit, log min score.
var enqueueScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'sub', ARGV[2], 'event', ARGV[3], 'kind', ARGV[4], 'body', ARGV[5], 'created', ARGV[6],
  'deadline', ARGV[7], 'attempts', 0, 'state', 'pending', 'next', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[10])
local n = redis.call('ZCARD', KEYS[3])
if n > tonumber(ARGV[9]) then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - tonumber(ARGV[9]) - 1) end
return 1
`)

// pending is a delivery to make: enqueue stores many in one round trip.
type pending struct {
	sub   string
	event events.Event
	body  []byte
}

// enqueue stores deliveries (idempotently) and makes them due; it returns how many
// were new.
func (s *Store) enqueue(ctx context.Context, ps []pending) (int, error) {
	if len(ps) == 0 {
		return 0, nil
	}
	now := s.now()
	ttl := (s.MaxAge + s.Retention).Milliseconds()
	minLog := now.Add(-(s.MaxAge + s.Retention)).UnixMilli()
	cmds := make([]*redis.Cmd, len(ps))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, x := range ps {
			id := DeliveryID(x.sub, x.event.ID)
			cmds[i] = enqueueScript.Eval(ctx, p, []string{s.delKey(x.sub, id), s.dueKey(x.sub), s.logKey(x.sub)},
				id, x.sub, x.event.ID, string(x.event.Kind), x.body, now.UnixMilli(), now.Add(s.MaxAge).UnixMilli(), ttl, s.LogLimit, minLog)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("enqueue webhook deliveries: %w", err)
	}
	n := 0
	for _, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			n++
		}
	}
	return n, nil
}

// claim takes up to n due deliveries of sub, pushes them a lease ahead and returns
// each id with its fields (an id whose delivery is gone or settled is dropped): KEYS due;
// ARGV now, lease until, n, the delivery key prefix (the same hash tag as due, so the
// delivery keys it builds are in due's cluster slot).
var claimScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HGETALL', ARGV[4] .. id)
  if #f == 0 or redis.call('HGET', ARGV[4] .. id, 'state') ~= 'pending' then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = f
  end
end
return out
`)

func (s *Store) claim(ctx context.Context, sub string, n int, lease time.Duration) ([]Delivery, error) {
	now := s.now()
	res, err := claimScript.Run(ctx, s.rdb, []string{s.dueKey(sub)}, now.UnixMilli(), now.Add(lease).UnixMilli(), n, s.delKey(sub, "")).Slice()
	if err != nil || len(res) == 0 {
		return nil, err
	}
	out := make([]Delivery, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		id, _ := res[i].(string)
		fields, _ := res[i+1].([]any)
		m := make(map[string]string, len(fields)/2)
		for j := 0; j+1 < len(fields); j += 2 {
			k, _ := fields[j].(string)
			v, _ := fields[j+1].(string)
			m[k] = v
		}
		out = append(out, deliveryFrom(id, m))
	}
	return out, nil
}

// attempt is the outcome of one POST.
type attempt struct {
	status     int
	err        string
	latency    time.Duration
	at         time.Time
	retryAfter time.Duration // the receiver's Retry-After, if any
}

// outcome is an attempt to record: delivered, or due again at next, or failed for
// good when next is zero.
type outcome struct {
	d    Delivery
	a    attempt
	next time.Time
}

func (o outcome) state() string {
	switch {
	case o.a.status >= 200 && o.a.status < 300:
		return StateDelivered
	case o.next.IsZero():
		return StateFailed
	}
	return StatePending
}

// recordScript stores an attempt: KEYS d, due, alive; ARGV id, state, status, error,
// latency us, at ms, next ms, the replay count when claimed. A delivery of a deleted
// subscription is not queued again; one replayed while in flight stays due (the
// replay wins over the attempt's outcome).
var recordScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'error', ARGV[4], 'latency_us', ARGV[5], 'last', ARGV[6])
if (redis.call('HGET', KEYS[1], 'replays') or '') ~= ARGV[8] then return 2 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
if ARGV[2] == 'delivered' then
  redis.call('HSET', KEYS[1], 'delivered', ARGV[6])
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif ARGV[2] == 'failed' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'next', ARGV[7])
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1]) end
end
return 1
`)

// record stores attempts in one round trip.
func (s *Store) record(ctx context.Context, os []outcome) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, o := range os {
			recordScript.Eval(ctx, p, []string{s.delKey(o.d.Subscription, o.d.ID), s.dueKey(o.d.Subscription), s.aliveKey(o.d.Subscription)},
				o.d.ID, o.state(), o.a.status, o.a.err, o.a.latency.Microseconds(), o.a.at.UnixMilli(), o.next.UnixMilli(), o.d.replays)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record webhook attempts: %w", err)
	}
	return nil
}

// DeliveryFilter selects log entries.
type DeliveryFilter struct {
	From, To time.Time // by creation time; zero: unbounded
	State    string    // "": any
}

// Deliveries lists a subscription's log, newest first, from before (a creation time in
// unix ms and an id; zero: the start), at most limit; next is the cursor of the
// following page (zero when there is none).
func (s *Store) Deliveries(ctx context.Context, sub string, f DeliveryFilter, beforeMS int64, beforeID string, limit int) ([]Delivery, int64, string, error) {
	if _, err := s.Get(ctx, sub); err != nil {
		return nil, 0, "", err
	}
	max := "+inf"
	if !f.To.IsZero() {
		max = strconv.FormatInt(f.To.UnixMilli(), 10)
	}
	if beforeMS > 0 {
		max = strconv.FormatInt(beforeMS, 10)
	}
	min := "-inf"
	if !f.From.IsZero() {
		min = strconv.FormatInt(f.From.UnixMilli(), 10)
	}
	out := []Delivery{}
	var offset int64
	// One more than a page is gathered: a cursor only when there is a next page.
	page := func() ([]Delivery, int64, string, error) {
		if len(out) <= limit {
			return out, 0, "", nil
		}
		last := out[limit-1]
		return out[:limit], last.Created.UnixMilli(), last.ID, nil
	}
	for len(out) <= limit {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, s.logKey(sub), &redis.ZRangeBy{Min: min, Max: max, Offset: offset, Count: int64(limit) * 2}).Result()
		if err != nil {
			return nil, 0, "", fmt.Errorf("list webhook deliveries: %w", err)
		}
		if len(zs) == 0 {
			return page()
		}
		offset += int64(len(zs))
		cmds := make([]*redis.MapStringStringCmd, len(zs))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, z := range zs {
				cmds[i] = p.HGetAll(ctx, s.delKey(sub, z.Member.(string)))
			}
			return nil
		}); err != nil {
			return nil, 0, "", fmt.Errorf("list webhook deliveries: %w", err)
		}
		for i, z := range zs {
			id := z.Member.(string)
			ms := int64(z.Score)
			// Entries at the cursor's time sort by id descending (ZREVRANGE's order);
			// skip those at or after the cursor's id.
			if beforeMS > 0 && ms == beforeMS && id >= beforeID {
				continue
			}
			m := cmds[i].Val()
			if len(m) == 0 {
				continue
			}
			d := deliveryFrom(id, m)
			if f.State != "" && d.State != f.State {
				continue
			}
			out = append(out, d)
			if len(out) > limit {
				return page()
			}
		}
	}
	return page()
}

// ReplaySpec names what to replay: delivery ids, or a creation time range.
type ReplaySpec struct {
	DeliveryIDs []string  `json:"delivery_ids,omitempty"`
	From        time.Time `json:"from,omitzero"`
	To          time.Time `json:"to,omitzero"`
}

// MaxReplay bounds one replay.
const MaxReplay = 10000

// Replay makes deliveries of sub due again now with a fresh MaxAge of retries, whatever
// their state: the receiver gets them again with their Herald-Webhook-Id. It returns
// how many were replayed (ids not in sub's log are left out).
func (s *Store) Replay(ctx context.Context, sub string, r ReplaySpec) (int, error) {
	if _, err := s.Get(ctx, sub); err != nil {
		return 0, err
	}
	ids := r.DeliveryIDs
	if len(ids) == 0 {
		min, max := "-inf", "+inf"
		if !r.From.IsZero() {
			min = strconv.FormatInt(r.From.UnixMilli(), 10)
		}
		if !r.To.IsZero() {
			max = strconv.FormatInt(r.To.UnixMilli(), 10)
		}
		var err error
		ids, err = s.rdb.ZRangeByScore(ctx, s.logKey(sub), &redis.ZRangeBy{Min: min, Max: max, Count: MaxReplay}).Result()
		if err != nil {
			return 0, fmt.Errorf("replay: %w", err)
		}
	}
	now := s.now()
	n := 0
	for chunk := range slices.Chunk(ids, 500) {
		cmds := make([]*redis.Cmd, len(chunk))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range chunk {
				cmds[i] = replayScript.Eval(ctx, p, []string{s.delKey(sub, id), s.dueKey(sub), s.logKey(sub)}, id, sub, now.UnixMilli(),
					now.Add(s.MaxAge).UnixMilli(), (s.MaxAge + s.Retention).Milliseconds())
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("replay: %w", err)
		}
		for _, c := range cmds {
			if v, _ := c.Int(); v == 1 {
				n++
			}
		}
	}
	return n, nil
}

// KEYS d, due, log; ARGV id, sub, now, deadline, ttl.
var replayScript = redis.NewScript(`
if redis.call('ZSCORE', KEYS[3], ARGV[1]) == false then return 0 end
if redis.call('HGET', KEYS[1], 'sub') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending', 'next', ARGV[3], 'deadline', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'replays', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
`)
