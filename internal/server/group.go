package server

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/herald-dev/herald/dispatcher"
)

// Group commit: the decoded batches of concurrent webhook requests are carried out
// together, one ingest for all of them (one Kafka write per topic, one Redis round trip
// per kind of work), and every request is answered with the shared outcome. A request
// that finds no flush running starts one at once, so a lone request waits for nobody;
// under load, requests gather while the flushes in flight finish, and a group grows with
// the load (up to MaxItems). 200 means the request's events are in Kafka; when a group
// fails, its requests are tried one by one in the time left, and each that still fails
// is answered 503: the provider's retry is harmless because ingestion is idempotent.

// GroupConfig tunes the group commit of webhook requests. Zero values take the defaults.
type GroupConfig struct {
	// MaxInFlight is how many groups are carried out at once (default one per CPU the Go
	// runtime uses, 2 to 8): while they are, the next requests gather into larger groups,
	// and every group costs a Redis round trip and a Kafka produce whatever its size.
	MaxInFlight int
	// MaxItems is the most statuses, inbound messages and preference changes one group
	// takes (default 2000); a request beyond it starts the next group.
	MaxItems int
	// MaxQueue bounds the items waiting or being carried out (default 20000): a request
	// that would pass it is answered 503 at once, so memory stays bounded whatever the load.
	MaxQueue int
	// Timeout is the longest a request waits for its outcome (default 2 s): when Kafka or
	// Redis is down, the request gets 503 by then rather than hang.
	Timeout time.Duration
	// Pause is how long requests are refused at once (503) after a group failed
	// (default 250 ms; negative: never): while Kafka or Redis is down, the provider's
	// retries cost nothing and the Kafka writer is not handed a group it cannot write
	// every few milliseconds.
	Pause time.Duration
	// Window, when positive, keeps a group open that long after a flush slot is free, to
	// gather more requests (default 0: a group is flushed as soon as a slot is free).
	Window time.Duration
}

func (c GroupConfig) withDefaults() GroupConfig {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = max(2, min(8, runtime.GOMAXPROCS(0)))
	}
	if c.MaxItems <= 0 {
		c.MaxItems = 2000
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 20000
	}
	if c.MaxQueue < c.MaxItems {
		c.MaxQueue = c.MaxItems
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Pause == 0 {
		c.Pause = 250 * time.Millisecond
	}
	return c
}

// Why a request was not carried out by the group commit; both answer 503.
var (
	ErrOverloaded = errors.New("webhook queue full")
	ErrTimeout    = errors.New("webhook not carried out in time")
	ErrPaused     = errors.New("webhook ingestion failed just now; retry later")
)

type waiter struct {
	b    Batch
	done chan struct{}
	err  error
}

type group struct {
	waiters  []*waiter
	items    int
	deadline time.Time
	full     chan struct{} // closed when items reach MaxItems
	taken    bool          // its leader took it: no more joiners
}

// committer runs the group commit in the goroutines of the requests themselves: the
// first request of a group leads it (waits for a flush slot, flushes, releases the
// others), the rest wait. No goroutine outlives its request.
type committer struct {
	cfg   GroupConfig
	flush func(context.Context, Batch) error
	slots chan struct{}
	// observe is told each flushed group's size (requests, items); may be nil.
	observe func(requests, items int)

	mu        sync.Mutex
	open      *group
	queued    int
	failUntil time.Time // refuse at once until then (Pause after a failed group)
}

func newCommitter(cfg GroupConfig, flush func(context.Context, Batch) error) *committer {
	cfg = cfg.withDefaults()
	return &committer{cfg: cfg, flush: flush, slots: make(chan struct{}, cfg.MaxInFlight)}
}

// items counts what a batch asks to carry out.
func items(b Batch) int { return len(b.Reports) + len(b.Inbound) + len(b.Preferences) }

// Submit carries out b together with the batches of concurrent requests, and returns
// the group's outcome: nil once b's events are in Kafka.
func (c *committer) Submit(b Batch) error {
	n := items(b)
	if n == 0 {
		return nil
	}
	now := time.Now()
	w := &waiter{b: b, done: make(chan struct{})}
	c.mu.Lock()
	if c.queued > 0 && c.queued+n > c.cfg.MaxQueue {
		c.mu.Unlock()
		return ErrOverloaded
	}
	if now.Before(c.failUntil) {
		c.mu.Unlock()
		return ErrPaused
	}
	c.queued += n
	g := c.open
	lead := g == nil || g.taken || g.items >= c.cfg.MaxItems
	if lead {
		g = &group{deadline: now.Add(c.cfg.Timeout), full: make(chan struct{})}
		c.open = g
	}
	g.waiters = append(g.waiters, w)
	g.items += n
	if g.items >= c.cfg.MaxItems && len(g.waiters) > 1 {
		select {
		case <-g.full:
		default:
			close(g.full)
		}
	}
	c.mu.Unlock()
	if lead {
		c.lead(g)
	}
	// The leader answers by its deadline, which is no later than ours; the timer only
	// guards against a flush that ignores its context.
	t := time.NewTimer(time.Until(now.Add(c.cfg.Timeout + 250*time.Millisecond)))
	defer t.Stop()
	select {
	case <-w.done:
		return w.err
	case <-t.C:
		return ErrTimeout
	}
}

