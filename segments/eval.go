package segments

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"
)

// Warning is something in a segment expression that is valid but likely not meant:
// a tag no contact has (a typo, or a tag not imported yet). Pos is its 1-based column.
type Warning struct {
	Pos int    `json:"column"`
	Msg string `json:"message"`
}

func (w Warning) String() string { return fmt.Sprintf("column %d: %s", w.Pos, w.Msg) }

// TermCount is how many live contacts one term of an expression matches on its own.
type TermCount struct {
	Term  string `json:"term"` // canonical form, e.g. vip, country in (TH, ID)
	Pos   int    `json:"column"`
	Count uint64 `json:"contacts"`
}

// Explanation is what Explain tells about a segment expression.
type Explanation struct {
	Expr     string      `json:"expression"` // canonical form
	Count    uint64      `json:"contacts"`   // members
	Terms    []TermCount `json:"terms"`
	Warnings []Warning   `json:"warnings"`
}

// Evaluate parses a segment expression and returns its members: the ids of live
// contacts it matches. It reads every bitmap the expression names with one pipelined
// GET each and combines them in Go. A tag no contact has matches nobody (see Explain).
func (s *Store) Evaluate(ctx context.Context, expr string) (*roaring.Bitmap, error) {
	x, err := Parse(expr)
	if err != nil {
		return nil, err
	}
	e, err := s.load(ctx, x)
	if err != nil {
		return nil, err
	}
	return e.result(x), nil
}

// Count returns the number of members of a segment expression.
func (s *Store) Count(ctx context.Context, expr string) (uint64, error) {
	bm, err := s.Evaluate(ctx, expr)
	if err != nil {
		return 0, err
	}
	return bm.GetCardinality(), nil
}

// Explain evaluates a segment expression and reports its canonical form, its member
// count, each term's count, and warnings: tags and attribute values no contact has.
// Evaluate treats those as empty sets; Explain is how a CLI or console tells the user
// before a campaign goes to fewer people than meant.
func (s *Store) Explain(ctx context.Context, expr string) (Explanation, error) {
	x, err := Parse(expr)
	if err != nil {
		return Explanation{}, err
	}
	ex, _, err := s.explain(ctx, x)
	return ex, err
}

// explain is Explain of a parsed expression; it also returns the members.
func (s *Store) explain(ctx context.Context, x Expr) (Explanation, *roaring.Bitmap, error) {
	e, err := s.load(ctx, x)
	if err != nil {
		return Explanation{}, nil, err
	}
	members := e.result(x)
	ex := Explanation{Expr: x.String(), Count: members.GetCardinality()}
	walk(x, func(t *Term) {
		ex.Terms = append(ex.Terms, TermCount{Term: t.String(), Pos: t.Pos, Count: roaring.And(e.term(t), e.all).GetCardinality()})
		for _, v := range t.Values {
			k := s.key(t.Field, v)
			switch {
			case e.missing[k] && t.Field == FieldTag:
				ex.Warnings = append(ex.Warnings, Warning{t.Pos, fmt.Sprintf("unknown tag %q: no contact has it (TagCounts lists the tags)", v)})
			case e.missing[k]:
				ex.Warnings = append(ex.Warnings, Warning{t.Pos, fmt.Sprintf("no contact has %s:%s", t.Field, v)})
			case e.sets[k].IsEmpty() && t.Field == FieldTag:
				ex.Warnings = append(ex.Warnings, Warning{t.Pos, fmt.Sprintf("tag %q has no members", v)})
			}
		}
	})
	return ex, members, nil
}

func walk(x Expr, f func(*Term)) {
	switch x := x.(type) {
	case *Term:
		f(x)
	case *Not:
		walk(x.X, f)
	case *And:
		for _, y := range x.Xs {
			walk(y, f)
		}
	case *Or:
		for _, y := range x.Xs {
			walk(y, f)
		}
	}
}

