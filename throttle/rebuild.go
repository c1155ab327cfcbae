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
	Copies    int64 `json:"copies"`    // records read again (a retried write): skipped
	// UnknownLength counts chains whose length could not be told (a record that links to
	// none read shortly before it): they stay out of checkpoints.
	UnknownLength int `json:"unknown_length"`
}

// Rebuild replaces the Redis consent state with the one the ledger topic implies: it
// reads every partition from its start to its current end (records of one contact are
// in one partition, in order) and writes each contact's latest state per channel and
// purpose, its chain head and the chain's length, and marks every chain for the next
// checkpoint. A copy of a record already read (a retried write) changes nothing. Run it
// while nothing sends, grants or revokes: for a moment the state is being replaced.
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
	heads := map[uint32]chainEnd{}
	recent := newRecentRecords(1 << 16)
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
			switch {
			case derr != nil:
				rep.Undecoded++
			default:
				rep.Records++
				end, ok := heads[rec.ContactID].next(rec, recent)
				if !ok {
					rep.Copies++
					break
				}
				heads[rec.ContactID] = end
				recent.add(rec.Hash, end.records)
				state[key{rec.Channel, rec.Purpose, rec.ContactID}] = string(rec.Action[0]) + "|" + rec.ID
			}
			if m.Offset+1 >= end {
				break
			}
		}
		r.Close()
	}
	// Replace the state: drop the old keys, write the rebuilt ones in pipelined chunks.
	old, err := scanKeys(ctx, l.rdb, consentBase(l.prefix, l.rdb)+"*")
	if err != nil {
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
		id := strconv.FormatUint(uint64(c), 10)
		pipe.HSet(ctx, l.headKey(), id, h.hash)
		if h.records > 0 {
			pipe.HSet(ctx, l.lenKey(), id, h.records)
			pipe.SAdd(ctx, l.dirtyKey(), id)
		} else {
			rep.UnknownLength++
		}
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

// chainEnd is a contact's chain as a rebuild has read it so far: the hash of its last
// record and the number of records up to it (0 when unknown).
type chainEnd struct {
	hash    string
	records int64
}

// next returns the chain after rec, or false when rec is a copy of a record already read.
// A record that links to the head extends the chain; one that links to a record read
// shortly before (two writers raced for the head) becomes the head, the later one in the
// topic winning as it always has; one that links to neither leaves the length unknown.
func (c chainEnd) next(rec events.ConsentRecord, recent *recentRecords) (chainEnd, bool) {
	switch {
	case rec.PrevHash == c.hash:
		if c.hash != "" && c.records == 0 {
			return chainEnd{rec.Hash, 0}, true
		}
		return chainEnd{rec.Hash, c.records + 1}, true
	case rec.Hash == c.hash:
		return c, false
	}
	if _, ok := recent.get(rec.Hash); ok {
		return c, false
	}
	if n, ok := recent.get(rec.PrevHash); ok && n > 0 {
		return chainEnd{rec.Hash, n + 1}, true
	}
	return chainEnd{rec.Hash, 0}, true
}

// recentRecords remembers the chain position of the last size records read, to tell a
// retried write's copies and a raced write's fork from a broken chain.
type recentRecords struct {
	pos  map[string]int64
	ring []string
	next int
}

func newRecentRecords(size int) *recentRecords {
	return &recentRecords{pos: make(map[string]int64, size), ring: make([]string, size)}
}

func (r *recentRecords) get(hash string) (int64, bool) {
	n, ok := r.pos[hash]
	return n, ok
}

func (r *recentRecords) add(hash string, records int64) {
	if old := r.ring[r.next]; old != "" {
		delete(r.pos, old)
	}
	r.ring[r.next] = hash
	r.pos[hash] = records
	r.next = (r.next + 1) % len(r.ring)
}
