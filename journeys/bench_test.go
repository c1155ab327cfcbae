package journeys

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
)

func usedMemory(b *testing.B, r *rig) int64 {
	b.Helper()
	info := r.eng.cfg.Redis.Info(r.ctx, "memory").Val()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory")
	return 0
}

func benchRig(b *testing.B, src string) *rig {
	b.Helper()
	rdb, prefix := testenv.Redis(b)
	ctx := context.Background()
	clk := newClock(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC))
	st := NewStore(rdb, prefix).WithClock(clk.now)
	if _, _, err := st.Save(ctx, []byte(src), check); err != nil {
		b.Fatal(err)
	}
	r := &rig{out: &recorder{}, evs: &recorder{}, clk: clk, store: st, ctx: ctx}
	contacts := segments.NewStore(rdb, prefix)
	r.newEngine = func() *Engine {
		e := NewEngine(Config{Redis: rdb, Prefix: prefix, Store: st, Campaigns: dispatcher.NewCampaigns(dispatcher.CampaignsConfig{Redis: rdb, Prefix: prefix}),
			Contacts: contacts, Segments: contacts, Outbound: discard{}, Events: discard{}, Now: clk.now, Lease: 30 * time.Second})
		if err := e.Refresh(ctx); err != nil {
			b.Fatal(err)
		}
		return e
	}
	r.eng = r.newEngine()
	return r
}

type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }

const waitingJourney = `id: waiting
senders: [s1]
entry: read
exit_on: [replied]
steps:
  - id: wait-reply
    wait_for: {event: replied, timeout: 30d, on_timeout: nudge}
  - id: nudge
    send: nudge_tpl
`

// enterAll enters contacts 1..n, 64 at a time.
func enterAll(b *testing.B, r *rig, n int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for c := 1; c <= n; c++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := r.eng.Handle(r.ctx, Event{ID: "r" + strconv.Itoa(c), Kind: OnRead, Contact: uint32(c)}); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}

// Redis memory per contact waiting in a journey (its instance, its entry history and
// its pending timer). HERALD_BENCH_JOURNEY_CONTACTS sets how many (default 20,000).
func BenchmarkJourneyMemoryPerContact(b *testing.B) {
	n := 20_000
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_JOURNEY_CONTACTS")); err == nil && v > 0 {
		n = v
	}
	for i := 0; i < b.N; i++ {
		r := benchRig(b, waitingJourney)
		before := usedMemory(b, r)
		enterAll(b, r, n)
		after := usedMemory(b, r)
		if got := r.eng.timers(r.ctx, "waiting"); got != int64(n) {
			b.Fatalf("%d timers, want %d", got, n)
		}
		b.ReportMetric(float64(after-before)/float64(n), "bytes/contact")
	}
}

// How late timers fire when 10,000 fall due in the same second: the clock jumps to their
// due time and the engine fires them all; lateness is the real time from the jump to
// each one's step having run (sends queued, state committed).
func BenchmarkJourneyTimerLateness10k(b *testing.B) {
	const n = 10_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := benchRig(b, waitingJourney)
		enterAll(b, r, n)
		r.clk.add(30 * 24 * time.Hour)
		b.StartTimer()
		start := time.Now()
		var lat []time.Duration
		var mu sync.Mutex
		done := 0
		for done < n {
			fired, err := r.eng.Tick(r.ctx)
			if err != nil {
				b.Fatal(err)
			}
			mu.Lock()
			for k := 0; k < fired; k++ {
				lat = append(lat, time.Since(start))
			}
			mu.Unlock()
			done += fired
			if fired == 0 {
				b.Fatalf("only %d of %d fired", done, n)
			}
		}
		sort.Slice(lat, func(a, c int) bool { return lat[a] < lat[c] })
		p99 := lat[len(lat)*99/100]
		b.ReportMetric(float64(p99.Milliseconds()), "p99_ms")
		b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50_ms")
		// Baseline in the same run: the least a fired timer costs, one read and one
		// compare-and-set script per timer, 64 at a time, with nothing else done.
		b.StopTimer()
		base := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for c := 1; c <= n; c++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				k := r.eng.instKey("base", uint32(c))
				r.eng.cfg.Redis.HGet(r.ctx, k, strconv.Itoa(c))
				commitScript.Run(r.ctx, r.eng.cfg.Redis, []string{k, r.eng.timersKey("base")}, c, 1, 1, "", "", "")
			}()
		}
		wg.Wait()
		floor := time.Since(base)
		b.ReportMetric(float64(floor.Milliseconds()), "baseline_ms")
		b.ReportMetric(float64(p99)/float64(floor), "p99_vs_baseline")
	}
}

