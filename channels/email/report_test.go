package email

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
)

// TestParseReport reads realistic bounces and complaints (testdata/, modelled on
// Postfix, Gmail, Exchange Online and Yahoo's feedback loop) into reports.
func TestParseReport(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []dispatcher.Report
		err  error
	}{
		{file: "postfix_bounce_user_unknown.eml", want: []dispatcher.Report{{Kind: events.Failed,
			Key: dispatcher.Key{Campaign: "42", Contact: 1017}, Variant: "b", Channel: "email", SenderRef: "shop.example",
			MessageID: resigned("herald.42.1017.b.k3vq7ztm2xw4hy5a@shop.example"), Time: time.Date(2026, 3, 2, 8, 14, 5, 0, time.UTC),
			Code: 550, Action: dispatcher.ActionUndeliverable}}},
		{file: "gmail_bounce_no_such_user.eml", want: []dispatcher.Report{{Kind: events.Failed,
			Key: dispatcher.Key{Campaign: "spring-sale 2026", Contact: 9}, Channel: "email", SenderRef: "shop.example",
			MessageID: resigned("herald.spring-sale=202026.9.mq4xk2b7ztpl6w3e@shop.example"), Time: time.Date(2026, 3, 2, 8, 20, 11, 0, time.UTC),
			Code: 550, Action: dispatcher.ActionUndeliverable}}},
		{file: "exchange_mailbox_full.eml", want: []dispatcher.Report{{Kind: events.Failed,
			Key: dispatcher.Key{Campaign: "42", Contact: 88}, Channel: "email", SenderRef: "shop.example",
			MessageID: resigned("herald.42.88.zzzzzzzzzzzzzzzz@shop.example"), Time: time.Date(2026, 3, 4, 10, 11, 10, 0, time.UTC),
			Code: 554, Action: dispatcher.ActionUndeliverable}}},
		{file: "yahoo_arf_abuse.eml", want: []dispatcher.Report{{Kind: events.OptedOut,
			Key: dispatcher.Key{Campaign: "42", Contact: 3301}, Channel: "email", SenderRef: "shop.example",
			MessageID: resigned("herald.42.3301.p7kq2w5zm3n6x4ra@shop.example"), Time: time.Date(2026, 3, 5, 17, 38, 51, 0, time.UTC),
			Action: dispatcher.ActionOptOut}}},
		{file: "postfix_delayed.eml", want: nil},
		{file: "out_of_office.eml", err: ErrNotReport},
		{file: "foreign_bounce.eml", err: ErrUnknownMessage},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			// As filed, the samples quote ids made before ids were signed: forgeries now.
			if got, err := ParseReport(raw, testKey); tc.want != nil && !errors.Is(err, ErrUnknownMessage) {
				t.Fatalf("an unsigned sample gave %+v, %v; want ErrUnknownMessage", got, err)
			}
			got, err := ParseReport(ResignMessageIDs(raw, testKey), testKey)
			if tc.err != nil || err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("reports\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// TestParseReportDeliveryStatuses covers the DSN actions and how codes are derived.
func TestParseReportDeliveryStatuses(t *testing.T) {
	dsn := func(groups ...string) []byte {
		return []byte("From: MAILER-DAEMON@mx.example\r\nTo: b@shop.example\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n" +
			"--B\r\nContent-Type: text/plain\r\n\r\nreport\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n" +
			"Reporting-MTA: dns; mx.example\r\n\r\n" + strings.Join(groups, "\r\n") +
			"\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <herald.5.6.abcdefghijklmnop@shop.example>\r\n\r\n--B--\r\n")
	}
	for _, tc := range []struct {
		group  string
		kind   events.Kind
		code   int
		action string
	}{
		{"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n", events.Failed, 550, dispatcher.ActionUndeliverable},
		{"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.7.1\r\nDiagnostic-Code: smtp; 554 5.7.1 Message rejected as spam\r\n", events.Failed, 554, dispatcher.ActionDrop},
		{"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 4.4.7\r\nDiagnostic-Code: X-Postfix; delivery temporarily suspended\r\n", events.Failed, 450, dispatcher.ActionNone},
		{"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: smtp; 550 Requested action not taken: mailbox unavailable\r\n", events.Failed, 550, dispatcher.ActionUndeliverable},
		{"Final-Recipient: rfc822; a@x.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n", events.Delivered, 0, dispatcher.ActionNone},
		{"Final-Recipient: rfc822; a@x.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n", "", 0, ""},
	} {
		got, err := ParseReport(ResignMessageIDs(dsn(tc.group), testKey), testKey)
		if err != nil {
			t.Fatalf("%q: %v", tc.group, err)
		}
		if tc.kind == "" {
			if len(got) != 0 {
				t.Errorf("%q: reports %+v, want none", tc.group, got)
			}
			continue
		}
		if len(got) != 1 || got[0].Kind != tc.kind || got[0].Code != tc.code || got[0].Action != tc.action ||
			got[0].Key != (dispatcher.Key{Campaign: "5", Contact: 6}) {
			t.Errorf("%q: reports %+v, want %s %d %s", tc.group, got, tc.kind, tc.code, tc.action)
		}
	}
}

// TestBouncesAndComplaintsRoundTrip sends through the channel into the sandbox, which
// bounces and complains about some recipients and delivers its DSNs and ARF reports over
// SMTP to a Receiver: every report names the right (campaign, contact) and action.
func TestBouncesAndComplaintsRoundTrip(t *testing.T) {
	var (
		mu      sync.Mutex
		reports []dispatcher.Report
	)
	fails := 1 // the first delivery fails: the sandbox retries it
	rcv, err := NewReceiver(ReceiverConfig{Handle: func(_ context.Context, rs []dispatcher.Report) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("kafka away")
		}
		reports = append(reports, rs...)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rcv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	cfg := sandbox.Config{BounceRate: 0.25, ComplaintRate: 0.15, UnknownUserRate: 0.1, SinkAddr: rcv.Addr()}
	sb := startSandbox(t, cfg)
	ch := newChannel(t, senderFor(t, sb.Addr()))
	want := map[dispatcher.Key]string{}
	const n = 80
	for i := 0; i < n; i++ {
		to := fmt.Sprintf("r%d@mail.example", i)
		m := message("1"+fmt.Sprint(i%3), uint32(i), to, i%2 == 0)
		_, err := ch.Send(context.Background(), s1, m)
		switch cfg.FateOf(to) {
		case sandbox.FateUnknownUser:
			if err == nil {
				t.Fatalf("%s: accepted, want 550", to)
			}
			continue
		case sandbox.FateBounce:
			want[dispatcher.Key{Campaign: m.CallbackData[:strings.IndexByte(m.CallbackData, ':')], Contact: uint32(i)}] = dispatcher.ActionUndeliverable
		case sandbox.FateComplain:
			want[dispatcher.Key{Campaign: m.CallbackData[:strings.IndexByte(m.CallbackData, ':')], Contact: uint32(i)}] = dispatcher.ActionOptOut
		}
		if err != nil {
			t.Fatalf("%s: %v", to, err)
		}
	}
	if len(want) < 10 {
		t.Fatalf("only %d bounces and complaints among %d recipients", len(want), n)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(reports) < len(want) {
			return fmt.Errorf("%d reports received, want %d (sandbox %+v, receiver %+v)", len(reports), len(want), sb.Stats(), rcv.Stats())
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	got := map[dispatcher.Key]string{}
	for _, r := range reports {
		got[r.Key] = r.Action
		if r.Channel != "email" || r.MessageID == "" || r.Time.IsZero() {
			t.Errorf("report %+v lacks channel, message id or time", r)
		}
		if r.Action == dispatcher.ActionUndeliverable && (r.Kind != events.Failed || (r.Code != 550 && r.Code != 552)) {
			t.Errorf("bounce report %+v", r)
		}
		if r.Action == dispatcher.ActionOptOut && r.Kind != events.OptedOut {
			t.Errorf("complaint report %+v", r)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d distinct keys reported, want %d", len(got), len(want))
	}
	for k, a := range want {
		if got[k] != a {
			t.Errorf("%+v: action %q, want %q", k, got[k], a)
		}
	}
	// The sandbox counts a notice once the receiver's reply is in: poll.
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := sb.Stats(); st.Bounces+st.Complaints != int64(len(want)) || st.NoticesDelivered != int64(len(want)) {
			return fmt.Errorf("sandbox stats %+v, want %d notices", st, len(want))
		}
		return nil
	})
	if rs := rcv.Stats(); rs.Failed != 1 || rs.Reports != int64(len(want)) {
		t.Errorf("receiver stats %+v", rs)
	}
}
