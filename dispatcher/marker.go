package dispatcher

import (
	"context"
	"sync"
	"time"
)

// marker batches Tracker.MarkSending calls of concurrent sends into shared pipelines:
// each send is still marked just before its own request, but many sends in flight
// share one round trip. A call waits for the batch it joins; the first batch goes
// gather after the first mark (paced sends come one by one: without the wait nearly
// every batch would hold one), the next as soon as the one before it returns.
type marker struct {
	t      *Tracker
	gather time.Duration

	mu      sync.Mutex
	pending []markReq
	running bool
}

type markReq struct {
	key   Key
	proof SendProof
	res   chan markRes
}

type markRes struct {
	ok  bool
	err error
}

const maxMarkBatch = 256

// markGather is how long a mark waits for others to share its round trip: small beside
// a provider request, long enough for a few paced sends to join at thousands a second.
const markGather = time.Millisecond

// mark marks one send started, with what its policy check relied on; ok is false when
// the claim was lost.
func (m *marker) mark(ctx context.Context, k Key, p SendProof) (bool, error) {
	req := markReq{key: k, proof: p, res: make(chan markRes, 1)}
	m.mu.Lock()
	m.pending = append(m.pending, req)
	if !m.running {
		m.running = true
		go m.flush(context.WithoutCancel(ctx))
	}
	m.mu.Unlock()
	select {
	case r := <-req.res:
		return r.ok, r.err
	case <-ctx.Done():
		// The batch may still mark it; an unsent marked claim is settled as stale.
		return false, ctx.Err()
	}
}

// flush sends batches until none is pending.
func (m *marker) flush(ctx context.Context) {
	if m.gather > 0 {
		time.Sleep(m.gather)
	}
	for {
		m.mu.Lock()
		n := min(len(m.pending), maxMarkBatch)
		if n == 0 {
			m.running = false
			m.mu.Unlock()
			return
		}
		batch := append([]markReq(nil), m.pending[:n]...)
		m.pending = m.pending[n:]
		m.mu.Unlock()
		keys := make([]Key, len(batch))
		proofs := make([]SendProof, len(batch))
		for i, r := range batch {
			keys[i], proofs[i] = r.key, r.proof
		}
		oks, err := m.t.MarkSending(ctx, keys, proofs)
		for i, r := range batch {
			if err != nil {
				r.res <- markRes{err: err}
			} else {
				r.res <- markRes{ok: oks[i]}
			}
		}
	}
}
