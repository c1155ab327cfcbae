package journeys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"
)

// Segment and tag entries have no event on Kafka: the engine looks at the segment (or
// the tag's members) every SegmentEvery, compares with what it saw last time (a bitmap
// in Redis, P{jrn:ID}:members) and enters those who joined (segment, tag_added) or left
// (tag_removed); a journey with exit_on left_segment lets go of those who left. The first
// look only records the members: a new journey takes those who join from then on. One
// engine at a time looks at a journey (a lock), and entries dedupe as any other.

func (e *Engine) membersKey(id string) string { return e.cfg.Prefix + "{jrn:" + id + "}:members" }
func (e *Engine) segLockKey(id string) string { return e.cfg.Prefix + "{jrn:" + id + "}:seglock" }

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// PollSegments enters and exits contacts of segment- and tag-entered journeys.
func (e *Engine) PollSegments(ctx context.Context) error {
	var errs []error
	for id, r := range e.journeys() {
		tr := r.def.Entry
		var expr string
		switch tr.Event {
		case OnSegment:
			expr = tr.Segment
		case OnTagAdded, OnTagRemoved:
			expr = tr.Name
		default:
			continue
		}
		if r.state != Active {
			continue
		}
		if err := e.pollSegment(ctx, id, r, expr); err != nil {
			errs = append(errs, fmt.Errorf("journey %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) pollSegment(ctx context.Context, id string, r *runnable, expr string) error {
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	ok, err := e.cfg.Redis.SetNX(ctx, e.segLockKey(id), token, 4*e.cfg.Lease).Result()
	if err != nil || !ok {
		return err
	}
	defer unlockScript.Run(context.WithoutCancel(ctx), e.cfg.Redis, []string{e.segLockKey(id)}, token)
	cur, err := e.cfg.Segments.Evaluate(ctx, expr)
	if err != nil {
		return err
	}
	b, err := e.cfg.Redis.Get(ctx, e.membersKey(id)).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if err == nil {
		prev := roaring.New()
		if _, err := prev.FromUnsafeBytes(b); err != nil {
			prev = roaring.New()
		}
		joined, left := roaring.AndNot(cur, prev), roaring.AndNot(prev, cur)
		gen := "seg:" + strconv.FormatInt(e.cfg.Now().UnixMilli(), 10)
		enter := joined
		if r.def.Entry.Event == OnTagRemoved {
			enter = left
		}
		it := enter.Iterator()
		for it.HasNext() {
			c := it.Next()
			if err := e.enter(ctx, id, r, Event{ID: gen, Kind: r.def.Entry.Event, Name: r.def.Entry.Name, Contact: c, Time: e.cfg.Now()}); err != nil {
				return err
			}
		}
		if r.def.exits(ExitLeftSegment) {
			it := left.Iterator()
			for it.HasNext() {
				if err := e.Exit(ctx, id, it.Next(), ExitLeftSegment); err != nil {
					return err
				}
			}
		}
	}
	cur.RunOptimize()
	nb, err := cur.ToBytes()
	if err != nil {
		return err
	}
	return e.cfg.Redis.Set(ctx, e.membersKey(id), nb, 0).Err()
}
