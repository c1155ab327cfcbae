package sandbox

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

// event is one scheduled webhook item: statuses of one message (usually one status; two
// when "read" overtakes "delivered" in the same POST), or one inbound message.
type event struct {
	due      time.Time // on the real (monotonic) clock
	seq      uint64    // FIFO among equal due times
	pnid     string
	statuses []graph.Status
	in       *inboundItem
	pref     *preferenceItem
	dup      bool // a duplicate of another event: not counted as a unique status
	attempt  int  // failed POSTs so far
}

type inboundItem struct {
	contact graph.WebhookContact
	msg     graph.InboundMessage
}

// preferenceItem is a user's stop or resume of marketing (a user_preferences webhook).
type preferenceItem struct {
	contact graph.WebhookContact
	pref    graph.UserPreference
}

// kind is what a webhook POST carries: statuses, inbound messages or preferences (one
// kind a POST, as Meta sends them).
func (e *event) kind() int {
	switch {
	case e.in != nil:
		return 1
	case e.pref != nil:
		return 2
	}
	return 0
}

func (e *event) units() int64 {
	if e.in != nil || e.pref != nil {
		return 1
	}
	return int64(len(e.statuses))
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

// queue is the timer-driven schedule of webhook items: a min-heap by due time, a wake-up
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

// push schedules events (their due set) that are new, counting them as pending.
func (q *queue) push(due time.Time, evs ...*event) {
	for _, e := range evs {
		if e.due.IsZero() {
			e.due = due
		}
	}
	q.add(evs, true)
}

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
			q.pending += e.units()
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

// done marks n items delivered.
func (q *queue) done(n int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending -= n
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

// Status delays at DelayScale 1, in seconds.
const (
	sentMin, sentMax           = 0.2, 1.0
	deliveredMin, deliveredMax = 0.5, 3.0
	readMin, readMax           = 2.0, 30.0
	dupMax                     = 2.0
)

// failure is the error of a failed status, as Meta words it.
func failure(code int) graph.WebhookError {
	if code == 131050 {
		return graph.WebhookError{Code: code, Title: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
			Message:   "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
			ErrorData: &graph.ErrorData{Details: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business."}}
	}
	return graph.WebhookError{Code: 131026, Title: "Message undeliverable", Message: "Message undeliverable",
		ErrorData: &graph.ErrorData{Details: "Message Undeliverable."}}
}

// schedule queues the statuses of an accepted message: sent (with pricing), then failed
// (131026 or 131050) or delivered, then read; some read before delivered in one POST,
// some twice.
func (s *Sandbox) schedule(rec *Record, price *graph.Pricing, seq uint64) {
	r := newRNG(s.cfg.Seed, seq)
	scale := s.cfg.DelayScale
	delay := func(lo, hi float64) time.Duration {
		if scale < 0 {
			return 0
		}
		return time.Duration((lo + (hi-lo)*r.float()) * scale * float64(time.Second))
	}
	status := func(name string, at time.Duration) graph.Status {
		return graph.Status{
			ID:                    rec.MessageID,
			Status:                name,
			Timestamp:             strconv.FormatInt(rec.AcceptedAt.Add(at).Unix(), 10),
			RecipientID:           rec.WaID,
			BizOpaqueCallbackData: rec.CallbackData,
		}
	}
	start := time.Now()
	evs := make([]*event, 0, 6)
	add := func(at time.Duration, sts ...graph.Status) {
		evs = append(evs, &event{due: start.Add(at), pnid: rec.PhoneNumberID, statuses: sts})
	}

	sentAt := delay(sentMin, sentMax)
	sent := status(graph.StatusSent, sentAt)
	sent.Pricing = price
	if rec.Final == graph.StatusFailed && price.Billable {
		p := *price // templates are charged when delivered: a failed one is not
		p.Billable = false
		sent.Pricing = &p
	}
	add(sentAt, sent)
	next := sentAt + delay(deliveredMin, deliveredMax)
	switch rec.Final {
	case graph.StatusFailed:
		f := status(graph.StatusFailed, next)
		f.Errors = []graph.WebhookError{failure(rec.ErrorCode)}
		add(next, f)
	case graph.StatusDelivered:
		d := status(graph.StatusDelivered, next)
		d.Pricing = price
		add(next, d)
	case graph.StatusRead:
		d := status(graph.StatusDelivered, next)
		d.Pricing = price
		if s.cfg.ReorderRate > 0 && r.float() < s.cfg.ReorderRate {
			if s.cfg.StatusesPerPost >= 2 {
				add(next, status(graph.StatusRead, next), d) // read and delivered together, read first
			} else {
				add(next, status(graph.StatusRead, next)) // two POSTs at once, read first
				add(next, d)
			}
		} else {
			add(next, d)
			readAt := next + delay(readMin, readMax)
			add(readAt, status(graph.StatusRead, readAt))
		}
	}
	if s.cfg.DuplicateRate > 0 {
		for _, e := range evs[:len(evs):len(evs)] {
			if r.float() < s.cfg.DuplicateRate {
				evs = append(evs, &event{due: e.due.Add(delay(0, dupMax)), pnid: e.pnid, statuses: e.statuses, dup: true})
			}
		}
	}
	if price.Category == "marketing" && rec.Final != graph.StatusFailed && StopsPromotions(rec.WaID, s.cfg.PromotionsStopRate) {
		// The user taps "Stop promotions" a little after the template reaches them (never
		// duplicated: Meta sends a preference once).
		tapAt := next + delay(readMin, readMax)
		evs = append(evs, s.preferenceEvent(rec.PhoneNumberID, rec.WaID, "stop", rec.AcceptedAt.Add(tapAt)))
		evs[len(evs)-1].due = start.Add(tapAt)
	}
	s.q.add(evs, true)
}

// batch is one webhook POST: items of one phone number.
type batch struct {
	pnid   string
	events []*event
}

// popLimit bounds how many due items one scheduler round takes.
const popLimit = 4096

// Run delivers scheduled webhooks until ctx is done: due statuses are grouped by phone
// number into POSTs of up to StatusesPerPost, signed with AppSecret and sent by a few
// concurrent posters; failed POSTs are retried with backoff, never dropped. Items not
// delivered when ctx ends stay pending for a later Run. It returns nil when ctx ends.
func (s *Sandbox) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("sandbox: Run is already running")
	}
	defer s.running.Store(false)
	s.log.Info("delivering webhooks", "url", s.cfg.WebhookURL, "posters", s.cfg.WebhookConcurrency)

	work := make(chan *batch)
	var wg sync.WaitGroup
	if s.cfg.WebhookURL != "" {
		for range s.cfg.WebhookConcurrency {
			wg.Go(func() { s.poster(ctx, work) })
		}
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
		if len(due) > 0 {
			bs := s.batches(due)
			for i, b := range bs {
				if s.cfg.WebhookURL == "" {
					s.delivered(b)
					continue
				}
				select {
				case work <- b:
				case <-ctx.Done():
					for _, b := range bs[i:] {
						s.q.add(b.events, false)
					}
					return nil
				}
			}
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

// batches groups due items by phone number (statuses and inbound messages apart) into
// POST-sized batches, keeping their order.
func (s *Sandbox) batches(evs []*event) []*batch {
	type key struct {
		pnid string
		kind int
	}
	open := make(map[key]*batch, 4)
	units := make(map[*batch]int64, 4)
	var out []*batch
	limit := int64(s.cfg.StatusesPerPost)
	for _, e := range evs {
		k := key{e.pnid, e.kind()}
		b := open[k]
		if b == nil || units[b]+e.units() > limit {
			b = &batch{pnid: e.pnid}
			open[k] = b
			out = append(out, b)
		}
		b.events = append(b.events, e)
		units[b] += e.units()
	}
	return out
}

// delivered counts a delivered batch.
func (s *Sandbox) delivered(b *batch) {
	var n int64
	for _, e := range b.events {
		n += e.units()
		if e.in != nil || e.pref != nil {
			continue
		}
		if e.dup {
			s.duplicates.Add(int64(len(e.statuses)))
			continue
		}
		for _, st := range e.statuses {
			if i := indexOf(statusNames[:], st.Status); i >= 0 {
				s.statusCount[i].Add(1)
			}
		}
	}
	s.q.done(n)
}

func (s *Sandbox) poster(ctx context.Context, work <-chan *batch) {
	var failing bool
	var wp *wirePoster
	if s.wire {
		wp = newWirePoster(s.cfg.WebhookURL, 10*time.Second)
	}
	defer wp.close()
	for b := range work {
		err := s.post(ctx, b, wp)
		if err == nil {
			if failing {
				s.log.Info("webhook receiver recovered", "url", s.cfg.WebhookURL)
				failing = false
			}
			s.delivered(b)
			continue
		}
		if ctx.Err() != nil { // shutting down: keep the items for a later Run
			s.q.add(b.events, false)
			continue
		}
		s.postsFailed.Add(1)
		if !failing {
			s.log.Warn("webhook POST failed; retrying with backoff", "url", s.cfg.WebhookURL, "err", err)
			failing = true
		} else {
			s.log.Debug("webhook POST failed", "err", err)
		}
		now := time.Now()
		for _, e := range b.events {
			e.attempt++
			e.due = now.Add(s.retryDelay(e.attempt))
		}
		s.q.add(b.events, false)
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

// notification builds the Meta envelope of a batch.
func (s *Sandbox) notification(b *batch) *graph.Notification {
	v := graph.Value{
		MessagingProduct: "whatsapp",
		Metadata:         graph.Metadata{DisplayPhoneNumber: displayNumber(b.pnid), PhoneNumberID: b.pnid},
	}
	field := "messages"
	for _, e := range b.events {
		var contact graph.WebhookContact
		switch {
		case e.in != nil:
			v.Messages, contact = append(v.Messages, e.in.msg), e.in.contact
		case e.pref != nil:
			v.UserPreferences, contact, field = append(v.UserPreferences, e.pref.pref), e.pref.contact, "user_preferences"
		default:
			v.Statuses = append(v.Statuses, e.statuses...)
			continue
		}
		known := false
		for _, c := range v.Contacts {
			known = known || c.WaID == contact.WaID
		}
		if !known {
			v.Contacts = append(v.Contacts, contact)
		}
	}
	return &graph.Notification{
		Object: graph.ObjectWhatsApp,
		Entry:  []graph.Entry{{ID: s.cfg.WABAID, Changes: []graph.Change{{Field: field, Value: v}}}},
	}
}

func (s *Sandbox) post(ctx context.Context, b *batch, wp *wirePoster) error {
	s.posts.Add(1)
	for _, e := range b.events {
		if e.attempt > 0 {
			s.postsRetried.Add(1)
			break
		}
	}
	body, err := encodeNotification(s.notification(b))
	if err != nil {
		return fmt.Errorf("encode webhook: %w", err)
	}
	if wp != nil {
		var sig string
		if s.cfg.AppSecret != "" {
			sig = graph.Sign(s.cfg.AppSecret, body)
		}
		return wp.post(ctx, body, sig)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "facebookexternalua")
	if s.cfg.AppSecret != "" {
		req.Header.Set(graph.SignatureHeader, graph.Sign(s.cfg.AppSecret, body))
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post webhook: receiver answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// WaitIdle returns when no statuses or inbound messages are pending delivery (Run must be
// running for that to happen), or with an error when ctx ends first.
func (s *Sandbox) WaitIdle(ctx context.Context) error {
	ch := s.q.idleChan()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sandbox: wait idle with %d items pending: %w", s.q.pendingCount(), ctx.Err())
	}
}
