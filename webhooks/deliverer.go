package webhooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
)

// The headers of a delivery.
const (
	HeaderID        = "Herald-Webhook-Id"        // the delivery's id: the same on every attempt and replay
	HeaderTimestamp = "Herald-Webhook-Timestamp" // unix seconds of this attempt
	HeaderSignature = "Herald-Webhook-Signature" // v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>[,v1=<with the previous secret>]
	HeaderAttempt   = "Herald-Webhook-Attempt"   // 1 for the first attempt
)

// Sign returns the signature header's value for a body sent at ts (unix seconds):
// "v1=" and the hex HMAC-SHA256, keyed with the whole secret string ("whsec_…"), of
// the timestamp's decimal digits, a dot, and the body's bytes.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Envelope is the JSON body of a delivery: the event, flat, in snake_case.
type Envelope struct {
	ID                string      `json:"id"` // the delivery's id (Herald-Webhook-Id)
	Kind              events.Kind `json:"kind"`
	Time              time.Time   `json:"time"` // when the event happened
	EventID           string      `json:"event_id"`
	SubscriptionID    string      `json:"subscription_id"`
	Campaign          string      `json:"campaign,omitempty"`
	Contact           uint32      `json:"contact"`
	Channel           string      `json:"channel,omitempty"`
	Sender            string      `json:"sender,omitempty"`
	Template          string      `json:"template,omitempty"`
	Variant           string      `json:"variant,omitempty"`
	Country           string      `json:"country,omitempty"`
	ProviderMessageID string      `json:"provider_message_id,omitempty"`
	Reason            string      `json:"reason,omitempty"`
	ErrorCode         int         `json:"error_code,omitempty"`
	Retryable         bool        `json:"retryable,omitempty"`
	OrderID           string      `json:"order_id,omitempty"`
	Value             float64     `json:"value,omitempty"`
	Currency          string      `json:"currency,omitempty"`
}

// EnvelopeOf builds the body of event e for subscription sub.
func EnvelopeOf(sub string, e events.Event) Envelope {
	return Envelope{ID: DeliveryID(sub, e.ID), Kind: e.Kind, Time: e.Time.UTC(), EventID: e.ID, SubscriptionID: sub,
		Campaign: e.CampaignID, Contact: e.ContactID, Channel: e.Channel, Sender: e.SenderID, Template: e.Template,
		Variant: e.Variant, Country: e.Country, ProviderMessageID: e.ProviderMessageID, Reason: e.Reason,
		ErrorCode: e.ErrorCode, Retryable: e.Retryable, OrderID: e.OrderID, Value: e.Value, Currency: e.Currency}
}

// Config configures a Deliverer.
type Config struct {
	Brokers []string
	Topic   string // herald.events
	Group   string // default "herald-webhooks"
	Store   *Store

	HTTPClient  *http.Client  // default: no redirects followed, Timeout per request
	Timeout     time.Duration // one attempt's limit; default 10 s
	Concurrency int           // requests at once per subscription; default 8
	MaxInFlight int           // requests at once in this process; default 256
	Poll        time.Duration // how often due retries are looked for; default 250 ms
	// Lease is how long a claimed delivery is this process's: if it dies, another
	// deliverer takes the delivery after it. Default Timeout + 20 s.
	Lease time.Duration
	// MinBackoff is the wait after the first failed attempt (default 5 s); each further
	// failure doubles it up to MaxBackoff (default 1 h), with jitter (half to all of it).
	MinBackoff, MaxBackoff time.Duration
	// Drain bounds how long in-flight requests may finish after Run's context ends
	// (default 10 s); negative: abandon them at once (their claims come due after Lease).
	Drain time.Duration
	// BatchSize is how many events are matched and stored per Kafka commit; default 500.
	BatchSize int
	// SessionTimeout of the consumer group (default kafkax's 6 s).
	SessionTimeout time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer // may be nil
}

// DefaultGroup is the deliverers' Kafka consumer group.
const DefaultGroup = "herald-webhooks"

