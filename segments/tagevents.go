package segments

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// TagHook is told, after the write, of contacts whose tag changed: tag added to
// (added) or removed from ids, only those whose bit actually flipped. TagContacts
// (tags API and CLI, rule tags, journey tag steps) and imports and upserts call it.
// It must not fail the change: a hook that cannot pass it on (Kafka away) logs it, and
// whoever needs every change reconciles from the bitmaps.
type TagHook func(ctx context.Context, tag string, added bool, ids []uint32)

// OnTagChange sets the store's tag hook (the app publishes tag_added and tag_removed
// events with it).
func (s *Store) OnTagChange(h TagHook) *Store { s.tagHook = h; return s }

// tagsChanged passes a batch writer's tag flips to the hook.
func (s *Store) tagsChanged(ctx context.Context, ws []*batchWriter) {
	if s.tagHook == nil {
		return
	}
	for _, w := range ws {
		for name, slot := range w.slots {
			if name.field != "" {
				continue
			}
			var on, off []uint32
			for _, op := range w.bitOps[slot] {
				if op.v {
					on = append(on, op.id)
				} else {
					off = append(off, op.id)
				}
			}
			if len(on) > 0 {
				s.tagHook(ctx, name.v, true, on)
			}
			if len(off) > 0 {
				s.tagHook(ctx, name.v, false, off)
			}
		}
	}
}

// Matches evaluates a segment expression for the given contacts only: one pipelined
// BITFIELD_RO per bitmap the expression names (and the live contacts'), then the
// expression in Go per contact. It answers, per id, whether the contact is a live
// member. For one contact's change (a tag added) it costs a round trip, where Evaluate
// reads whole bitmaps.
func (s *Store) Matches(ctx context.Context, expr string, ids []uint32) ([]bool, error) {
	x, err := Parse(expr)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := []string{s.kAll()}
	walk(x, func(t *Term) {
		for _, v := range t.Values {
			keys = append(keys, s.key(t.Field, v))
		}
	})
	slices.Sort(keys[1:])
	keys = slices.Compact(keys)
	gets := make([]any, 0, 3*len(ids))
	for _, id := range ids {
		gets = append(gets, "get", "u1", id)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntSliceCmd, len(keys))
	for i, k := range keys {
		cmds[i] = redis.NewIntSliceCmd(ctx, append([]any{"bitfield_ro", k}, gets...)...)
		_ = pipe.Process(ctx, cmds[i])
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("match segment: %w", err)
	}
	bits := make(map[string][]int64, len(keys))
	for i, k := range keys {
		v, err := cmds[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("match segment: read %s: %w", k, err)
		}
		bits[k] = v
	}
	for i := range ids {
		has := func(k string) bool { b := bits[k]; return i < len(b) && b[i] == 1 }
		out[i] = has(s.kAll()) && s.matchOne(x, has)
	}
	return out, nil
}

// matchOne is eval for one live contact whose bits has answers.
func (s *Store) matchOne(x Expr, has func(key string) bool) bool {
	switch x := x.(type) {
	case *Term:
		for _, v := range x.Values {
			if has(s.key(x.Field, v)) {
				return true
			}
		}
		return false
	case *Not:
		return !s.matchOne(x.X, has)
	case *And:
		for _, y := range x.Xs {
			if !s.matchOne(y, has) {
				return false
			}
		}
		return true
	case *Or:
		for _, y := range x.Xs {
			if s.matchOne(y, has) {
				return true
			}
		}
		return false
	}
	panic(fmt.Sprintf("segments: unknown expression %T", x))
}

// ExprTags returns the tags a segment expression names (nil when it does not parse).
func ExprTags(expr string) []string {
	x, err := Parse(expr)
	if err != nil {
		return nil
	}
	var out []string
	walk(x, func(t *Term) {
		if t.Field == FieldTag {
			out = append(out, t.Values...)
		}
	})
	slices.Sort(out)
	return slices.Compact(out)
}
