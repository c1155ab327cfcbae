package app

import (
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

// BenchmarkCampaign runs whole campaigns of 5,000 consented contacts through every part
// (fan-out, kfake, worker with its policy checks, the sandbox over loopback HTTP, status
// webhooks, sink) with a sender fast enough not to be the limit, and reports msg/s from
// launch to completion, the raw send rate of the same sandbox in the same run, and their
// ratio. go test ./internal/app -run - -bench Campaign -benchtime 3x
func BenchmarkCampaign(b *testing.B) {
	const n = 5000
	s, ctx := testStack(b, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, ReadRate: 0.5, PairInterval: -1,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}})
	comp := seedAudience(b, ctx, s.Deps, n, e2eTemplate)
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: "s", Channel: "whatsapp", PhoneNumberID: "s", Token: DevSandboxToken, Rate: 10000}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var sent int64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"s"}}, comp.Senders)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
			b.Fatal(err)
		}
		st := waitCompleted(b, ctx, comp.Campaigns, cp.ID)
		elapsed += time.Since(start)
		sent += st.Sent
	}
	b.StopTimer()
	pipeline := float64(sent) / elapsed.Seconds()
	ceiling, _, err := rawRequestRate(ctx, n)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(pipeline, "msg/s")
	b.ReportMetric(ceiling, "raw-send/s")
	b.ReportMetric(pipeline/ceiling, "ratio")
}
