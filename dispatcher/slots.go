package dispatcher

import (
	"math"
	"sync"
	"time"
)

// sendSlots sizes the worker's pool of send goroutines (and so its concurrent provider
// requests and HTTP connections) by Little's law: a sender paced at r msg/s whose
// requests take L seconds keeps r × L requests in flight. The pool holds twice the sum
// over the senders active in the last minute (headroom for latency spikes and bursts),
// at least min and at most max. It only grows: idle goroutines cost a few KB, and a
// pool that shrank would have to grow again at the next campaign.
type sendSlots struct {
	min, max int

	mu      sync.Mutex
	senders map[string]*senderLoad
}

type senderLoad struct {
	rate    float64 // msg/s the sender is paced at
	latency float64 // EWMA of its request latency, seconds
	last    time.Time
}

// latencyWeight is the EWMA weight of a new latency sample.
const latencyWeight = 0.1

func newSendSlots(min, max int) *sendSlots {
	return &sendSlots{min: min, max: max, senders: map[string]*senderLoad{}}
}

// observe records one request of sender (paced at rate msg/s) that took d.
func (s *sendSlots) observe(sender string, rate float64, d time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.senders[sender]
	if l == nil {
		l = &senderLoad{latency: d.Seconds()}
		s.senders[sender] = l
	}
	l.rate, l.last = rate, now
	l.latency += latencyWeight * (d.Seconds() - l.latency)
}

// want is the pool size the senders active in the last minute need.
func (s *sendSlots) want(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	need := 0.0
	for id, l := range s.senders {
		if now.Sub(l.last) > time.Minute {
			delete(s.senders, id)
			continue
		}
		need += l.rate * l.latency
	}
	return min(max(int(math.Ceil(2*need)), s.min), s.max)
}
