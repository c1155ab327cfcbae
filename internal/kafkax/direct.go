package kafkax

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
)

// DirectWriter writes each WriteMessages call as it is, at once: one produce request per
// broker the call touches (all its partitions led by that broker in one request), sent
// concurrently, acknowledged by every in-sync replica.
// It is for callers that batch on their own (serve's group commit): kafka-go's Writer
// would hold every call for its BatchTimeout and hand it across goroutines first.
// Messages go to the partitions kafka.Hash (NewWriter's balancer) picks for their keys,
// so a contact's events keep to one partition whichever writer wrote them.
type DirectWriter struct {
	topic  string
	client *kafka.Client
	hash   kafka.Hash

	mu     sync.Mutex
	parts  []int       // sorted partition ids; nil: ask the broker
	leader map[int]int // partition id → its leader's broker id
}

// NewDirectWriter returns a DirectWriter to topic.
func NewDirectWriter(brokers []string, topic string) *DirectWriter {
	return &DirectWriter{topic: topic, client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second,
		Transport: &kafka.Transport{}}}
}

// partitions returns the topic's partition ids, asking the broker once (and again after
// a failed write).
func (w *DirectWriter) partitions(ctx context.Context) ([]int, map[int]int, error) {
	w.mu.Lock()
	parts, leader := w.parts, w.leader
	w.mu.Unlock()
	if parts != nil {
		return parts, leader, nil
	}
	md, err := w.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{w.topic}})
	if err != nil {
		return nil, nil, fmt.Errorf("metadata of %s: %w", w.topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		var terr error
		if len(md.Topics) == 1 {
			terr = md.Topics[0].Error
		}
		return nil, nil, fmt.Errorf("metadata of %s: no partitions: %w", w.topic, errors.Join(terr, errors.New("topic not found")))
	}
	leader = make(map[int]int, len(md.Topics[0].Partitions))
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		leader[p.ID] = p.Leader.ID
	}
	slices.Sort(parts)
	w.mu.Lock()
	w.parts, w.leader = parts, leader
	w.mu.Unlock()
	return parts, leader, nil
}

// WriteMessages writes msgs and returns once every partition's broker acknowledged them;
// on an error some partitions may have them (a retry writes those again: consumers
// deduplicate by event id).
func (w *DirectWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	parts, leader, err := w.partitions(ctx)
	if err != nil {
		return err
	}
	byPart := make(map[int][]kafka.Record, len(parts))
	now := time.Now()
	for _, m := range msgs {
		p := w.hash.Balance(m, parts...)
		t := m.Time
		if t.IsZero() {
			t = now
		}
		byPart[p] = append(byPart[p], kafka.Record{Time: t, Key: kafka.NewBytes(m.Key), Value: kafka.NewBytes(m.Value), Headers: m.Headers})
	}
	timeout := int32(30_000)
	if d, ok := ctx.Deadline(); ok {
		timeout = int32(max(1, min(time.Until(d).Milliseconds(), 30_000)))
	}
	byLeader := map[int]*produceAPI.Request{}
	for p, recs := range byPart {
		req := byLeader[leader[p]]
		if req == nil {
			req = &produceAPI.Request{Acks: int16(kafka.RequireAll), Timeout: timeout, Topics: []produceAPI.RequestTopic{{Topic: w.topic}}}
			byLeader[leader[p]] = req
		}
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, produceAPI.RequestPartition{Partition: int32(p),
			RecordSet: protocol.RecordSet{Records: kafka.NewRecordReader(recs...)}})
	}
	errs := make(chan error, len(byLeader))
	for _, req := range byLeader {
		go func() { errs <- w.produce(ctx, req) }()
	}
	var all []error
	for range byLeader {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if len(all) > 0 {
		// The partitions or their leaders may have changed: ask again next time.
		w.mu.Lock()
		w.parts, w.leader = nil, nil
		w.mu.Unlock()
		return errors.Join(all...)
	}
	return nil
}

// produce sends one produce request (partitions of one leader) and checks that every
// partition in it acknowledged its records.
func (w *DirectWriter) produce(ctx context.Context, req *produceAPI.Request) error {
	if w.client.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.client.Timeout)
		defer cancel()
	}
	asked := make(map[int32]bool, len(req.Topics[0].Partitions))
	for _, p := range req.Topics[0].Partitions {
		asked[p.Partition] = true
	}
	m, err := w.client.Transport.RoundTrip(ctx, w.client.Addr, req)
	if err != nil {
		return fmt.Errorf("produce to %s: %w", w.topic, err)
	}
	res, ok := m.(*produceAPI.Response)
	if !ok {
		return fmt.Errorf("produce to %s: unexpected answer %T", w.topic, m)
	}
	var errs []error
	for _, t := range res.Topics {
		for _, p := range t.Partitions {
			if !asked[p.Partition] {
				continue
			}
			delete(asked, p.Partition)
			switch {
			case p.ErrorCode != 0:
				errs = append(errs, fmt.Errorf("produce to %s/%d: %w", w.topic, p.Partition, kafka.Error(p.ErrorCode)))
			case len(p.RecordErrors) > 0:
				errs = append(errs, fmt.Errorf("produce to %s/%d: %s", w.topic, p.Partition, p.RecordErrors[0].BatchIndexErrorMessage))
			}
		}
	}
	for p := range asked {
		errs = append(errs, fmt.Errorf("produce to %s/%d: no answer for the partition", w.topic, p))
	}
	return errors.Join(errs...)
}

// Close releases the writer's idle connections.
func (w *DirectWriter) Close() error {
	if t, ok := w.client.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return nil
}
