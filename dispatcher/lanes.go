package dispatcher

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/kafkax"
)

// The worker reads herald.outbound into per-sender lanes. One partition carries several
// senders; each sender's jobs wait in their own lane and are processed in batches, one
// batch per sender at a time, several senders at once. So a sender held back by its rate
// never delays another's jobs. Offsets are committed per partition up to the contiguous
// prefix of finished jobs: a job is never committed before it has an outcome, whatever
// order the lanes finish in.

// lane holds one sender's fetched jobs that no batch has taken yet.
type lane struct {
	pending []kafka.Message
	since   time.Time // when the oldest pending job arrived
	busy    bool      // a batch of this sender is being processed
}

// offsets tracks, per partition, fetched offsets and which are finished.
type offsets struct {
	parts map[int]*partOffsets
}

type partOffsets struct {
	order []int64        // fetched offsets, ascending
	done  map[int64]bool // finished ones not yet committed
	last  int64          // highest fetched
	ready *kafka.Message // the finished prefix's last message, not yet committed
	topic string
}

func newOffsets() *offsets { return &offsets{parts: map[int]*partOffsets{}} }

// add registers a fetched message. A message at or below the last seen offset means the
// reader restarted the partition from its committed offset (a rebalance): start over.
func (o *offsets) add(m kafka.Message) {
	p := o.parts[m.Partition]
	if p == nil || m.Offset <= p.last {
		p = &partOffsets{done: map[int64]bool{}, topic: m.Topic}
		o.parts[m.Partition] = p
	}
	p.order = append(p.order, m.Offset)
	p.last = m.Offset
}

// finish marks messages finished and advances each partition's committable prefix.
func (o *offsets) finish(msgs []kafka.Message) {
	touched := map[int]bool{}
	for _, m := range msgs {
		if p := o.parts[m.Partition]; p != nil && m.Offset <= p.last {
			p.done[m.Offset] = true
			touched[m.Partition] = true
		}
	}
	for part := range touched {
		p := o.parts[part]
		i := 0
		for i < len(p.order) && p.done[p.order[i]] {
			delete(p.done, p.order[i])
			i++
		}
		if i > 0 {
			p.ready = &kafka.Message{Topic: p.topic, Partition: part, Offset: p.order[i-1]}
			p.order = append(p.order[:0:0], p.order[i:]...)
		}
	}
}

// committable returns the messages to commit (one per partition with progress) and
// forgets them.
func (o *offsets) committable() []kafka.Message {
	var out []kafka.Message
	for _, p := range o.parts {
		if p.ready != nil {
			out = append(out, *p.ready)
			p.ready = nil
		}
	}
	return out
}

type batchResult struct {
	msgs []kafka.Message
	key  string
	err  error
	took time.Duration
}

// Run consumes jobs until ctx is cancelled. It commits a job's offset only after every
// job up to it in its partition has an outcome recorded (or was handed to the delayed
// set or the DLQ).
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.Reactor == nil && w.cfg.Ledger == nil {
		return errors.New("worker: a consent ledger is required (provider opt-outs are recorded in it)")
	}
	r := kafkax.NewGroupReader(w.cfg.Brokers, w.cfg.Group, w.cfg.Topics.Outbound, kafkax.ReaderOptions{Logger: w.log})
	defer r.Close()
	defer w.stopSenders() // runs once every batch has returned

	fetched := make(chan kafka.Message, 256)
	go func() {
		defer close(fetched)
		for {
			m, err := r.FetchMessage(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				w.log.Warn("fetch jobs", "err", err)
				if !sleepCtx(ctx, time.Second) {
					return
				}
				continue
			}
			select {
			case fetched <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	lanes := map[string]*lane{}
	offs := newOffsets()
	results := make(chan batchResult)
	inflight, pending := 0, 0
	stopping := false
	tick := time.NewTicker(w.cfg.Linger)
	defer tick.Stop()

	commit := func(ctx context.Context) {
		msgs := offs.committable()
		if len(msgs) == 0 {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := r.CommitMessages(cctx, msgs...); err != nil {
			w.log.Warn("commit offsets (jobs will be redelivered and dropped as duplicates)", "err", err)
		}
	}
	dispatch := func(force bool) {
		now := time.Now()
		for key, l := range lanes {
			if inflight >= w.cfg.Lanes || stopping {
				return
			}
			if l.busy || len(l.pending) == 0 || (!force && len(l.pending) < w.cfg.BatchSize && now.Sub(l.since) < w.cfg.Linger) {
				continue
			}
			n := min(len(l.pending), w.cfg.BatchSize)
			batch := l.pending[:n:n]
			l.pending = l.pending[n:]
			l.since = now
			pending -= n
			l.busy = true
			inflight++
			go func() {
				start := time.Now()
				err := w.process(ctx, batch)
				results <- batchResult{msgs: batch, key: key, err: err, took: time.Since(start)}
			}()
		}
	}

	in, done := fetched, ctx.Done()
	lastCommit := time.Now()
	for {
		// Back-pressure: stop reading while enough jobs wait in the lanes.
		if pending >= w.cfg.MaxPending || stopping {
			in = nil
		} else {
			in = fetched
		}
		if stopping && inflight == 0 {
			commit(ctx)
			return nil
		}
		select {
		case m, ok := <-in:
			if !ok {
				stopping = true
				continue
			}
			offs.add(m)
			key := string(m.Key)
			l := lanes[key]
			if l == nil {
				l = &lane{}
				lanes[key] = l
			}
			if len(l.pending) == 0 {
				l.since = time.Now()
			}
			l.pending = append(l.pending, m)
			pending++
			if len(l.pending) >= w.cfg.BatchSize && !l.busy {
				dispatch(false)
			}
		case res := <-results:
			inflight--
			lanes[res.key].busy = false
			if res.err != nil {
				// Only cancellation ends processing early; the batch stays uncommitted and
				// its unsent jobs were released, so another worker takes them.
				stopping = true
				continue
			}
			w.m.batch.Observe(res.took.Seconds())
			offs.finish(res.msgs)
			dispatch(false)
		case <-tick.C:
			dispatch(true)
			if time.Since(lastCommit) >= 100*time.Millisecond {
				commit(ctx)
				lastCommit = time.Now()
			}
			for key, l := range lanes {
				if !l.busy && len(l.pending) == 0 && time.Since(l.since) > time.Minute {
					delete(lanes, key)
				}
			}
		case <-done:
			stopping, done = true, nil
		}
	}
}
