package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestFateShares: fates are deterministic and follow the configured shares.
func TestFateShares(t *testing.T) {
	cfg := Config{UnknownUserRate: 0.1, MailboxFullRate: 0.05, BounceRate: 0.2, ComplaintRate: 0.05, GreylistRate: 0.3}
	counts := map[Fate]int{}
	grey := 0
	const n = 20000
	for i := 0; i < n; i++ {
		a := fmt.Sprintf("u%d@x.example", i)
		counts[cfg.FateOf(a)]++
		if cfg.Greylists(a) {
			grey++
		}
		if cfg.FateOf(strings.ToUpper(a)) != cfg.FateOf(a) {
			t.Fatalf("%s: fate depends on case", a)
		}
	}
	for fate, share := range map[Fate]float64{FateUnknownUser: 0.1, FateMailboxFull: 0.05, FateBounce: 0.2, FateComplain: 0.05, FateDeliver: 0.6} {
		if got := float64(counts[fate]) / n; math.Abs(got-share) > 0.02 {
			t.Errorf("%s: share %.3f, want %.2f", fate, got, share)
		}
	}
	if got := float64(grey) / n; math.Abs(got-0.3) > 0.02 {
		t.Errorf("greylisted share %.3f, want 0.3", got)
	}
}

// TestSessionWithGoSMTPClient drives the sandbox with go-smtp's own client: AUTH, a
// message, its record, and the DSN it sends to the Sink callback.
func TestSessionWithGoSMTPClient(t *testing.T) {
	var mu sync.Mutex
	var notices []Notice
	cfg := Config{Users: map[string]string{"u": "p"}, BounceRate: 1, KeepRaw: true,
		Sink: func(_ context.Context, n Notice) error {
			mu.Lock()
			notices = append(notices, n)
			mu.Unlock()
			return nil
		}}
	sb := New(cfg)
	if err := sb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	c, err := smtp.Dial(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("news@shop.example", nil); err == nil || !strings.Contains(err.Error(), "530") {
		t.Fatalf("MAIL before AUTH: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); err != nil {
		t.Fatal(err)
	}
	msg := "From: news@shop.example\r\nTo: a@x.example\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\nMessage-ID: <m1@shop.example>\r\nX-Herald-Callback: 42:9\r\n\r\nhello\r\n"
	if err := c.SendMail("bounces@shop.example", []string{"a@x.example"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	recs := sb.Records()
	if len(recs) != 1 || recs[0].MessageID != "m1@shop.example" || recs[0].Callback != "42:9" || recs[0].Subject != "Café" ||
		recs[0].User != "u" || recs[0].Fate != FateBounce || recs[0].From != "bounces@shop.example" {
		t.Fatalf("records %+v", recs)
	}
	if taken := sb.TakeRecords(); len(taken) != 1 || taken[0].MessageID != "m1@shop.example" || len(sb.Records()) != 0 || sb.Stats().Accepted != 1 {
		t.Fatalf("TakeRecords %+v, then Records %+v, Stats %+v", taken, sb.Records(), sb.Stats())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(notices)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no DSN reached the sink")
		}
		time.Sleep(10 * time.Millisecond)
	}
	n := notices[0]
	if n.Kind != "bounce" || n.To != "bounces@shop.example" || n.MessageID != "m1@shop.example" {
		t.Fatalf("notice %+v", n)
	}
	m, err := mail.ReadMessage(bytes.NewReader(n.Raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN content type %q: %v", m.Header.Get("Content-Type"), err)
	}
	if !bytes.Contains(n.Raw, []byte("Message-ID: <m1@shop.example>")) || !bytes.Contains(n.Raw, []byte("Action: failed")) {
		t.Fatalf("DSN does not quote the original:\n%s", n.Raw)
	}
}

// TestMaxConnections: one connection too many is greeted with 421 4.7.0 and closed; once
// a connection closes, a new one is served.
func TestMaxConnections(t *testing.T) {
	sb := New(Config{MaxConnections: 1})
	if err := sb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	first, err := smtp.Dial(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	greeting, _ := io.ReadAll(second) // the sandbox closes it after the greeting
	second.Close()
	if !strings.HasPrefix(string(greeting), "421 4.7.0 ") {
		t.Fatalf("a second connection was greeted %q, want 421 4.7.0", greeting)
	}
	if st := sb.Stats(); st.Refused["421 4.7.0"] != 1 || sb.OpenConnections() != 1 {
		t.Fatalf("stats %+v, %d open", st, sb.OpenConnections())
	}
	if err := first.Quit(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sb.OpenConnections() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection is still counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, err := smtp.Dial(sb.Addr())
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	c.Close()
}