// Deliverer consumes herald.events and delivers matching events to subscriptions.
//
// A consumer reads events in batches, matches each against the subscriptions and
// stores one delivery per match in Redis (due now), and commits the batch's offsets only
// after Redis has them all: a deliverer killed at any point loses nothing (Kafka
// redelivers what was not committed; a delivery's id is deterministic, so a redelivered
// event is stored once). Senders take due deliveries of each subscription (up to
// Concurrency at once per subscription, so one slow receiver holds back no other),
// POST them, and record the outcome: delivered, or due again after a backoff, until
// 72 h (Store.MaxAge) have passed. Several deliverers may run: they share the group's
// partitions and claim deliveries with a lease.
//
// Metrics: herald_outbound_webhook_attempts_total{outcome="delivered|retry|failed"},
// herald_outbound_webhook_attempt_seconds, herald_outbound_webhook_enqueued_total.
type Deliverer struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	subs subCache
	wake chan struct{}
	sem  chan struct{}

	mu       sync.Mutex
	inflight map[string]int
	records  chan recordReq

	m struct {
		outcomes *prometheus.CounterVec
		latency  prometheus.Histogram
		enqueued prometheus.Counter
	}
}

// New returns a deliverer; Run starts it.
func New(cfg Config) (*Deliverer, error) {
	if cfg.Store == nil {
		return nil, errors.New("webhooks: no Store")
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Lease <= 0 {
		cfg.Lease = cfg.Timeout + 20*time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 5 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.Drain == 0 {
		cfg.Drain = 10 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // the dialled address is the receiver's, checked by DialControl
		tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: DialControl}).DialContext
		tr.MaxIdleConns = cfg.MaxInFlight
		tr.MaxIdleConnsPerHost = cfg.Concurrency * 2
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Deliverer{cfg: cfg, log: log.With("component", "webhooks"), now: cfg.Store.now, subs: subCache{store: cfg.Store},
		wake: make(chan struct{}, 1), sem: make(chan struct{}, cfg.MaxInFlight), inflight: map[string]int{},
		records: make(chan recordReq, cfg.MaxInFlight)}
	var reg prometheus.Registerer = prometheus.NewRegistry()
	if cfg.Registerer != nil {
		reg = cfg.Registerer
	}
	f := promauto.With(reg)
	d.m.outcomes = f.NewCounterVec(prometheus.CounterOpts{Name: "herald_outbound_webhook_attempts_total", Help: "Webhook delivery attempts by outcome (delivered, retry, failed)."}, []string{"outcome"})
	d.m.latency = f.NewHistogram(prometheus.HistogramOpts{Name: "herald_outbound_webhook_attempt_seconds", Help: "Time of one webhook POST.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)})
	d.m.enqueued = f.NewCounter(prometheus.CounterOpts{Name: "herald_outbound_webhook_enqueued_total", Help: "Webhook deliveries stored from herald.events."})
	return d, nil
}

// Run consumes and delivers until ctx is cancelled.
func (d *Deliverer) Run(ctx context.Context) error {
	if len(d.cfg.Brokers) == 0 || d.cfg.Topic == "" {
		return errors.New("webhooks: no Kafka brokers or topic")
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.consume(gctx) })
	g.Go(func() error { return d.send(gctx) })
	return g.Wait()
}

// subCache holds the subscriptions, reloaded when their version changes.
type subCache struct {
	store   *Store
	mu      sync.Mutex
	version int64
	loaded  bool
	list    []Subscription
}

func (c *subCache) get(ctx context.Context) ([]Subscription, error) {
	v, err := c.store.Version(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded && v == c.version {
		return c.list, nil
	}
	list, err := c.store.List(ctx)
	if err != nil {
		return nil, err
	}
	c.list, c.version, c.loaded = list, v, true
	return list, nil
}

// consume moves matching events into Redis deliveries, committing each batch after.
func (d *Deliverer) consume(ctx context.Context) error {
	// A fetch gathers 64 KiB or waits (the events topic carries every status).
	r := kafkax.NewGroupReader(d.cfg.Brokers, d.cfg.Group, d.cfg.Topic, kafkax.ReaderOptions{SessionTimeout: d.cfg.SessionTimeout, Logger: d.log,
		MinBytes: kafkax.BatchedFetch})
	defer r.Close()
	msgs := make(chan kafka.Message, d.cfg.BatchSize)
	go func() {
		defer close(msgs)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// The broker is away (an outage, a restart): the reader reconnects by
				// itself; wait for it rather than ending the deliverer.
				d.log.Warn("fetch failed; retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var batch []kafka.Message
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			batch = append(batch, m)
		}
	drain:
		for len(batch) < d.cfg.BatchSize {
			select {
			case m, ok := <-msgs:
				if !ok {
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if err := d.store(ctx, batch); err != nil {
			return nil // ctx ended while Redis was away: nothing committed, Kafka redelivers
		}
		if err := r.CommitMessages(ctx, batch...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Not fatal: what is not committed is read again (after a rebalance or a
			// restart) and stored once, as deliveries' ids are deterministic.
			d.log.Warn("webhooks: commit failed", "err", err)
		}
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// store stores the deliveries of a batch, retrying while Redis refuses.
func (d *Deliverer) store(ctx context.Context, batch []kafka.Message) error {
	backoff := 100 * time.Millisecond
	for {
		err := d.storeOnce(ctx, batch)
		if err == nil {
			return nil
		}
		d.log.Warn("webhook deliveries not stored; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (d *Deliverer) storeOnce(ctx context.Context, batch []kafka.Message) error {
	subs, err := d.subs.get(ctx)
	if err != nil {
		return err
	}
	if len(subs) == 0 {
		return nil // nothing to match: the batch is committed undecoded
	}
	var ps []pending
	for _, m := range batch {
		e, err := events.Unmarshal(m.Value)
		if err != nil {
			d.log.Warn("undecodable event skipped", "err", err, "partition", m.Partition, "offset", m.Offset)
			continue
		}
		for i := range subs {
			if !subs[i].Wants(e) {
				continue
			}
			body, err := json.Marshal(EnvelopeOf(subs[i].ID, e))
			if err != nil {
				return err
			}
			ps = append(ps, pending{sub: subs[i].ID, event: e, body: body})
		}
	}
	n, err := d.cfg.Store.enqueue(ctx, ps)
	if err != nil {
		return err
	}
	d.m.enqueued.Add(float64(n))
	return nil
}

// recordReq is an attempt waiting for the recorder.
type recordReq struct {
	o    outcome
	done chan error
}

// recorder stores attempts in batches (one Redis round trip for all that finished
// meanwhile) until ctx ends.
func (d *Deliverer) recorder(ctx context.Context) {
	for {
		var batch []recordReq
		select {
		case <-ctx.Done():
			return
		case r := <-d.records:
			batch = append(batch, r)
		}
	more:
		for len(batch) < 512 {
			select {
			case r := <-d.records:
				batch = append(batch, r)
			default:
				break more
			}
		}
		os := make([]outcome, len(batch))
		for i, r := range batch {
			os[i] = r.o
		}
		err := d.cfg.Store.record(ctx, os)
		for _, r := range batch {
			r.done <- err
		}
	}
}

// send claims due deliveries of every subscription with room and posts them.
func (d *Deliverer) send(ctx context.Context) error {
	postCtx, cancelPosts := context.WithCancel(context.WithoutCancel(ctx))
	recDone := make(chan struct{})
	go func() { defer close(recDone); d.recorder(postCtx) }()
	defer func() { cancelPosts(); <-recDone }()
	var wg sync.WaitGroup
	defer func() {
		if d.cfg.Drain < 0 {
			cancelPosts()
		} else {
			t := time.AfterFunc(d.cfg.Drain, cancelPosts)
			defer t.Stop()
		}
		wg.Wait()
		cancelPosts()
	}()
	tick := time.NewTicker(d.cfg.Poll)
	defer tick.Stop()
	for {
		busy, err := d.claimRound(ctx, postCtx, &wg)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("webhook claim failed", "err", err)
		}
		if busy {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-d.wake:
		}
	}
}

// claimRound claims what each subscription has room for; busy is true when it found
// a full claim's worth (more may be due).
func (d *Deliverer) claimRound(ctx, postCtx context.Context, wg *sync.WaitGroup) (bool, error) {
	subs, err := d.subs.get(ctx)
	if err != nil {
		return false, err
	}
	busy := false
	for i := range subs {
		sub := subs[i]
		if !sub.Active {
			continue
		}
		d.mu.Lock()
		busyN := d.inflight[sub.ID]
		room := min(d.cfg.Concurrency-busyN, cap(d.sem)-len(d.sem))
		d.mu.Unlock()
		// Claim in batches: when half the subscription's slots are free (or it has none
		// in flight), not one by one as each request ends.
		if room <= 0 || (busyN > 0 && room < (d.cfg.Concurrency+1)/2) {
			continue
		}
		list, err := d.cfg.Store.claim(ctx, sub.ID, room, d.cfg.Lease)
		if err != nil {
			return busy, err
		}
		if len(list) == room {
			busy = true
		}
		for _, del := range list {
			d.sem <- struct{}{}
			d.mu.Lock()
			d.inflight[sub.ID]++
			d.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.deliver(postCtx, sub, del)
				d.mu.Lock()
				d.inflight[sub.ID]--
				d.mu.Unlock()
				<-d.sem
				select {
				case d.wake <- struct{}{}:
				default:
				}
			}()
		}
	}
	if busy {
		// Every subscription with work got room's worth; yield to ctx between rounds.
		select {
		case <-ctx.Done():
			return false, nil
		default:
		}
	}
	return busy, nil
}

// deliver makes one attempt and records it (unless the deliverer is going away, when
// the claim's lease brings the delivery back).
func (d *Deliverer) deliver(ctx context.Context, sub Subscription, del Delivery) {
	a := d.post(ctx, sub, del)
	if ctx.Err() != nil {
		return
	}
	var next time.Time
	label := "delivered"
	if a.status < 200 || a.status > 299 {
		next = a.at.Add(d.backoff(del.Attempts+1, a))
		label = "retry"
		if next.After(del.deadline) {
			next, label = time.Time{}, "failed"
		}
	}
	d.m.outcomes.WithLabelValues(label).Inc()
	done := make(chan error, 1)
	select {
	case d.records <- recordReq{outcome{del, a, next}, done}:
		if err := <-done; err != nil {
			d.log.Warn("webhook attempt not recorded (the delivery comes due again after its lease)", "err", err, "delivery", del.ID)
		}
	case <-ctx.Done():
		return
	}
	if label == "failed" {
		d.log.Warn("webhook delivery failed for good", "subscription", sub.ID, "delivery", del.ID, "attempts", del.Attempts+1, "status", a.status, "err", a.err)
	}
}

func (d *Deliverer) post(ctx context.Context, sub Subscription, del Delivery) attempt {
	at := d.now()
	ts := at.Unix()
	rctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, sub.URL, bytes.NewReader(del.body))
	if err != nil {
		return attempt{err: err.Error(), at: at}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Herald-Webhooks/1")
	req.Header.Set(HeaderID, del.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Signatures(sub, ts, del.body, at))
	req.Header.Set(HeaderAttempt, strconv.Itoa(del.Attempts+1))
	start := time.Now()
	res, err := d.cfg.HTTPClient.Do(req)
	lat := time.Since(start)
	d.m.latency.Observe(lat.Seconds())
	if err != nil {
		return attempt{err: truncate(err.Error(), 300), latency: lat, at: at}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	a := attempt{status: res.StatusCode, latency: lat, at: at}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		a.err = "HTTP " + strconv.Itoa(res.StatusCode)
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			a.retryAfter = time.Duration(s) * time.Second
		}
	}
	return a
}

// backoff is the wait after the n-th failed attempt: MinBackoff × 2^(n-1), at most
// MaxBackoff, at least the receiver's Retry-After (up to MaxBackoff), with jitter.
func (d *Deliverer) backoff(n int, a attempt) time.Duration {
	w := d.cfg.MinBackoff
	for i := 1; i < n && w < d.cfg.MaxBackoff; i++ {
		w *= 2
	}
	w = min(w, d.cfg.MaxBackoff)
	w = w/2 + rand.N(w/2+1)
	if a.retryAfter > w {
		w = min(a.retryAfter, d.cfg.MaxBackoff)
	}
	return w
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
