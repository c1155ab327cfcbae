package kafkax

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// DirectWriter writes each WriteMessages call as it is, at once: one produce request per
// partition the call touches, sent concurrently, acknowledged by every in-sync replica.
// It is for callers that batch on their own (serve's group commit): kafka-go's Writer
// would hold every call for its BatchTimeout and hand it across goroutines first.
// Messages go to the partitions kafka.Hash (NewWriter's balancer) picks for their keys,
// so a contact's events keep to one partition whichever writer wrote them.
type DirectWriter struct {
	topic  string
	client *kafka.Client
	hash   kafka.Hash

	mu    sync.Mutex
	parts []int // sorted partition ids; nil: ask the broker
}

// NewDirectWriter returns a DirectWriter to topic.
func NewDirectWriter(brokers []string, topic string) *DirectWriter {
	return &DirectWriter{topic: topic, client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second,
		Transport: &kafka.Transport{}}}
}

// partitions returns the topic's partition ids, asking the broker once (and again after
// a failed write).
func (w *DirectWriter) partitions(ctx context.Context) ([]int, error) {
	w.mu.Lock()
	parts := w.parts
	w.mu.Unlock()
	if parts != nil {
		return parts, nil
	}
	md, err := w.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{w.topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", w.topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		var terr error
		if len(md.Topics) == 1 {
			terr = md.Topics[0].Error
		}
		return nil, fmt.Errorf("metadata of %s: no partitions: %w", w.topic, errors.Join(terr, errors.New("topic not found")))
	}
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
	}
	slices.Sort(parts)
	w.mu.Lock()
	w.parts = parts
	w.mu.Unlock()
	return parts, nil
}

// WriteMessages writes msgs and returns once every partition's broker acknowledged them;
// on an error some partitions may have them (a retry writes those again: consumers
// deduplicate by event id).
func (w *DirectWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	parts, err := w.partitions(ctx)
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
	errs := make(chan error, len(byPart))
	for p, recs := range byPart {
		go func() {
			resp, err := w.client.Produce(ctx, &kafka.ProduceRequest{Topic: w.topic, Partition: p,
				RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...)})
			if err == nil && resp.Error != nil {
				err = resp.Error
			}
			if err == nil && len(resp.RecordErrors) > 0 {
				for _, e := range resp.RecordErrors {
					err = e
					break
				}
			}
			if err != nil {
				err = fmt.Errorf("produce to %s/%d: %w", w.topic, p, err)
			}
			errs <- err
		}()
	}
	var all []error
	for range byPart {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if len(all) > 0 {
		// The partitions or their leaders may have changed: ask again next time.
		w.mu.Lock()
		w.parts = nil
		w.mu.Unlock()
		return errors.Join(all...)
	}
	return nil
}

// Close releases the writer's idle connections.
func (w *DirectWriter) Close() error {
	if t, ok := w.client.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return nil
}