// lead waits for a flush slot (and the Window), takes the group, carries it out and
// releases its waiters.
func (c *committer) lead(g *group) {
	deadline := time.NewTimer(time.Until(g.deadline))
	defer deadline.Stop()
	select {
	case c.slots <- struct{}{}:
	case <-deadline.C:
		c.release(c.take(g), fmt.Errorf("%w: no flush slot free for %s", ErrTimeout, c.cfg.Timeout))
		return
	}
	defer func() { <-c.slots }()
	if c.cfg.Window > 0 {
		wt := time.NewTimer(c.cfg.Window)
		select {
		case <-wt.C:
		case <-g.full:
		case <-deadline.C:
		}
		wt.Stop()
	}
	ws := c.take(g)
	var all Batch
	if len(ws) == 1 {
		all = ws[0].b
	} else {
		all = merge(ws)
	}
	if c.observe != nil {
		c.observe(len(ws), items(all))
	}
	ctx, cancel := context.WithDeadline(context.Background(), g.deadline)
	defer cancel()
	err := c.flush(ctx, all)
	if err == nil || len(ws) == 1 || ctx.Err() != nil {
		c.release(ws, err)
		return
	}
	// One request may carry what fails every time (a batch the Reactor refuses…): carry
	// the requests out one by one, in the time left, so that it fails alone rather than
	// taking every group it joins down with it. While Kafka or Redis is down they all
	// fail again, fast.
	errs := make([]error, len(ws))
	for i, w := range ws {
		if errs[i] = ctx.Err(); errs[i] == nil {
			errs[i] = c.flush(ctx, w.b)
		}
	}
	c.releaseEach(ws, errs)
}

// take closes g to joiners and returns its waiters.
func (c *committer) take(g *group) []*waiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	g.taken = true
	if c.open == g {
		c.open = nil
	}
	return g.waiters
}

func (c *committer) release(ws []*waiter, err error) {
	errs := make([]error, len(ws))
	for i := range errs {
		errs[i] = err
	}
	c.releaseEach(ws, errs)
}

// releaseEach answers each waiter with its outcome; when all failed, new requests are
// refused for Pause.
func (c *committer) releaseEach(ws []*waiter, errs []error) {
	n, failed := 0, 0
	for i, w := range ws {
		n += items(w.b)
		if errs[i] != nil {
			failed++
		}
	}
	c.mu.Lock()
	c.queued -= n
	if failed == len(ws) && c.cfg.Pause > 0 {
		c.failUntil = time.Now().Add(c.cfg.Pause)
	}
	c.mu.Unlock()
	for i, w := range ws {
		w.err = errs[i]
		close(w.done)
	}
}

// merge concatenates batches in arrival order. Ingesting the result does what ingesting
// each in turn does: statuses, settlements and events are idempotent and need no order;
// consent changes keep their order among themselves (preferences before keywords, as in
// one batch), and concurrent requests have no order of their own to keep.
func merge(ws []*waiter) Batch {
	var nr, ni, np int
	for _, w := range ws {
		nr, ni, np = nr+len(w.b.Reports), ni+len(w.b.Inbound), np+len(w.b.Preferences)
	}
	var all Batch
	if nr > 0 {
		all.Reports = make([]dispatcher.Report, 0, nr)
	}
	if ni > 0 {
		all.Inbound = make([]dispatcher.Inbound, 0, ni)
	}
	if np > 0 {
		all.Preferences = make([]dispatcher.Preference, 0, np)
	}
	for _, w := range ws {
		all.Reports = append(all.Reports, w.b.Reports...)
		all.Inbound = append(all.Inbound, w.b.Inbound...)
		all.Preferences = append(all.Preferences, w.b.Preferences...)
	}
	return all
}

// keyLocks keeps two concurrent ingestions from settling the same send: both would find
// it in doubt and publish its sent event twice. An ingestion takes all its keys at once
// or none (waiting for the holder of one it needs, then trying again), so two never wait
// for each other. It is per process: across serve processes the same event id may be
// published twice, which every report collapses.
type keyLocks struct {
	mu   sync.Mutex
	held map[dispatcher.Key]chan struct{}
}

// acquire takes keys (duplicates allowed) and returns their release, or ctx's error.
func (l *keyLocks) acquire(ctx context.Context, keys []dispatcher.Key) (func(), error) {
	if len(keys) == 0 {
		return func() {}, nil
	}
	for {
		l.mu.Lock()
		var busy chan struct{}
		for _, k := range keys {
			if ch, ok := l.held[k]; ok {
				busy = ch
				break
			}
		}
		if busy == nil {
			if l.held == nil {
				l.held = map[dispatcher.Key]chan struct{}{}
			}
			mine := make(chan struct{})
			for _, k := range keys {
				l.held[k] = mine
			}
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				for _, k := range keys {
					if l.held[k] == mine {
						delete(l.held, k)
					}
				}
				l.mu.Unlock()
				close(mine)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, fmt.Errorf("settle: wait for a concurrent settlement: %w", ctx.Err())
		}
	}
}
