package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Lag returns how many messages of topics the consumer group has not committed: the sum
// over partitions of the high watermark minus the committed offset (minus the log start
// when the group has committed nothing there). For the sink's group, zero means every
// message written before the call is in ClickHouse.
func Lag(ctx context.Context, brokers []string, group string, topics ...string) (int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return 0, fmt.Errorf("lag: metadata: %w", err)
	}
	partitions := map[string][]int{}
	offsetReqs := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return 0, fmt.Errorf("lag: topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			partitions[t.Name] = append(partitions[t.Name], p.ID)
			offsetReqs[t.Name] = append(offsetReqs[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	if len(partitions) == 0 {
		return 0, nil
	}
	lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: offsetReqs})
	if err != nil {
		return 0, fmt.Errorf("lag: list offsets: %w", err)
	}
	of, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: partitions})
	if err != nil {
		return 0, fmt.Errorf("lag: fetch offsets of group %s: %w", group, err)
	}
	if of.Error != nil {
		return 0, fmt.Errorf("lag: fetch offsets of group %s: %w", group, of.Error)
	}
	committed := map[string]map[int]int64{}
	for topic, ps := range of.Topics {
		committed[topic] = map[int]int64{}
		for _, p := range ps {
			if p.Error != nil {
				return 0, fmt.Errorf("lag: committed offset of %s/%d: %w", topic, p.Partition, p.Error)
			}
			committed[topic][p.Partition] = p.CommittedOffset
		}
	}
	var lag int64
	for topic, ps := range lo.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return 0, fmt.Errorf("lag: offsets of %s/%d: %w", topic, p.Partition, p.Error)
			}
			from := p.FirstOffset
			if c, ok := committed[topic][p.Partition]; ok && c > from {
				from = c
			}
			if p.LastOffset > from {
				lag += p.LastOffset - from
			}
		}
	}
	return lag, nil
}

// WaitCaughtUp polls Lag every 50ms until it is zero, or returns ctx's error (with the
// last lag seen).
func WaitCaughtUp(ctx context.Context, brokers []string, group string, topics ...string) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		lag, err := Lag(ctx, brokers, group, topics...)
		if err == nil && lag == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("wait for %s to catch up: %w", group, errors.Join(ctx.Err(), err))
			}
			return fmt.Errorf("wait for %s to catch up: %w (%d messages behind)", group, ctx.Err(), lag)
		case <-t.C:
		}
	}
}
