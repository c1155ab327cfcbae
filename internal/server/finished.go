package server

import (
	"sync"

	"github.com/herald-dev/herald/dispatcher"
)

// finishedKeys remembers sends found finished in Redis (a finished send never goes back
// in doubt), so that their later statuses — Meta posts sent, delivered and read of a
// message apart — settle nothing without asking Redis again. Bounded: two generations of
// up to max/2 keys each; the older is dropped when the newer fills.
type finishedKeys struct {
	mu       sync.Mutex
	cur, old map[dispatcher.Key]struct{}
	max      int
}

// defaultFinishedKeys bounds the memory of finished sends (about 64 bytes a key).
const defaultFinishedKeys = 1 << 20

func (f *finishedKeys) has(k dispatcher.Key) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.cur[k]; ok {
		return true
	}
	_, ok := f.old[k]
	return ok
}

func (f *finishedKeys) add(k dispatcher.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	limit := f.max
	if limit <= 0 {
		limit = defaultFinishedKeys
	}
	if f.cur == nil {
		f.cur = map[dispatcher.Key]struct{}{}
	}
	if len(f.cur) >= limit/2 {
		f.old, f.cur = f.cur, make(map[dispatcher.Key]struct{}, limit/2)
	}
	f.cur[k] = struct{}{}
}

// unsettled returns the statuses whose sends are not known finished (sts itself when
// none is).
func (f *finishedKeys) unsettled(sts []dispatcher.Settlement) []dispatcher.Settlement {
	f.mu.Lock()
	defer f.mu.Unlock()
	known := func(k dispatcher.Key) bool {
		if _, ok := f.cur[k]; ok {
			return true
		}
		_, ok := f.old[k]
		return ok
	}
	for i, st := range sts {
		if !known(st.Key) {
			continue
		}
		// Copy the rest that are not known, from the first known one on.
		out := append(make([]dispatcher.Settlement, 0, len(sts)-1), sts[:i]...)
		for _, st := range sts[i+1:] {
			if !known(st.Key) {
				out = append(out, st)
			}
		}
		return out
	}
	return sts
}
