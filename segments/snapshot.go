package segments

import (
	"context"
	"fmt"
	"iter"
	"math"

	"github.com/RoaringBitmap/roaring/v2"
)

// Snapshot is the membership of a segment at one moment: the dispatcher takes one at
// launch and streams its members in id order, resuming after the last id it finished.
// A Snapshot is immutable and safe for concurrent use.
type Snapshot struct {
	bm *roaring.Bitmap
}

// Snapshot evaluates a segment expression and freezes its members.
func (s *Store) Snapshot(ctx context.Context, expr string) (*Snapshot, error) {
	bm, err := s.Evaluate(ctx, expr)
	if err != nil {
		return nil, err
	}
	return NewSnapshot(bm), nil
}

// NewSnapshot freezes a set of contact ids (a copy is kept, bm may change afterwards).
func NewSnapshot(bm *roaring.Bitmap) *Snapshot {
	c := bm.Clone()
	c.RunOptimize()
	return &Snapshot{bm: c}
}

// Len is the number of members.
func (sn *Snapshot) Len() uint64 { return sn.bm.GetCardinality() }

// Bitmap returns a copy of the members.
func (sn *Snapshot) Bitmap() *roaring.Bitmap { return sn.bm.Clone() }

// Contains reports whether id is a member.
func (sn *Snapshot) Contains(id uint32) bool { return sn.bm.Contains(id) }

// After yields the members greater than after, in increasing order: After(0) yields
// them all (contact ids start at 1), After(checkpoint) resumes a fan-out.
func (sn *Snapshot) After(after uint32) iter.Seq[uint32] {
	return func(yield func(uint32) bool) {
		if after == math.MaxUint32 {
			return
		}
		it := sn.bm.Iterator()
		it.AdvanceIfNeeded(after + 1)
		for it.HasNext() {
			if !yield(it.Next()) {
				return
			}
		}
	}
}

// Next fills buf with the members greater than after, in increasing order, and returns
// the filled part: empty when none is left. The last id returned is the next call's
// after, so a loop of Next calls streams the snapshot in batches of len(buf).
func (sn *Snapshot) Next(after uint32, buf []uint32) []uint32 {
	if after == math.MaxUint32 || len(buf) == 0 {
		return buf[:0]
	}
	it := sn.bm.Iterator()
	it.AdvanceIfNeeded(after + 1)
	n := 0
	for n < len(buf) && it.HasNext() {
		buf[n] = it.Next()
		n++
	}
	return buf[:n]
}

// Preview is a segment's explanation and a sample of its members' profiles.
type Preview struct {
	Explanation
	Sample []Contact `json:"sample"`
}

// Preview evaluates a segment expression and loads up to limit member profiles, spread
// evenly over the members in id order (the same sample every time for the same
// members), with the explanation Explain gives.
func (s *Store) Preview(ctx context.Context, expr string, limit int) (Preview, error) {
	x, err := Parse(expr)
	if err != nil {
		return Preview{}, err
	}
	ex, bm, err := s.explain(ctx, x)
	if err != nil {
		return Preview{}, err
	}
	p := Preview{Explanation: ex}
	n := bm.GetCardinality()
	if limit <= 0 || n == 0 {
		return p, nil
	}
	k := min(uint64(limit), n)
	ids := make([]uint32, 0, k)
	for i := range k {
		id, err := bm.Select(uint32(i * n / k))
		if err != nil {
			return p, fmt.Errorf("sample segment: %w", err)
		}
		ids = append(ids, id)
	}
	cs, err := s.Profiles(ctx, ids)
	if err != nil {
		return p, err
	}
	for _, c := range cs {
		if c.ID != 0 {
			p.Sample = append(p.Sample, c)
		}
	}
	return p, nil
}
