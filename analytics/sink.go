package analytics

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/internal/kafkax"
)

// SinkConfig configures a Sink.
type SinkConfig struct {
	Brokers []string
	Topics  kafkax.Topics // Events, Consent, Inbound and Audit are consumed
	Group   string        // Kafka consumer group; default "herald-sink"
	Conn    driver.Conn   // its current database holds the migrated schema

	BatchRows     int           // insert when this many messages are pending; default 10000
	FlushInterval time.Duration // or when the oldest pending message is this old; default 1s
	// IdleFlush: a batch is also inserted once no message has come for half the fetch
	// wait (250 ms), or for IdleFlush while the topic is quiet (a fetch waited out the
	// broker's wait, so less than a fetch's worth is arriving), instead of waiting out
	// FlushInterval; default 20ms; negative: by size and age only. Busy topics keep the
	// size and age rule: their fetches come back full and at once.
	IdleFlush time.Duration
	// ShutdownTimeout bounds the final flush after the context is cancelled; default 10s.
	// Rows not inserted by then are not committed, so Kafka redelivers them.
	ShutdownTimeout time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer // may be nil
}

// DefaultSinkGroup is the consumer group of the sink when SinkConfig.Group is empty.
const DefaultSinkGroup = "herald-sink"

// Sink moves herald.events, herald.consent, herald.inbound and herald.audit into the ClickHouse
// tables events, consent_log, inbound and api_audit. Each topic has its own consumer-group reader
// and batch. A batch is inserted when it is full or old enough, and its offsets are
// committed only after ClickHouse accepted it, so a crash loses nothing (what was not
// committed is redelivered, and duplicates never change a report). Undecodable messages
// are logged, counted and committed with their batch. One batch fills while the one
// before it is inserted; batches are committed in order. While ClickHouse refuses a
// batch the sink retries that same batch with backoff and fetches no more than one
// further batch.
//
// Several sink processes may share a group: Kafka spreads the partitions among them.
type Sink struct {
	cfg     SinkConfig
	log     *slog.Logger
	metrics *sinkMetrics

	minBackoff, maxBackoff time.Duration
}

