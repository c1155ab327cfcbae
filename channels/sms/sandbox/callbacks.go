package sandbox

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-dev/herald/channels/sms"
	"github.com/herald-dev/herald/templates"
)

// Event kinds: the status of a callback, or an inbound message.
const kindInbound = "inbound"

// event is one scheduled webhook POST: a status callback or an inbound message.
type event struct {
	due     time.Time // on the real (monotonic) clock
	seq     uint64    // FIFO among equal due times
	url     string
	form    url.Values
	kind    string // a status, or kindInbound
	attempt int    // failed POSTs so far
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return e
}

// queue is the timer-driven schedule of webhook POSTs: a min-heap by due time, a wake-up
// channel for Run when an earlier item arrives, and the count of undelivered items.
type queue struct {
	mu      sync.Mutex
	h       eventHeap
	seq     uint64
	pending int64
	idle    chan struct{} // closed when pending drops to 0; nil when nobody waits
	wake    chan struct{}
}

func (q *queue) init() {
	q.h = make(eventHeap, 0, 1024)
	q.wake = make(chan struct{}, 1)
}

// push schedules new events, counting them as pending.
func (q *queue) push(evs ...*event) { q.add(evs, true) }

// add inserts events; fresh ones are counted as pending (retries already are).
func (q *queue) add(evs []*event, fresh bool) {
	if len(evs) == 0 {
		return
	}
	q.mu.Lock()
	var before time.Time
	if len(q.h) > 0 {
		before = q.h[0].due
	}
	for _, e := range evs {
		q.seq++
		e.seq = q.seq
		heap.Push(&q.h, e)
		if fresh {
			q.pending++
		}
	}
	earlier := before.IsZero() || q.h[0].due.Before(before)
	q.mu.Unlock()
	if earlier {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// popDue removes up to limit items due at now, and returns the next due time (zero if none).
func (q *queue) popDue(now time.Time, limit int) (due []*event, next time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.h) > 0 && !q.h[0].due.After(now) && len(due) < limit {
		due = append(due, heap.Pop(&q.h).(*event))
	}
	if len(q.h) > 0 {
		next = q.h[0].due
	}
	return due, next
}

// done marks one item delivered.
func (q *queue) done() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending--
	if q.pending == 0 && q.idle != nil {
		close(q.idle)
		q.idle = nil
	}
}

func (q *queue) pendingCount() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// idleChan returns nil when nothing is pending, else a channel closed when that happens.
func (q *queue) idleChan() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending == 0 {
		return nil
	}
	if q.idle == nil {
		q.idle = make(chan struct{})
	}
	return q.idle
}

// Carrier delay from sent to delivered (or undelivered) at DelayScale 1, in seconds.
const deliveredMin, deliveredMax = 0.5, 3.0

// schedule queues the status callbacks of an accepted message: queued now, sent when it
// leaves the queue, then its final status after a carrier delay (or, for one that never
// leaves the queue, its failure when it expires). Times are on the Config.Now clock; the
// real-time delays of the POSTs are those times scaled by DelayScale.
func (s *Sandbox) schedule(rec *Record, seq uint64, expireIn time.Duration) {
	if rec.StatusCallback == "" {
		return
	}
	start := time.Now() // the real clock the callbacks run on
	scale := max(s.cfg.DelayScale, 0)
	r := newRNG(s.cfg.Seed, seq)
	carrier := time.Duration((deliveredMin + (deliveredMax-deliveredMin)*r.float()) * float64(time.Second))
	status := func(name string, at time.Time, code int) *event {
		f := url.Values{
			"AccountSid":    {rec.AccountSID},
			"ApiVersion":    {sms.APIVersion},
			"MessageSid":    {rec.SID},
			"SmsSid":        {rec.SID},
			"MessageStatus": {name},
			"SmsStatus":     {name},
			"To":            {rec.To},
		}
		if rec.From != "" {
			f["From"] = []string{rec.From}
		}
		if rec.MessagingServiceSID != "" {
			f["MessagingServiceSid"] = []string{rec.MessagingServiceSID}
		}
		if code != 0 {
			f["ErrorCode"] = []string{strconv.Itoa(code)}
		}
		if name == sms.StatusDelivered || name == sms.StatusUndelivered {
			f["RawDlrDoneDate"] = []string{at.UTC().Format("0601021504")}
		}
		due := start.Add(time.Duration(float64(at.Sub(rec.AcceptedAt)) * scale))
		return &event{due: due, url: rec.StatusCallback, form: f, kind: name}
	}
	evs := []*event{status(sms.StatusQueued, rec.AcceptedAt, 0)}
	switch {
	case rec.SentAt.IsZero(): // never left the queue: 30001 at once, 30036 when it expires
		evs = append(evs, status(sms.StatusFailed, rec.AcceptedAt.Add(expireIn), rec.ErrorCode))
	default:
		evs = append(evs, status(sms.StatusSent, rec.SentAt, 0))
		evs = append(evs, status(rec.Final, rec.SentAt.Add(carrier), rec.ErrorCode))
	}
	s.q.push(evs...)
}