// timedRecorder notes when each send job reaches herald.outbound.
type timedRecorder struct {
	mu sync.Mutex
	at map[uint32]time.Time
}

func (r *timedRecorder) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		if j, err := dispatcher.UnmarshalJob(m.Value); err == nil {
			if _, ok := r.at[j.Contact]; !ok {
				r.at[j.Contact] = now
			}
		}
	}
	return nil
}

func (r *timedRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.at)
}

// Trigger to send job: custom events published to Kafka at 2,000 a second enter a
// journey whose first step sends; the latency is from an event's publish to its send
// job on herald.outbound (through the Kafka consumer, the entry, the step). The
// worker's policy check and the provider call come after (see `herald bench e2e`).
func BenchmarkJourneyTriggerToSend(b *testing.B) {
	const rate, seconds = 2000, 5
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		rdb, prefix := testenv.Redis(b)
		brokers, topics := testenv.Kafka(b, 4)
		ctx, cancel := context.WithCancel(context.Background())
		st := NewStore(rdb, prefix)
		if _, _, err := st.Save(ctx, []byte("id: t2s\nsenders: [s1]\nentry: {event: custom, name: signup}\nsteps:\n  - id: hi\n    send: hi_tpl\n"), check); err != nil {
			b.Fatal(err)
		}
		out := &timedRecorder{at: map[uint32]time.Time{}}
		contacts := segments.NewStore(rdb, prefix)
		eng := NewEngine(Config{Redis: rdb, Prefix: prefix, Store: st, Campaigns: dispatcher.NewCampaigns(dispatcher.CampaignsConfig{Redis: rdb, Prefix: prefix}),
			Contacts: contacts, Segments: contacts, Outbound: out, Events: discard{}, Brokers: brokers, Topics: topics})
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		w := kafkax.NewWriter(brokers, topics.Events)
		// Warm up: the consumer group joins.
		warm := events.New(events.Custom, "", 1_000_000, time.Now())
		warm.Name = "signup"
		wb, _ := warm.Marshal()
		if err := w.WriteMessages(ctx, kafka.Message{Key: kafkax.ContactKey(1_000_000), Value: wb}); err != nil {
			b.Fatal(err)
		}
		for out.count() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		b.StartTimer()
		sent := make(map[uint32]time.Time, rate*seconds)
		tick := time.NewTicker(10 * time.Millisecond)
		c := uint32(0)
		start := time.Now()
		for c < rate*seconds {
			<-tick.C
			due := int(time.Since(start).Seconds()*rate) - int(c)
			msgs := make([]kafka.Message, 0, due)
			now := time.Now()
			for k := 0; k < due && c < rate*seconds; k++ {
				c++
				ev := events.New(events.Custom, "", c, now)
				ev.Name = "signup"
				ev.ID = fmt.Sprint("e", c)
				v, _ := ev.Marshal()
				msgs = append(msgs, kafka.Message{Key: kafkax.ContactKey(c), Value: v})
				sent[c] = now
			}
			go func() { _ = w.WriteMessages(ctx, msgs...) }()
		}
		tick.Stop()
		deadline := time.Now().Add(60 * time.Second)
		for out.count() < rate*seconds+1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		b.StopTimer()
		var lat []time.Duration
		out.mu.Lock()
		for id, at := range sent {
			if got, ok := out.at[id]; ok {
				lat = append(lat, got.Sub(at))
			}
		}
		out.mu.Unlock()
		cancel()
		<-done
		w.Close()
		if len(lat) < rate*seconds {
			b.Fatalf("%d of %d sends queued", len(lat), rate*seconds)
		}
		sort.Slice(lat, func(a, c int) bool { return lat[a] < lat[c] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	}
}
