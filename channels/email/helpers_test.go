package email

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// startSandbox starts a sandbox on a free loopback port, closed at the end of the test.
func startSandbox(t testing.TB, cfg sandbox.Config) *sandbox.Sandbox {
	t.Helper()
	sb := sandbox.New(cfg)
	if err := sb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	return sb
}

// senderFor is a sender configuration for the sandbox at addr: plain text on loopback.
func senderFor(t testing.TB, addr string) SenderConfig {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return SenderConfig{Host: host, Port: p, TLS: TLSNone, From: "news@shop.example", FromName: "Shop News",
		Timeout: 10 * time.Second}
}

// newChannel returns a Channel with one sender "s1", closed at the end of the test.
func newChannel(t testing.TB, sc SenderConfig) *Channel {
	t.Helper()
	ch, err := New(Config{Senders: map[string]SenderConfig{"s1": sc}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	return ch
}

var s1 = dispatcher.Sender{ID: "s1", Channel: "email"}

// message is a rendered campaign email to to, for (campaign, contact).
func message(campaign string, contact uint32, to string, html bool) dispatcher.Message {
	e := &templates.RenderedEmail{Subject: "Spring sale: 20% off", Text: "Hi Ann,\n\nEverything is 20% off until Sunday.\n"}
	if html {
		e.HTML = "<p>Hi Ann,</p><p>Everything is <b>20% off</b> until Sunday.</p>"
	}
	return dispatcher.Message{To: to, Rendered: templates.Rendered{Template: "spring", Kind: templates.KindEmail, Channel: "email", Email: e},
		CallbackData: dispatcher.CallbackData(campaign, contact)}
}

// addressWith returns the n-th address (from 0) whose fate under cfg is fate, and that is
// greylisted when grey.
func addressWith(t testing.TB, cfg sandbox.Config, fate sandbox.Fate, grey bool, n int) string {
	t.Helper()
	for i := 0; i < 100000; i++ {
		a := fmt.Sprintf("user%d@mail.example", i)
		if cfg.FateOf(a) == fate && cfg.Greylists(a) == grey {
			if n == 0 {
				return a
			}
			n--
		}
	}
	t.Fatalf("no address with fate %s (greylisted %v)", fate, grey)
	return ""
}

// checkFor polls f until it returns nil or total passes (nats-server's checkFor).
func checkFor(t testing.TB, total, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(interval)
	}
}

// clock is a settable time for the sandbox's greylisting.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKey signs the Message-IDs of the tests' messages and samples.
var testKey = MessageKey("herald's test key for Message-IDs")

// resigned is the id ResignMessageIDs writes for id under testKey.
func resigned(id string) string { return string(ResignMessageIDs([]byte(id), testKey)) }