// NewSink returns a sink; Run starts it.
func NewSink(cfg SinkConfig) *Sink {
	if cfg.Group == "" {
		cfg.Group = DefaultSinkGroup
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = 10000
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.IdleFlush == 0 {
		cfg.IdleFlush = 20 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sink{
		cfg:        cfg,
		log:        log.With("component", "sink"),
		metrics:    newSinkMetrics(cfg.Registerer),
		minBackoff: 100 * time.Millisecond,
		maxBackoff: 10 * time.Second,
	}
}

// Topics returns the topics the sink consumes, in the order events, consent, inbound,
// audit (an empty name in SinkConfig.Topics leaves that topic out).
func (s *Sink) Topics() []string {
	var out []string
	for _, t := range []string{s.cfg.Topics.Events, s.cfg.Topics.Consent, s.cfg.Topics.Inbound, s.cfg.Topics.Audit} {
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

// Lag returns how many messages of the sink's topics its group has not committed yet,
// that is, are not in ClickHouse yet. Zero means the sink has caught up with everything
// written before the call.
func (s *Sink) Lag(ctx context.Context) (int64, error) {
	return Lag(ctx, s.cfg.Brokers, s.cfg.Group, s.Topics()...)
}

// WaitCaughtUp returns when Lag is zero, polling every 50ms, or with ctx's error.
func (s *Sink) WaitCaughtUp(ctx context.Context) error {
	return WaitCaughtUp(ctx, s.cfg.Brokers, s.cfg.Group, s.Topics()...)
}

// Run consumes until ctx is cancelled, then flushes what is pending (within
// ShutdownTimeout) and returns nil. It returns an error only when a reader fails for
// good; the other topics are then flushed and stopped too.
func (s *Sink) Run(ctx context.Context) error {
	if s.cfg.Conn == nil {
		return errors.New("sink: no ClickHouse connection")
	}
	if len(s.cfg.Brokers) == 0 {
		return errors.New("sink: no Kafka brokers")
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range []*pipeline{
		s.newPipeline(s.cfg.Topics.Events, func() buffer { return &eventsBuffer{} }),
		s.newPipeline(s.cfg.Topics.Consent, func() buffer { return &consentBuffer{} }),
		s.newPipeline(s.cfg.Topics.Inbound, func() buffer { return &inboundBuffer{} }),
		s.newPipeline(s.cfg.Topics.Audit, func() buffer { return &apiAuditBuffer{} }),
	} {
		if p.topic == "" {
			continue
		}
		g.Go(func() error { return p.run(gctx) })
	}
	return g.Wait()
}

// pipeline moves one topic into one table. It fills one batch while the previous one
// is being inserted and committed, so decoding and ClickHouse's work overlap; a batch
// is committed only after the one before it, so committed offsets never pass rows
// that are not in ClickHouse.
type pipeline struct {
	s     *Sink
	topic string
	table string
	log   *slog.Logger

	cur, spare *batch // the batch being filled; a flushed one, ready for reuse
	newBuf     func() buffer

	pendingGauge prometheus.Gauge
}

// batch is the messages taken from Kafka since the previous batch: how many, the
// oldest one's arrival, the highest one per partition (what its commit covers), and
// their decoded rows.
type batch struct {
	buf       buffer
	pending   int
	oldest    time.Time
	offsets   map[int]kafka.Message
	undecoded int
}

func (b *batch) reset() {
	b.buf.reset()
	clear(b.offsets)
	b.pending, b.undecoded = 0, 0
}

func (s *Sink) newPipeline(topic string, newBuf func() buffer) *pipeline {
	table := newBuf().table()
	return &pipeline{s: s, topic: topic, table: table, newBuf: newBuf,
		cur:          &batch{buf: newBuf(), offsets: map[int]kafka.Message{}},
		pendingGauge: s.metrics.pending.WithLabelValues(table),
		log:          s.log.With("topic", topic, "table", table)}
}

type committer interface {
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

func (p *pipeline) run(ctx context.Context) error {
	// The sink writes batches of up to a second anyway: let a fetch gather 64 KiB
	// instead of asking the broker again for every few records. The wait, 500 ms, is what
	// the last events of a campaign wait at most (about 375 ms); kafka-go leaves the
	// broker a quarter of it to answer (see kafkax.ReaderOptions).
	const fetchWait = 500 * time.Millisecond
	r := kafkax.NewGroupReader(p.s.cfg.Brokers, p.s.cfg.Group, p.topic, kafkax.ReaderOptions{MinBytes: kafkax.BatchedFetch, MaxWait: fetchWait})
	defer func() {
		if err := r.Close(); err != nil {
			p.log.Warn("close reader", "err", err)
		}
	}()

	// At most one batch is in flight: flushing is that batch, done reports its end.
	// Its context ends with the loop, so a batch ClickHouse keeps refusing cannot hold
	// up the shutdown, which retries it within ShutdownTimeout.
	flushCtx, cancelFlush := context.WithCancel(ctx)
	defer cancelFlush()
	var (
		flushing *batch
		done     chan error
		flushErr error // the in-flight batch's error: its context ended before the commit
	)
	// finish records the end of the batch in flight; false means it was not committed.
	finish := func(err error) bool {
		done, flushErr = nil, err
		if err != nil {
			return false
		}
		flushing.reset()
		p.spare, flushing = flushing, nil
		return true
	}
	// settle waits for the batch in flight, if any; false means it was not committed.
	settle := func() bool {
		if done == nil {
			return flushErr == nil
		}
		return finish(<-done)
	}
	// startFlush sends the current batch on its way, once the one before it is
	// committed, and starts a new one.
	startFlush := func() bool {
		if !settle() {
			return false
		}
		flushing, p.cur = p.cur, p.spare
		if p.cur == nil {
			p.cur = &batch{buf: p.newBuf(), offsets: map[int]kafka.Message{}}
		}
		p.spare = nil
		done = make(chan error, 1)
		go func(b *batch) { done <- p.flush(flushCtx, r, b) }(flushing)
		return true
	}

	// Messages are fetched in this loop, so nothing is taken while a full batch waits
	// for the one before it (retried while ClickHouse refuses it): the reader's own
	// bounded queue is all that is read ahead. A batch is sent when it is full, when its
	// oldest message is FlushInterval old, or when no message has come for a while:
	// fetching then ends with the batch's deadline.
	//
	// "A while" is half the fetch wait (no fetch came back full in it), or IdleFlush
	// once the topic is quiet: a fetch waited out the broker's wait (kafka-go gives it
	// 375 of the 500 ms), so less than a fetch's worth is arriving and the batch would
	// only wait for the age rule (the last events of a burst, a trickle). A busy topic's
	// fetches come back full and at once, and its batches grow to size or age.
	var (
		runErr       error
		due          = batchDeadline{ctx: ctx}
		fetchFailing int       // fetches failed in a row
		last         time.Time // when the latest message came
		quietAt      time.Time // when the latest message the loop waited long for came
	)
	idle := p.s.cfg.IdleFlush
	// closeAt is when the open batch goes: by age, or after a gap with no message.
	closeAt := func(now time.Time) time.Time {
		at := p.cur.oldest.Add(p.s.cfg.FlushInterval)
		if idle <= 0 {
			return at
		}
		gap := fetchWait / 2
		if now.Sub(quietAt) < fetchWait {
			gap = idle
		}
		return minTime(at, last.Add(gap))
	}
	defer due.clear(ctx)
loop:
	for {
		asked := time.Now()
		m, err := r.FetchMessage(due.ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if due.ctx.Err() != nil { // the batch is old enough, or no message came
				now := time.Now()
				if at := closeAt(now); now.Before(at) {
					due.set(ctx, at) // messages came since the deadline was set
					continue
				}
				due.clear(ctx)
				if !startFlush() {
					break
				}
				continue
			}
			// The broker is away (an outage, a restart): the reader reconnects by itself;
			// the sink waits for it rather than exiting, keeping the batch it has.
			if fetchFailing == 0 {
				p.log.Warn("fetch failed; retrying until the broker is back", "err", err)
			}
			fetchFailing++
			select {
			case <-ctx.Done():
				break loop
			case <-time.After(min(time.Duration(fetchFailing)*100*time.Millisecond, time.Second)):
			}
			continue
		}
		if fetchFailing > 0 {
			p.log.Info("fetching again", "failed_fetches", fetchFailing)
			fetchFailing = 0
		}
		now := time.Now()
		waitedOut := now.Sub(asked) >= fetchWait/2
		if waitedOut {
			quietAt = now
		}
		last = now
		if done != nil { // recycle a batch whose flush has ended
			select {
			case err := <-done:
				if !finish(err) {
					break loop
				}
			default:
			}
		}
		p.add(m)
		if p.cur.pending == 1 {
			due.set(ctx, closeAt(now))
		} else if d, ok := due.ctx.Deadline(); waitedOut && ok && closeAt(now).Before(d) {
			due.set(ctx, closeAt(now)) // the topic went quiet with a batch open
		}
		if p.cur.pending >= p.s.cfg.BatchRows {
			due.clear(ctx)
			if !startFlush() {
				break
			}
		}
	}
	cancelFlush()

	// Shutdown: the batch in flight first, then the current one, in order, within
	// ShutdownTimeout. Whatever is not inserted is not committed: Kafka redelivers it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.s.cfg.ShutdownTimeout)
	defer cancel()
	settle()
	if flushing != nil { // it failed because ctx ended: retry it
		if err := p.flush(fctx, r, flushing); err != nil {
			p.log.Warn("rows not inserted at shutdown; Kafka will redeliver them",
				"rows", flushing.buf.len()+p.cur.buf.len(), "err", err)
			return runErr
		}
	}
	if p.cur.pending > 0 {
		if err := p.flush(fctx, r, p.cur); err != nil {
			p.log.Warn("pending rows not inserted at shutdown; Kafka will redeliver them",
				"rows", p.cur.buf.len(), "err", err)
		}
	}
	return runErr
}

// batchDeadline is the context fetching runs under: the run's own, or, while a batch
// is open, one that ends when the batch is due.
type batchDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (d *batchDeadline) set(parent context.Context, at time.Time) {
	d.clear(parent)
	d.ctx, d.cancel = context.WithDeadline(parent, at)
}

func (d *batchDeadline) clear(parent context.Context) {
	if d.cancel != nil {
		d.cancel()
	}
	d.ctx, d.cancel = parent, nil
}

func (p *pipeline) add(m kafka.Message) {
	b := p.cur
	if b.pending == 0 {
		b.oldest = time.Now()
	}
	b.pending++
	p.pendingGauge.Inc()
	if prev, ok := b.offsets[m.Partition]; !ok || m.Offset > prev.Offset {
		b.offsets[m.Partition] = m
	}
	if err := b.buf.add(m.Value); err != nil {
		b.undecoded++
		p.s.metrics.decodeErrors.WithLabelValues(p.table).Inc()
		p.log.Warn("skipping undecodable message", "partition", m.Partition, "offset", m.Offset, "err", err)
	}
}

// flush inserts the rows of b, retrying the same batch with backoff until ClickHouse
// accepts it, then commits its offsets. It returns an error only when ctx ends first;
// the batch then stays uncommitted. It leaves b as it was: the caller resets it.
func (p *pipeline) flush(ctx context.Context, c committer, b *batch) error {
	start := time.Now()
	table := p.table
	rows := b.buf.len()
	if rows > 0 {
		backoff := p.s.minBackoff
		for attempt := 1; ; attempt++ {
			err := b.buf.insert(ctx, p.s.cfg.Conn)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.s.metrics.insertErrors.WithLabelValues(table).Inc()
			p.log.Warn("insert failed; retrying the same batch", "rows", rows, "attempt", attempt,
				"retry_in", backoff, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			backoff = min(backoff*2, p.s.maxBackoff)
		}
	}
	msgs := make([]kafka.Message, 0, len(b.offsets))
	for _, m := range b.offsets {
		msgs = append(msgs, m)
	}
	if err := c.CommitMessages(ctx, msgs...); err != nil {
		// The rows are in ClickHouse; Kafka will redeliver them, and duplicates do not
		// change any figure. Carrying on lets the next commit cover these offsets.
		p.s.metrics.commitErrors.WithLabelValues(table).Inc()
		p.log.Warn("commit failed after insert; messages will be redelivered", "rows", rows, "err", err)
	}
	p.s.metrics.rows.WithLabelValues(table).Add(float64(rows))
	p.s.metrics.batches.WithLabelValues(table).Inc()
	p.s.metrics.batchSeconds.WithLabelValues(table).Observe(time.Since(start).Seconds())
	p.log.Debug("batch flushed", "rows", rows, "messages", b.pending, "undecodable", b.undecoded,
		"age", time.Since(b.oldest), "took", time.Since(start))
	p.pendingGauge.Sub(float64(b.pending))
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
