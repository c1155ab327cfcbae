package app

import (
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/throttle"
)

// BenchmarkJourneyTriggerToSendE2E: custom events published to herald.events at 2,000 a
// second for 5 s enter a journey whose first step sends; the latency is from an event's
// publish to the sandbox accepting its message: the engine (consume, enter, queue the
// job), the worker (claim, consent, suppression, window, a frequency cap of the
// journeys' category, quiet hours, pair rate, sender rate, render) and the provider
// call over loopback HTTP. The baseline, in the same run, is the same stack's campaign
// path without the journey: the same number of jobs of an ordinary campaign written
// straight to herald.outbound at the same pace, publish to acceptance.
//
//	go test ./internal/app -run '^$' -bench JourneyTriggerToSendE2E -benchtime 1x
func BenchmarkJourneyTriggerToSendE2E(b *testing.B) {
	const rate, seconds = 2000, 5
	const n = rate * seconds
	bkk := time.Now().In(time.FixedZone("ICT", 7*3600)).Hour()
	quiet, err := throttle.ParseQuietHours(fmt.Sprintf("%02d:00-%02d:00", (bkk+6)%24, (bkk+7)%24)) // checked, never quiet now
	if err != nil {
		b.Fatal(err)
	}
	caps, err := throttle.ParseCaps("automated:3/24h,marketing:3/24h")
	if err != nil {
		b.Fatal(err)
	}
	s, ctx := testStackWith(b, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Templates: welcomeSandbox},
		func(c *Config, _ *Stack) { c.FrequencyCaps, c.QuietHours = caps, quiet })
	d := s.Deps
	comp := seedAudience(b, ctx, d, 2*n*b.N+1, e2eTemplate) // fresh contacts each round (a contact enters once)
	const pnid = "106540352240009"
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: pnid, Channel: "whatsapp", PhoneNumberID: pnid, Token: DevSandboxToken, Rate: 10000}); err != nil {
		b.Fatal(err)
	}
	if _, err := AddJourney(ctx, d, []byte("id: t2s\nsenders: [\""+pnid+"\"]\nentry: {event: custom, name: signup}\nsteps:\n  - id: hi\n    send: {template: welcome}\n")); err != nil {
		b.Fatal(err)
	}
	if err := comp.Campaigns.EnsureRunning(ctx, dispatcher.Campaign{ID: "base", Template: "welcome", Senders: []string{pnid}}); err != nil {
		b.Fatal(err)
	}
	evw, outw := d.Writer(d.Topics.Events), d.Writer(d.Topics.Outbound)
	members, err := comp.Contacts.Evaluate(ctx, "customer")
	if err != nil || members.GetCardinality() != uint64(2*n*b.N+1) {
		b.Fatalf("audience %d, %v", members.GetCardinality(), err)
	}
	ids := members.ToArray()
	// paced publishes msg(c) for contacts at rate a second, noting when each went.
	paced := func(w *kafka.Writer, contacts []uint32, msg func(uint32) kafka.Message) map[uint32]time.Time {
		at := make(map[uint32]time.Time, len(contacts))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, k := time.Now(), 0
		for k < len(contacts) {
			<-tick.C
			due := min(int(time.Since(start).Seconds()*rate), len(contacts)) - k
			msgs := make([]kafka.Message, 0, due)
			now := time.Now()
			for ; due > 0; due-- {
				c := contacts[k]
				k++
				msgs = append(msgs, msg(c))
				at[c] = now
			}
			go func() { _ = w.WriteMessages(ctx, msgs...) }()
		}
		return at
	}
	// accepted waits for the campaigns' messages at the sandbox and answers the
	// latencies (publish to acceptance) of those prefix names.
	latencies := func(sent map[uint32]time.Time, prefix string) []time.Duration {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			var lat []time.Duration
			for _, r := range s.Sandbox.Records() {
				cid, c, ok := dispatcher.ParseCallbackData(r.CallbackData)
				if !ok || len(cid) < len(prefix) || cid[:len(prefix)] != prefix {
					continue
				}
				if at, ok := sent[c]; ok {
					lat = append(lat, r.AcceptedAt.Sub(at))
				}
			}
			if len(lat) >= len(sent) || time.Now().After(deadline) {
				if len(lat) < len(sent) {
					b.Fatalf("%d of %d %s messages accepted", len(lat), len(sent), prefix)
				}
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				return lat
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Warm up: the engine's consumer groups join and the journey loads.
	warm := ids[len(ids)-1]
	for len(s.Sandbox.Records()) == 0 {
		ev := events.New(events.Custom, "", warm, time.Now())
		ev.Name, ev.ID = "signup", "warm"
		v, _ := ev.Marshal()
		if err := evw.WriteMessages(ctx, kafka.Message{Key: kafkax.ContactKey(warm), Value: v}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The journey: custom events in, messages out.
		round := ids[2*n*i : 2*n*(i+1)]
		trig := paced(evw, round[:n], func(c uint32) kafka.Message {
			ev := events.New(events.Custom, "", c, time.Now())
			ev.Name, ev.ID = "signup", "e"+strconv.Itoa(i)+"-"+strconv.FormatUint(uint64(c), 10)
			v, _ := ev.Marshal()
			return kafka.Message{Key: kafkax.ContactKey(c), Value: v}
		})
		jl := latencies(trig, "j.t2s.")
		// The baseline: jobs straight to the worker, the same policy and send.
		base := paced(outw, round[n:], func(c uint32) kafka.Message {
			return kafka.Message{Key: []byte(pnid), Value: dispatcher.Job{Campaign: "base", Contact: c, Sender: pnid}.Marshal()}
		})
		bl := latencies(base, "base")
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		p := func(l []time.Duration, q int) time.Duration { return l[len(l)*q/100] }
		b.ReportMetric(ms(p(jl, 50)), "p50_ms")
		b.ReportMetric(ms(p(jl, 99)), "p99_ms")
		b.ReportMetric(ms(p(bl, 50)), "base_p50_ms")
		b.ReportMetric(ms(p(bl, 99)), "base_p99_ms")
		b.ReportMetric(float64(p(jl, 99))/float64(p(bl, 99)), "p99_vs_base")
	}
}
