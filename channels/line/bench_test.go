package line_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/line"
	"github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

// BenchmarkPushVsMulticast sends the same campaign's message to the same number of
// contacts twice in each iteration — one push per contact (64 in flight), then
// multicast batches of 500 through SendBatch — against the sandbox with its rate limits
// lifted (what is measured is Herald's and HTTP's cost, not LINE's limits), and reports
// messages per second of each and their ratio, measured in the same run. At LINE's own
// limits the ratio is set by them: push 2,000 req/s is 2,000 msg/s, multicast 200 req/s
// × 500 is 100,000 msg/s.
func BenchmarkPushVsMulticast(b *testing.B) {
	const contacts, inFlight = 5000, 64
	sb := sandbox.New(sandbox.Config{Token: "tok", PushRate: 1 << 30, MulticastRate: 1 << 30})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	ch, err := line.New(line.Config{BaseURL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	s := dispatcher.Sender{ID: "l1", Channel: "line", Token: "tok", Rate: 2000}
	users := make([]string, contacts)
	for i := range users {
		users[i] = sandbox.UserID(fmt.Sprint(i))
	}
	ctx := context.Background()
	var pushDur, multiDur time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		ms := make([]dispatcher.Message, contacts)
		for i := range ms {
			ms[i] = msg(dispatcher.CallbackData(fmt.Sprintf("p%d", it), uint32(i+1)), users[i], "Spring sale: 20% off today")
		}
		t0 := time.Now()
		var wg sync.WaitGroup
		next := make(chan int)
		for range inFlight {
			wg.Go(func() {
				for i := range next {
					if _, err := ch.Send(ctx, s, ms[i]); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for i := range ms {
			next <- i
		}
		close(next)
		wg.Wait()
		pushDur += time.Since(t0)
		for i := range ms {
			ms[i].CallbackData = dispatcher.CallbackData(fmt.Sprintf("m%d", it), uint32(i+1))
		}
		t0 = time.Now()
		for i := 0; i < len(ms); i += line.MaxMulticast {
			for _, r := range ch.SendBatch(ctx, s, ms[i:min(i+line.MaxMulticast, len(ms))]) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
		multiDur += time.Since(t0)
	}
	push := float64(contacts*b.N) / pushDur.Seconds()
	multi := float64(contacts*b.N) / multiDur.Seconds()
	b.ReportMetric(push, "push_msgs/s")
	b.ReportMetric(multi, "multicast_msgs/s")
	b.ReportMetric(multi/push, "multicast/push")
	if st := sb.Stats(); st.Recipients != int64(2*contacts*b.N) {
		b.Fatalf("the sandbox recorded %d recipients, want %d", st.Recipients, 2*contacts*b.N)
	}
}