// evaluation holds the bitmaps an expression needs; they are shared, never modified.
type evaluation struct {
	s       *Store
	all     *roaring.Bitmap
	sets    map[string]*roaring.Bitmap
	missing map[string]bool
}

// load fetches the universe and every bitmap x names, one GET per key in one pipeline.
// A bitmap of 10M contacts is 1.25 MB, so no single command holds Redis for long.
func (s *Store) load(ctx context.Context, x Expr) (*evaluation, error) {
	keys := []string{s.kAll()}
	walk(x, func(t *Term) {
		for _, v := range t.Values {
			keys = append(keys, s.key(t.Field, v))
		}
	})
	slices.Sort(keys[1:])
	keys = slices.Compact(keys)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("evaluate segment: read bitmaps: %w", err)
	}
	e := &evaluation{s: s, sets: make(map[string]*roaring.Bitmap, len(keys)), missing: map[string]bool{}}
	for i, k := range keys {
		b, err := cmds[i].Bytes()
		if errors.Is(err, redis.Nil) {
			e.missing[k] = true
		} else if err != nil {
			return nil, fmt.Errorf("evaluate segment: read %s: %w", k, err)
		}
		e.sets[k] = bitmapFromRedis(b)
	}
	e.all = e.sets[s.kAll()]
	return e, nil
}

// result is the expression's members, restricted to live contacts.
func (e *evaluation) result(x Expr) *roaring.Bitmap {
	return roaring.And(e.eval(x), e.all)
}

func (e *evaluation) term(t *Term) *roaring.Bitmap {
	if len(t.Values) == 1 {
		return e.sets[e.s.key(t.Field, t.Values[0])]
	}
	bs := make([]*roaring.Bitmap, len(t.Values))
	for i, v := range t.Values {
		bs[i] = e.sets[e.s.key(t.Field, v)]
	}
	return roaring.FastOr(bs...)
}

// eval computes x; the result may be one of the shared bitmaps, so callers must not
// modify it.
func (e *evaluation) eval(x Expr) *roaring.Bitmap {
	switch x := x.(type) {
	case *Term:
		return e.term(x)
	case *Not:
		return roaring.AndNot(e.all, e.eval(x.X))
	case *Or:
		bs := make([]*roaring.Bitmap, len(x.Xs))
		for i, y := range x.Xs {
			bs[i] = e.eval(y)
		}
		return roaring.FastOr(bs...)
	case *And:
		// a and not b: subtract b rather than intersect with its complement.
		var pos, neg []*roaring.Bitmap
		for _, y := range x.Xs {
			if n, ok := y.(*Not); ok {
				neg = append(neg, e.eval(n.X))
			} else {
				pos = append(pos, e.eval(y))
			}
		}
		if len(pos) == 0 {
			pos = append(pos, e.all)
		}
		// Smallest first: the intersection can only shrink.
		slices.SortFunc(pos, func(a, b *roaring.Bitmap) int { return cmp.Compare(a.GetCardinality(), b.GetCardinality()) })
		r := roaring.FastAnd(pos...)
		for _, n := range neg {
			if r.IsEmpty() {
				break
			}
			r.AndNot(n)
		}
		return r
	}
	panic(fmt.Sprintf("segments: unknown expression %T", x))
}

// bitmapFromRedis converts a Redis bitmap (bit 0 is the most significant bit of byte 0)
// to a roaring bitmap. It reads 8 bytes at a time and skips zero words, so sparse
// bitmaps cost little more than their size to scan.
func bitmapFromRedis(b []byte) *roaring.Bitmap {
	if len(b) == 0 {
		return roaring.New()
	}
	words := make([]uint64, (len(b)+7)/8)
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if w := binary.BigEndian.Uint64(b[i:]); w != 0 {
			words[i/8] = bits.Reverse64(w)
		}
	}
	if i < len(b) {
		var tail [8]byte
		copy(tail[:], b[i:])
		words[i/8] = bits.Reverse64(binary.BigEndian.Uint64(tail[:]))
	}
	return roaring.FromDense(words, false)
}
