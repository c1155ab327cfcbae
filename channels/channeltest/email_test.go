package channeltest_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/channeltest"
	"github.com/herald-dev/herald/channels/email"
	emailsandbox "github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// reportInbox is an email.Receiver and what its Handle was given, one Decoded per
// report message.
type reportInbox struct {
	rcv *email.Receiver
	mu  sync.Mutex
	got []channeltest.Decoded
}

func newReportInbox(t *testing.T, maxBytes int64) *reportInbox {
	in := &reportInbox{}
	rcv, err := email.NewReceiver(email.ReceiverConfig{MaxMessageBytes: maxBytes, Handle: func(_ context.Context, rs []dispatcher.Report) error {
		in.mu.Lock()
		in.got = append(in.got, channeltest.Decoded{Reports: rs})
		in.mu.Unlock()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	in.rcv = rcv
	run(t, rcv.Run)
	return in
}

func (in *reportInbox) received() ([]channeltest.Decoded, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]channeltest.Decoded(nil), in.got...), nil
}

// deliver sends raw to the receiver as a mail server sends a report (MAIL FROM:<>) and
// returns what the receiver decoded from it.
func (in *reportInbox) deliver(raw []byte) (channeltest.Decoded, error) {
	in.mu.Lock()
	before := len(in.got)
	in.mu.Unlock()
	err := smtp.SendMail(in.rcv.Addr(), nil, "", []string{"bounces@shop.example"}, raw)
	in.mu.Lock()
	defer in.mu.Unlock()
	var d channeltest.Decoded
	for _, g := range in.got[before:] {
		d.Reports = append(d.Reports, g.Reports...)
	}
	return d, err
}

// The email adapter against its SMTP sandbox, whose bounces (DSNs) and complaints (ARF)
// go by SMTP to Herald's report receiver.
func TestEmailConformance(t *testing.T) {
	clk := newClock()
	reports := newReportInbox(t, email.MaxReportBytes) // what the sandbox reports
	direct := newReportInbox(t, 64<<10)                // deliveries made by the suite itself
	const maxMessage = 1 << 20
	cfg := emailsandbox.Config{UnknownUserRate: 0.2, BounceRate: 0.1, ComplaintRate: 0.1, GreylistRate: 0.1, GreylistDelay: 5 * time.Minute,
		MaxMessageBytes: maxMessage, Now: clk.now, SinkAddr: reports.rcv.Addr()}
	sb := emailsandbox.New(cfg)
	busy := emailsandbox.New(emailsandbox.Config{MaxConnections: 1}) // a server that takes one connection at a time
	for _, s := range []*emailsandbox.Sandbox{sb, busy} {
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	host, port := splitAddr(t, sb.Addr())
	bhost, bport := splitAddr(t, busy.Addr())
	ch, err := email.New(email.Config{Senders: map[string]email.SenderConfig{
		"news": {Host: host, Port: port, TLS: email.TLSNone, From: "news@shop.example"},
		"busy": {Host: bhost, Port: bport, TLS: email.TLSNone, From: "news@shop.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	var ok, bounce, complain []string
	var unknown, greylisted string
	for i := 0; len(ok) < 1000 || len(bounce) < 2 || len(complain) < 1 || unknown == "" || greylisted == ""; i++ {
		addr := fmt.Sprintf("user%d@example.com", i)
		switch grey := cfg.Greylists(addr); cfg.FateOf(addr) {
		case emailsandbox.FateUnknownUser:
			unknown = addr
		case emailsandbox.FateDeliver:
			if grey {
				greylisted = addr
			} else {
				ok = append(ok, addr)
			}
		case emailsandbox.FateBounce:
			if !grey {
				bounce = append(bounce, addr)
			}
		case emailsandbox.FateComplain:
			if !grey {
				complain = append(complain, addr)
			}
		}
	}
	mail := func(to, text string) func(cb string) dispatcher.Message {
		return func(cb string) dispatcher.Message {
			return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "email", Kind: templates.KindEmail,
				Email: &templates.RenderedEmail{Subject: "Spring sale", Text: text}}}
		}
	}
	news := dispatcher.Sender{ID: "news", Channel: "email", Rate: 100}
	busySender := dispatcher.Sender{ID: "busy", Channel: "email", Rate: 100}
	sent := func(to, cb string) func(t *testing.T) {
		return func(t *testing.T) {
			if _, err := ch.Send(context.Background(), news, mail(to, "20% off")(cb)); err != nil {
				t.Fatal(err)
			}
		}
	}
	testdata := func(name string) string {
		b, err := os.ReadFile("../email/testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// The samples' Message-IDs are re-signed under the key of this process's adapter and
	// receiver (email.MessageKey nil); as filed, unsigned, they are forgeries.
	signed := func(name string) string { return string(email.ResignMessageIDs([]byte(testdata(name)), nil)) }
	arf := signed("yahoo_arf_abuse.eml")
	var hold net.Conn // a connection of another client, taking the busy server's only slot

	channeltest.Run(t, channeltest.Harness{
		Channel:   ch,
		Sender:    news,
		Message:   func(to, cb string) dispatcher.Message { return mail(to, "20% off")(cb) },
		Recipient: func(i int) string { return ok[i] },
		Accepted: func() []channeltest.Landed {
			var out []channeltest.Landed
			for _, r := range append(sb.Records(), busy.Records()...) {
				out = append(out, channeltest.Landed{Callback: r.Callback, ID: r.MessageID})
			}
			return out
		},
		Actions:  email.Actions(),
		Refusals: []channeltest.Refusal{{Name: "unknown user (550 5.1.1)", To: unknown, Action: dispatcher.ActionUndeliverable}},
		Transients: []channeltest.Transient{
			{Name: "greylisted (451 4.7.1)", Message: mail(greylisted, "20% off"),
				Refuse: func(*testing.T) {},                             // a greylisting server refuses a new (sender, recipient) pair
				Lift:   func(*testing.T) { clk.add(cfg.GreylistDelay) }, // until its delay has passed
				Action: dispatcher.ActionRetry, MinRetryAfter: 5 * time.Minute, MaxRetryAfter: 5 * time.Minute},
			{Name: "too many connections (421 4.7.0 greeting)", Sender: &busySender, Message: mail(ok[60], "20% off"),
				Refuse: func(t *testing.T) {
					var err error
					if hold, err = net.Dial("tcp", busy.Addr()); err != nil {
						t.Fatal(err)
					}
					if line, err := bufio.NewReader(hold).ReadString('\n'); err != nil || !strings.HasPrefix(line, "220") {
						t.Fatalf("greeting %q, %v", line, err)
					}
				},
				Lift: func(t *testing.T) {
					hold.Close()
					waitFor(t, 5*time.Second, func() error {
						if n := busy.OpenConnections(); n != 0 {
							return fmt.Errorf("%d connections still open at the busy server", n)
						}
						return nil
					})
				},
				Action: dispatcher.ActionRetry, MinRetryAfter: time.Minute, MaxRetryAfter: time.Minute},
		},
		Idempotency: channeltest.Idempotency{
			None: "SMTP has no idempotency: a message submitted twice is delivered twice; the adapter's Message-ID is new per send " +
				"and names the (campaign, contact), so that bounces and complaints find their send",
			IDKey: func(id string) (dispatcher.Key, bool) { k, _, ok := email.ParseMessageID(id); return k, ok },
		},
		Reports: channeltest.Reports{
			To:       bounce[0],
			Received: reports.received,
			Unsigned: "bounces (RFC 3464 DSNs) and complaints (RFC 5965 ARF reports) arrive by SMTP at email.Receiver, and SMTP " +
				"signs nothing; a report counts only when it quotes the Message-ID of a message Herald sent, which Herald signs " +
				"(an HMAC under a key kept in Redis): a report naming a guessed campaign and contact is ignored",
			Deliver: direct.deliver,
			Sample:  arf,
			Malformed: []string{
				"From: mailer-daemon@mx.example\r\nTo: bounces@shop.example\r\nContent-Type: multipart/report; report-type=feedback-report\r\n\r\nno boundary\r\n",
				strings.Replace(arf, "Content-Type: message/feedback-report", "Content-Type: text/x-other", 1),
				testdata("yahoo_arf_abuse.eml"),                               // its Message-ID unsigned (and an X-Herald-Callback header): forged
				strings.Replace(arf, "herald.42.3301.", "herald.42.3302.", 1), // a signed id of another contact
				"\x00\x01\x02 not a message\r\n",
			},
			Oversized: strings.Replace(arf, "This is an email abuse report", strings.Repeat("padding padding padding\r\n", 3000)+"This is an email abuse report", 1),
			MaxBody:   64 << 10,
		},
		Consent: []channeltest.ConsentCase{
			{Name: "complaint (ARF abuse report)", Subject: "consent:1", Provoke: sent(complain[0], "consent:1"), Want: channeltest.OptOut},
			{Name: "hard bounce (DSN 5.x.x)", Subject: "consent:2", Provoke: sent(bounce[1], "consent:2"), Want: channeltest.Undeliverable},
			{Name: "Yahoo's ARF report", Subject: "42:3301", Payload: arf, Want: channeltest.OptOut},
			{Name: "Gmail's bounce (550 5.1.1)", Subject: "spring-sale 2026:9", Payload: signed("gmail_bounce_no_such_user.eml"), Want: channeltest.Undeliverable},
			{Name: "a delayed DSN (still trying)", Subject: "77:5", Payload: signed("postfix_delayed.eml"), Want: channeltest.NoEffect},
			{Name: "an out-of-office reply", Subject: "42:9", Payload: signed("out_of_office.eml"), Want: channeltest.NoEffect},
		},
		Limits: channeltest.Limits{
			RateNote: "SMTP providers document no one pace: each account's rate is configured (above it the sandbox answers 451 4.7.0)",
			Cases: []channeltest.Limit{
				{Name: "within the server's SIZE", Message: mail(ok[50], strings.Repeat("twenty percent off\r\n", maxMessage/40)), Parts: 1},
				{Name: "over the server's SIZE (552 5.3.4)", Message: mail(ok[50], strings.Repeat("twenty percent off\r\n", maxMessage/10)),
					Action: dispatcher.ActionFailJob, Before: true},
				{Name: "rendered as no email", Message: func(cb string) dispatcher.Message {
					return dispatcher.Message{To: ok[50], CallbackData: cb, Rendered: templates.Rendered{Channel: "email", Kind: templates.KindText, Text: "hi"}}
				}, Action: dispatcher.ActionFailJob, Before: true},
				{Name: "not an address", Message: mail("not an address", "hi"), Action: dispatcher.ActionUndeliverable, Before: true},
			},
			Attempts: func() int64 {
				st := sb.Stats()
				n := st.Accepted
				for _, c := range st.Refused {
					n += c
				}
				return n
			},
		},
	})
}
