package sandbox

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

// BenchmarkSend measures the send path over loopback with Herald's client, statuses
// scheduled and drained by Run (no webhook receiver).
func BenchmarkSend(b *testing.B) {
	sb := New(Config{Token: testToken, Throughput: 1e9, PairInterval: -1, DelayScale: -1, ReadRate: 0.3,
		Templates: []ApprovedTemplate{orderConfirmation}}, nil)
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 256
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sb.Run(ctx) }()
	defer func() { cancel(); <-done }()

	c := graph.NewClient(graph.ClientConfig{BaseURL: srv.URL, HTTPClient: srv.Client()})
	var n atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			req := graph.SendRequest{To: fmt.Sprintf("+1650%07d", i), Type: "template", Template: &graph.Template{
				Name: "order_confirmation", Language: graph.Language{Code: "en_US"},
				Components: []graph.Component{{Type: "body", Parameters: []graph.Parameter{
					{Type: "text", ParameterName: "first_name", Text: "Jessica"},
					{Type: "text", ParameterName: "order_number", Text: "SKBUP2-4CPIG9"},
				}}},
			}, BizOpaqueCallbackData: fmt.Sprintf("1:%d", i)}
			if _, err := c.Send(ctx, pnid, testToken, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
