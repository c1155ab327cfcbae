package email

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	mail "github.com/wneessen/go-mail"

	"github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

// benchConns is the number of SMTP connections both benchmarks use (the pool size, and
// the number of go-mail clients of the raw baseline), each driven by one goroutine.
const benchConns = 4

// BenchmarkSend measures messages per second through the adapter (compose, Message-ID,
// headers, pooled connections) into the sandbox. Compare with BenchmarkRawSMTP:
//
//	go test ./channels/email -run '^$' -bench . -benchtime 3000x -count 3
func BenchmarkSend(b *testing.B) {
	sb := startSandbox(b, sandbox.Config{})
	sc := senderFor(b, sb.Addr())
	sc.PoolSize, sc.MaxPerConn = benchConns, -1 // the same connections as the baseline, kept all along
	ch := newChannel(b, sc)
	msgs := make([]dispatcher.Message, 256)
	for i := range msgs {
		msgs[i] = message("42", uint32(i), fmt.Sprintf("c%d@mail.example", i), true)
		msgs[i].Unsubscribe = "https://shop.example/u/42/" + strconv.Itoa(i)
	}
	ctx := context.Background()
	// Warm the pool: connections are dialled before the clock starts (up to benchConns;
	// a worker may find another's connection idle and use it instead).
	runWorkers(b, benchConns, benchConns, func(i int) error { _, err := ch.Send(ctx, s1, msgs[i%len(msgs)]); return err })
	b.ReportAllocs()
	b.ResetTimer()
	runWorkers(b, b.N, benchConns, func(i int) error { _, err := ch.Send(ctx, s1, msgs[i%len(msgs)]); return err })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if d := ch.Dials("s1"); d > benchConns {
		b.Fatalf("%d dials, want at most %d", d, benchConns)
	}
}

// BenchmarkRawSMTP sends the same messages with go-mail alone (no Herald code) over the
// same number of connections: one go-mail Client per connection, dialled once, sending
// one message after another without NOOP or RSET (Herald sends neither). go-mail waits
// for each command's reply; Herald's adapter pipelines MAIL, RCPT and DATA (RFC 2920).
func BenchmarkRawSMTP(b *testing.B) {
	sb := startSandbox(b, sandbox.Config{})
	sc := senderFor(b, sb.Addr())
	clients := make([]*mail.Client, benchConns)
	for i := range clients {
		c, err := mail.NewClient(sc.Host, mail.WithPort(sc.Port), mail.WithTLSPolicy(mail.NoTLS), mail.WithHELO("localhost"),
			mail.WithoutNoop(), mail.WithoutRset())
		if err != nil {
			b.Fatal(err)
		}
		if err := c.DialWithContext(context.Background()); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
		b.Cleanup(func() { _ = c.Close() })
	}
	build := func(i int) (*mail.Msg, error) {
		m := mail.NewMsg(mail.WithNoDefaultUserAgent())
		if err := m.FromFormat("Shop News", "news@shop.example"); err != nil {
			return nil, err
		}
		if err := m.To(fmt.Sprintf("c%d@mail.example", i%256)); err != nil {
			return nil, err
		}
		m.Subject("Spring sale: 20% off")
		m.SetMessageID()
		m.SetDate()
		m.SetGenHeader("X-Herald-Callback", "42:"+strconv.Itoa(i%256))
		m.SetListUnsubscribe("https://shop.example/u/42/" + strconv.Itoa(i%256))
		m.SetListUnsubscribePost()
		m.SetBodyString(mail.TypeTextPlain, "Hi Ann,\n\nEverything is 20% off until Sunday.\n")
		m.AddAlternativeString(mail.TypeTextHTML, "<p>Hi Ann,</p><p>Everything is <b>20% off</b> until Sunday.</p>")
		return m, nil
	}
	b.ReportAllocs()
	b.ResetTimer()
	runWorkersOn(b, b.N, benchConns, func(w, i int) error {
		m, err := build(i)
		if err != nil {
			return err
		}
		return clients[w].Send(m)
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if st := sb.Stats(); st.Connections != benchConns {
		b.Fatalf("%d connections, want %d", st.Connections, benchConns)
	}
}

// runWorkers runs f for 0..n-1 spread over workers goroutines.
func runWorkers(b *testing.B, n, workers int, f func(i int) error) {
	runWorkersOn(b, n, workers, func(_, i int) error { return f(i) })
}

func runWorkersOn(b *testing.B, n, workers int, f func(w, i int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := f(w, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