// popLimit bounds how many due items one scheduler round takes.
const popLimit = 4096

// Run delivers scheduled status callbacks and inbound messages until ctx is done, one
// form POST each, signed with AuthToken, by a few concurrent posters; failed POSTs are
// retried with backoff, never dropped. Items not delivered when ctx ends stay pending
// for a later Run. It returns nil when ctx ends.
func (s *Sandbox) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("sms sandbox: Run is already running")
	}
	defer s.running.Store(false)
	s.log.Info("delivering callbacks", "inbound_url", s.cfg.InboundURL, "posters", s.cfg.CallbackConcurrency)

	work := make(chan *event)
	var wg sync.WaitGroup
	for range s.cfg.CallbackConcurrency {
		wg.Go(func() { s.poster(ctx, work) })
	}
	defer func() {
		close(work)
		wg.Wait()
	}()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		due, next := s.q.popDue(time.Now(), popLimit)
		for i, e := range due {
			select {
			case work <- e:
			case <-ctx.Done():
				s.q.add(due[i:], false)
				return nil
			}
		}
		if len(due) > 0 {
			continue
		}
		var fire <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.q.wake:
		case <-fire:
		}
		timer.Stop()
	}
}

func (s *Sandbox) poster(ctx context.Context, work <-chan *event) {
	failing := false
	for e := range work {
		err := s.post(ctx, e)
		if err == nil {
			if failing {
				s.log.Info("callback receiver recovered")
				failing = false
			}
			if e.kind != kindInbound {
				s.statMu.Lock()
				s.statuses[e.kind]++
				s.statMu.Unlock()
			}
			s.q.done()
			continue
		}
		if ctx.Err() != nil { // shutting down: keep the item for a later Run
			s.q.add([]*event{e}, false)
			continue
		}
		s.postsFailed.Add(1)
		if !failing {
			s.log.Warn("callback POST failed; retrying with backoff", "url", e.url, "err", err)
			failing = true
		}
		e.attempt++
		e.due = time.Now().Add(s.retryDelay(e.attempt))
		s.q.add([]*event{e}, false)
	}
}

func (s *Sandbox) retryDelay(attempt int) time.Duration {
	d := s.cfg.RetryBase
	for i := 1; i < attempt && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64())) // ±20% jitter
}

func (s *Sandbox) post(ctx context.Context, e *event) error {
	s.posts.Add(1)
	if e.attempt > 0 {
		s.postsRetried.Add(1)
	}
	body := e.form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("callback request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	if s.cfg.AuthToken != "" {
		req.Header.Set(sms.SignatureHeader, sms.Sign(s.cfg.AuthToken, e.url, e.form))
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("post callback: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post callback: receiver answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// WaitIdle returns when no callbacks or inbound messages are pending delivery (Run must
// be running for that to happen), or with an error when ctx ends first.
func (s *Sandbox) WaitIdle(ctx context.Context) error {
	ch := s.q.idleChan()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sms sandbox: wait idle with %d items pending: %w", s.q.pendingCount(), ctx.Err())
	}
}

// smsSegments counts an SMS body's segments as Herald's templates do.
func smsSegments(body string) (int, string) { return templates.SMSSegments(body) }

func itoa(n int) string { return strconv.Itoa(n) }

// splitmix64 is a small, fast generator: one per accepted message, seeded from the
// sandbox seed and the message sequence, so delays are reproducible without a lock.
type splitmix64 struct{ s uint64 }

func newRNG(seed int64, seq uint64) *splitmix64 {
	return &splitmix64{s: mix64(uint64(seed) ^ mix64(seq))}
}

func (r *splitmix64) float() float64 {
	r.s += 0x9e3779b97f4a7c15
	return unit(mix64(r.s))
}

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// hashString is FNV-1a over salt and s, finalized so that close inputs spread out.
func hashString(salt byte, s string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	h = (h ^ uint64(salt)) * prime
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * prime
	}
	return mix64(h)
}
