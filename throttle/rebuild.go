package throttle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
)

// RebuildReport says what a rebuild read and applied.
type RebuildReport struct {
	Records   int64 `json:"records"`   // ledger records read
	Contacts  int   `json:"contacts"`  // contacts with a consent state afterwards
	Undecoded int64 `json:"undecoded"` // records that failed to decode or verify (skipped)
}

// Rebuild replaces the Redis consent state with the one the ledger topic implies: it
// reads every partition from its start to its current end (records of one contact are
// in one partition, in order) and writes each contact's latest state per channel and
// purpose, and its chain head. Run it while nothing sends, grants or revokes: for a moment
// the state is being replaced.
func (l *Ledger) Rebuild(ctx context.Context, brokers []string, topic string) (RebuildReport, error) {
	var rep RebuildReport
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return rep, fmt.Errorf("consent rebuild: %w", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return rep, fmt.Errorf("consent rebuild: topic %s not found", topic)
	}
	type key struct {
		channel, purpose string
		contact          uint32
	}
	state := map[key]string{}
	heads := map[uint32]string{}
	for _, p := range md.Topics[0].Partitions {
		lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(p.ID)}}})
		if err != nil {
			return rep, fmt.Errorf("consent rebuild: offsets: %w", err)
		}
		end := lo.Topics[topic][0].LastOffset
		if end <= 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			r.Close()
			return rep, err
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return rep, fmt.Errorf("consent rebuild: read partition %d: %w", p.ID, err)
			}
			rec, derr := events.UnmarshalConsent(m.Value)
			if derr != nil {
				rep.Undecoded++
			} else {
				rep.Records++
				state[key{rec.Channel, rec.Purpose, rec.ContactID}] = string(rec.Action[0]) + "|" + rec.ID
				heads[rec.ContactID] = rec.Hash
			}
			if m.Offset+1 >= end {
				break
			}
		}
		r.Close()
	}
	// Replace the state: drop the old keys, write the rebuilt ones in pipelined chunks.
	var old []string
	iter := l.rdb.Scan(ctx, 0, l.prefix+"consent:*", 1000).Iterator()
	for iter.Next(ctx) {
		old = append(old, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return rep, fmt.Errorf("consent rebuild: scan: %w", err)
	}
	pipe := l.rdb.Pipeline()
	for _, k := range old {
		pipe.Unlink(ctx, k)
	}
	n := 0
	flush := func(force bool) error {
		if n < 1000 && !force {
			return nil
		}
		n = 0
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("consent rebuild: write: %w", err)
		}
		return nil
	}
	for k, v := range state {
		pipe.HSet(ctx, l.stateKey(k.channel, k.purpose), strconv.FormatUint(uint64(k.contact), 10), v)
		n++
		if err := flush(false); err != nil {
			return rep, err
		}
	}
	for c, h := range heads {
		pipe.HSet(ctx, l.headKey(), strconv.FormatUint(uint64(c), 10), h)
		n++
		if err := flush(false); err != nil {
			return rep, err
		}
	}
	if err := flush(true); err != nil {
		return rep, err
	}
	rep.Contacts = len(heads)
	return rep, nil
}
