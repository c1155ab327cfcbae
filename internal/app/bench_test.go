package app

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/dispatcher/whatsapp"
	"github.com/herald-dev/herald/internal/sandbox"
	"github.com/herald-dev/herald/templates"
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
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		b.Fatal(err)
	}
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "+6681%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, &csv, ImportOptions{Source: "bench.csv"}); err != nil {
		b.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		b.Fatal(err)
	}
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
	ceiling := rawSendRate(b, ctx, s, n)
	b.ReportMetric(pipeline, "msg/s")
	b.ReportMetric(ceiling, "raw-send/s")
	b.ReportMetric(pipeline/ceiling, "ratio")
}

// rawSendRate is the baseline of the same run: how many sends per second the WhatsApp
// client alone gets from the same sandbox over loopback, 64 at a time, with no Kafka,
// Redis, policy or webhooks. The pipeline's ratio to it is what Herald's own work costs.
func rawSendRate(b *testing.B, ctx context.Context, s *Stack, n int) float64 {
	s.Sandbox.AddTemplate(sandbox.ApprovedTemplate{Name: "raw", Language: "en_US", Category: "UTILITY"})
	client := s.Deps.WhatsAppClient()
	req := whatsapp.SendRequest{Type: "template", Template: &whatsapp.Template{Name: "raw", Language: whatsapp.Language{Code: "en_US"}}}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				r := req
				r.To = fmt.Sprintf("+6689%07d", i)
				if _, err := client.Send(ctx, "raw-bench", DevSandboxToken, r); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
