package journeys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/segments"
)

// Segment and tag entries ("membership" journeys) follow who is in a segment
// expression (entry: segment) or has a tag (entry: tag_added / tag_removed). The
// journey's view of who is in is a Redis bitmap, P{jrn:ID}:seg; whoever flips a
// contact's bit there (one SETBIT, which answers the old bit) owns that transition and
// acts on it: a contact who joined enters (tag_removed: who left), one who left exits
// with exit_on left_segment.
//
// Tag changes drive it at once: every tag flip is a tag_added / tag_removed event on
// herald.events (segments.Store's tag hook), and the engine evaluates the expression
// for that contact only (segments.Store.Matches). Changes no event carries (a country
// or locale changed by an import, a publish that failed) are caught by a slow
// reconcile (SegmentEvery, default 5 min) that compares the whole segment with the
// bitmap. The first look only records the members: a new journey takes those who join
// from then on.

func (e *Engine) segKey(id string) string     { return e.cfg.Prefix + "{jrn:" + id + "}:seg" }
func (e *Engine) segLockKey(id string) string { return e.cfg.Prefix + "{jrn:" + id + "}:seglock" }

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// flipScript: KEYS the journey's segment bitmap. ARGV contact, bit. Answers the old bit,
// or -1 when the journey has not looked at its segment yet.
var flipScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('SETBIT', KEYS[1], ARGV[1], ARGV[2])
`)

// membership returns the expression a segment- or tag-entered journey follows.
func membership(d *Definition) (string, bool) {
	switch d.Entry.Event {
	case OnSegment:
		return d.Entry.Segment, true
	case OnTagAdded, OnTagRemoved:
		return d.Entry.Name, true
	}
	return "", false
}

// watches reports whether a tag change may move contacts in or out of r's segment.
func (r *runnable) watches(tag string) bool {
	return slices.Contains(r.segTags, tag)
}

// TagMatcher evaluates a segment expression for a few contacts (segments.Store); when
// the engine's Segments has it, tag events move contacts at once.
type TagMatcher interface {
	Matches(ctx context.Context, expr string, ids []uint32) ([]bool, error)
}

// segmentChange handles a tag event for a journey whose segment names the tag: it
// evaluates the segment for the contact and acts on a transition it owns.
func (e *Engine) segmentChange(ctx context.Context, id string, r *runnable, t Event) error {
	m, ok := e.cfg.Segments.(TagMatcher)
	if !ok {
		return nil // the reconcile catches it
	}
	in, err := m.Matches(ctx, r.segExpr, []uint32{t.Contact})
	if err != nil {
		return err
	}
	bit := 0
	if in[0] {
		bit = 1
	}
	old, err := flipScript.Run(ctx, e.cfg.Redis, []string{e.segKey(id)}, t.Contact, bit).Int()
	if err != nil {
		return fmt.Errorf("journey %s segment: %w", id, err)
	}
	if old == -1 {
		// Not looked at yet: the first look (at most a poll away) records who is in.
		e.segReady.Delete(id)
		return nil
	}
	if old == bit {
		return nil
	}
	return e.transition(ctx, id, r, t.Contact, in[0], t)
}

// transition acts on a contact joining (joined) or leaving a journey's segment.
func (e *Engine) transition(ctx context.Context, id string, r *runnable, c uint32, joined bool, t Event) error {
	enter := joined
	if r.def.Entry.Event == OnTagRemoved {
		enter = !joined
	}
	if enter {
		if r.state != Active {
			return nil
		}
		t.Kind, t.Name, t.Contact = r.def.Entry.Event, r.def.Entry.Name, c
		return e.enter(ctx, id, r, t)
	}
	if r.def.Entry.Event != OnTagRemoved && r.def.exits(ExitLeftSegment) {
		return e.Exit(ctx, id, c, ExitLeftSegment)
	}
	return nil
}

// PollSegments reconciles every active segment- and tag-entered journey with its
// segment (Run does it every SegmentEvery, and at once for a journey not looked at).
func (e *Engine) PollSegments(ctx context.Context) error {
	return e.pollSegments(ctx, false)
}

func (e *Engine) pollSegments(ctx context.Context, onlyNew bool) error {
	var errs []error
	for id, r := range e.journeys() {
		if r.segExpr == "" || r.state != Active {
			continue
		}
		if _, ok := e.segReady.Load(id); ok && onlyNew {
			continue
		}
		if err := e.pollSegment(ctx, id, r); err != nil {
			errs = append(errs, fmt.Errorf("journey %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) pollSegment(ctx context.Context, id string, r *runnable) error {
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	ok, err := e.cfg.Redis.SetNX(ctx, e.segLockKey(id), token, 4*e.cfg.Lease).Result()
	if err != nil || !ok {
		return err
	}
	defer unlockScript.Run(context.WithoutCancel(ctx), e.cfg.Redis, []string{e.segLockKey(id)}, token)
	cur, err := e.cfg.Segments.Evaluate(ctx, r.segExpr)
	if err != nil {
		return err
	}
	b, err := e.cfg.Redis.Get(ctx, e.segKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		// The first look: record the members (a journey takes those who join from now).
		if err := e.cfg.Redis.SetNX(ctx, e.segKey(id), redisBitmap(cur), 0).Err(); err != nil {
			return err
		}
		e.segReady.Store(id, true)
		return nil
	}
	if err != nil {
		return err
	}
	e.segReady.Store(id, true)
	prev := bitmapOfRedis(b)
	changed := roaring.Xor(cur, prev)
	gen := "seg:" + strconv.FormatInt(e.cfg.Now().UnixMilli(), 10)
	if err := flipScript.Load(ctx, e.cfg.Redis).Err(); err != nil {
		return err
	}
	it := changed.ManyIterator()
	buf := make([]uint32, 2000)
	for {
		n := it.NextMany(buf)
		if n == 0 {
			return nil
		}
		pipe := e.cfg.Redis.Pipeline()
		olds := make([]*redis.Cmd, n)
		for i, c := range buf[:n] {
			bit := 0
			if cur.Contains(c) {
				bit = 1
			}
			olds[i] = flipScript.EvalSha(ctx, pipe, []string{e.segKey(id)}, c, bit)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for i, c := range buf[:n] {
			old, _ := olds[i].Int()
			joined := cur.Contains(c)
			if old == -1 || (old == 1) == joined {
				continue // another engine (or a tag event) took this transition
			}
			if err := e.transition(ctx, id, r, c, joined, Event{ID: gen, Time: e.cfg.Now()}); err != nil {
				return err
			}
		}
	}
}

// redisBitmap is bm as a Redis bitmap (bit 0 is the high bit of byte 0).
func redisBitmap(bm *roaring.Bitmap) []byte {
	if bm.IsEmpty() {
		return []byte{0}
	}
	b := make([]byte, bm.Maximum()/8+1)
	it := bm.Iterator()
	for it.HasNext() {
		c := it.Next()
		b[c>>3] |= 0x80 >> (c & 7)
	}
	return b
}

// bitmapOfRedis reads a Redis bitmap.
func bitmapOfRedis(b []byte) *roaring.Bitmap {
	bm := roaring.New()
	for i, x := range b {
		for x != 0 {
			bm.Add(uint32(i)<<3 | uint32(7-bits.TrailingZeros8(x)))
			x &= x - 1
		}
	}
	return bm
}

// WatchedTags returns the tags whose changes some journey that is not archived reacts
// to: those its entry segment (or entry tag) names and those a wait_for waits for. The
// tag hook publishes events for these only, so an import of a million tagged contacts
// costs no event when no journey follows its tags.
func (s *Store) WatchedTags(ctx context.Context) (map[string]bool, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, in := range list {
		if in.State == Archived {
			continue
		}
		d, err := Parse([]byte(in.Source))
		if err != nil {
			continue
		}
		if expr, ok := membership(d); ok {
			for _, t := range segments.ExprTags(expr) {
				out[t] = true
			}
		}
		for _, st := range d.Steps {
			if st.Kind == KindWaitFor && st.For != nil && (st.For.Event == OnTagAdded || st.For.Event == OnTagRemoved) {
				out[st.For.Name] = true
			}
		}
	}
	return out, nil
}
