package email

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

var msgIDShape = regexp.MustCompile(`^herald\.42\.9\.[a-z2-7]{24}@shop\.example$`)

// TestSendTextAndHTML sends a text and a text+HTML message through the adapter into the
// sandbox and checks what the server received: headers, MIME structure, Message-ID,
// callback and one-click unsubscribe headers.
func TestSendTextAndHTML(t *testing.T) {
	sb := startSandbox(t, sandbox.Config{KeepRaw: true})
	ch := newChannel(t, senderFor(t, sb.Addr()))
	ctx := context.Background()

	plain := message("42", 9, "Ann Lee <ann@mail.example>", false)
	idPlain, err := ch.Send(ctx, s1, plain)
	if err != nil {
		t.Fatal(err)
	}
	rich := message("42", 9, "ann@mail.example", true)
	rich.Unsubscribe = "https://shop.example/u/42/9?sig=abc"
	rich.CallbackData = dispatcher.CallbackData("42", 9) + ":v.b"
	idRich, err := ch.Send(ctx, s1, rich)
	if err != nil {
		t.Fatal(err)
	}
	recs := sb.Records()
	if len(recs) != 2 {
		t.Fatalf("sandbox recorded %d messages, want 2", len(recs))
	}
	for i, tc := range []struct {
		id, ctype string
		variant   string
		unsub     bool
	}{{idPlain, "text/plain", "", false}, {idRich, "multipart/alternative", "b", true}} {
		r := recs[i]
		if r.MessageID != tc.id || !msgIDShape.MatchString(strings.Replace(tc.id, ".b.", ".", 1)) {
			t.Errorf("message %d: Message-ID %q (returned %q)", i, r.MessageID, tc.id)
		}
		key, variant, ok := VerifyMessageID(r.MessageID, nil) // the adapter's key: this process's
		if !ok || key != (dispatcher.Key{Campaign: "42", Contact: 9}) || variant != tc.variant {
			t.Errorf("message %d: Message-ID names %+v %q %v", i, key, variant, ok)
		}
		if r.From != "news@shop.example" || r.To != "ann@mail.example" || r.Subject != "Spring sale: 20% off" {
			t.Errorf("message %d: envelope %s → %s, subject %q", i, r.From, r.To, r.Subject)
		}
		if got := r.Header.Get("From"); got != `"Shop News" <news@shop.example>` {
			t.Errorf("message %d: From %q", i, got)
		}
		if got := r.Header.Get("To"); got != "<ann@mail.example>" {
			t.Errorf("message %d: To %q", i, got)
		}
		if want := "42:9"; !strings.HasPrefix(r.Callback, want) {
			t.Errorf("message %d: X-Herald-Callback %q", i, r.Callback)
		}
		lu, lup := r.Header.Get("List-Unsubscribe"), r.Header.Get("List-Unsubscribe-Post")
		if tc.unsub && (lu != "<https://shop.example/u/42/9?sig=abc>" || lup != "List-Unsubscribe=One-Click") {
			t.Errorf("message %d: List-Unsubscribe %q, List-Unsubscribe-Post %q", i, lu, lup)
		}
		if !tc.unsub && (lu != "" || lup != "") {
			t.Errorf("message %d: unexpected List-Unsubscribe headers %q %q", i, lu, lup)
		}
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != tc.ctype {
			t.Fatalf("message %d: Content-Type %q (%v), want %s", i, r.Header.Get("Content-Type"), err, tc.ctype)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(r.Raw))
		if err != nil {
			t.Fatal(err)
		}
		if mt == "multipart/alternative" {
			mr := multipart.NewReader(msg.Body, params["boundary"])
			var types []string
			var html string
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
				types = append(types, pt)
				b, _ := io.ReadAll(p)
				if pt == "text/html" {
					html = string(b)
				}
			}
			if strings.Join(types, ",") != "text/plain,text/html" || !strings.Contains(html, "<b>20% off</b>") {
				t.Errorf("message %d: parts %v, html %q", i, types, html)
			}
		}
	}
}

// TestSendDKIM signs with RSA and Ed25519 keys and verifies the received messages with
// dkim.Verify against the key's public part, published through a custom lookup.
func TestSendDKIM(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The RSA key goes through PEM, as an operator would configure it.
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	parsed, err := ParseDKIMKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rsa", "ed25519"} {
		t.Run(name, func(t *testing.T) {
			sb := startSandbox(t, sandbox.Config{KeepRaw: true})
			sc := senderFor(t, sb.Addr())
			sc.DKIMDomain, sc.DKIMSelector = "shop.example", "herald1"
			if name == "rsa" {
				sc.DKIMKey = parsed
			} else {
				sc.DKIMKey = edKey
			}
			record, err := DKIMRecord(sc.DKIMKey)
			if err != nil {
				t.Fatal(err)
			}
			ch := newChannel(t, sc)
			m := message("42", 9, "ann@mail.example", true)
			m.Unsubscribe = "https://shop.example/u/42/9"
			if _, err := ch.Send(context.Background(), s1, m); err != nil {
				t.Fatal(err)
			}
			raw := sb.Records()[0].Raw
			lookups := 0
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
				lookups++
				if domain != "herald1._domainkey.shop.example" {
					return nil, fmt.Errorf("no TXT record at %s", domain)
				}
				return []string{record}, nil
			}})
			if err != nil || len(vs) != 1 || lookups != 1 {
				t.Fatalf("verify: %v, %d verifications, %d lookups", err, len(vs), lookups)
			}
			if vs[0].Err != nil || vs[0].Domain != "shop.example" {
				t.Fatalf("signature does not verify: %v (domain %s)", vs[0].Err, vs[0].Domain)
			}
			signed := strings.ToLower(strings.Join(vs[0].HeaderKeys, ","))
			for _, h := range []string{"from", "subject", "message-id", "list-unsubscribe", "list-unsubscribe-post"} {
				if !strings.Contains(signed, h) {
					t.Errorf("%s is not signed (h=%s)", h, signed)
				}
			}
			// A byte changed in transit breaks it.
			tampered := bytes.Replace(raw, []byte("Sunday"), []byte("Monday"), 1)
			vs, _ = dkim.VerifyWithOptions(bytes.NewReader(tampered), &dkim.VerifyOptions{LookupTXT: func(string) ([]string, error) { return []string{record}, nil }})
			if len(vs) != 1 || vs[0].Err == nil {
				t.Error("a tampered body still verifies")
			}
		})
	}
}

// TestSendSTARTTLSAndAuth sends over STARTTLS (mandatory, verified against the
// sandbox's certificate) with AUTH PLAIN and LOGIN.
func TestSendSTARTTLSAndAuth(t *testing.T) {
	tlsConf, roots, err := sandbox.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	sb := startSandbox(t, sandbox.Config{TLS: tlsConf, RequireTLS: true, Users: map[string]string{"herald": "s3cret"}})
	for _, mech := range []AuthMechanism{AuthPlain, AuthLogin} {
		sc := senderFor(t, sb.Addr())
		sc.TLS, sc.TLSConfig = TLSMandatory, mustTLSClient(roots)
		sc.Auth, sc.User, sc.Password = mech, "herald", "s3cret"
		ch := newChannel(t, sc)
		if _, err := ch.Send(context.Background(), s1, message("42", 9, "ann@mail.example", false)); err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
	}
	recs := sb.Records()
	if len(recs) != 2 || !recs[0].TLS || !recs[1].TLS || recs[0].User != "herald" || recs[1].User != "herald" {
		t.Fatalf("records: %+v", recs)
	}
}

// TestRefusals sends into each refusal the sandbox can make and checks the refusal's
// classification: code, action, retryability.
func TestRefusals(t *testing.T) {
	fates := sandbox.Config{UnknownUserRate: 0.2, MailboxFullRate: 0.2, GreylistRate: 0.3, MaxMessageBytes: 4096}
	sb := startSandbox(t, fates)
	base := senderFor(t, sb.Addr())
	authSB := startSandbox(t, sandbox.Config{Users: map[string]string{"herald": "s3cret"}})
	limited := startSandbox(t, sandbox.Config{Rate: 1})
	tlsConf, _, err := sandbox.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	tlsSB := startSandbox(t, sandbox.Config{TLS: tlsConf})
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there any more

	big := message("42", 9, addressWith(t, fates, sandbox.FateDeliver, false, 0), false)
	big.Rendered.Email.Text = strings.Repeat("a long line of text\n", 400)
	for _, tc := range []struct {
		name      string
		sc        func() SenderConfig
		msg       dispatcher.Message
		code      int
		action    string
		retryable bool
	}{
		{"unknown user", func() SenderConfig { return base }, message("42", 9, addressWith(t, fates, sandbox.FateUnknownUser, false, 0), false), 550, dispatcher.ActionUndeliverable, false},
		{"mailbox full", func() SenderConfig { return base }, message("42", 9, addressWith(t, fates, sandbox.FateMailboxFull, false, 0), false), 452, dispatcher.ActionRetry, true},
		{"greylisted", func() SenderConfig { return base }, message("42", 9, addressWith(t, fates, sandbox.FateDeliver, true, 0), false), 451, dispatcher.ActionRetry, true},
		{"too big", func() SenderConfig { return base }, big, 552, dispatcher.ActionFailJob, false},
		{"no auth", func() SenderConfig { return senderFor(t, authSB.Addr()) }, message("42", 9, "ann@mail.example", false), 530, dispatcher.ActionPauseAccount, false},
		{"bad password", func() SenderConfig {
			sc := senderFor(t, authSB.Addr())
			sc.Auth, sc.User, sc.Password = AuthPlain, "herald", "wrong"
			return sc
		}, message("42", 9, "ann@mail.example", false), 535, dispatcher.ActionPauseAccount, false},
		{"STARTTLS not offered", func() SenderConfig {
			sc := base
			sc.TLS = TLSMandatory
			return sc
		}, message("42", 9, "ann@mail.example", false), 0, dispatcher.ActionPauseAccount, false},
		{"untrusted certificate", func() SenderConfig {
			sc := senderFor(t, tlsSB.Addr())
			sc.TLS = TLSMandatory
			return sc
		}, message("42", 9, "ann@mail.example", false), 0, dispatcher.ActionPauseAccount, false},
		{"connection refused", func() SenderConfig { return senderFor(t, deadAddr) }, message("42", 9, "ann@mail.example", false), 0, dispatcher.ActionTransport, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newChannel(t, tc.sc())
			_, err := ch.Send(context.Background(), s1, tc.msg)
			var se *dispatcher.SendError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *dispatcher.SendError", err)
			}
			if se.Code != tc.code || se.Action != tc.action || se.Retryable != tc.retryable {
				t.Fatalf("refusal %d %s retryable %v (%v), want %d %s retryable %v", se.Code, se.Action, se.Retryable, se.Err, tc.code, tc.action, tc.retryable)
			}
		})
	}
	// Above the sandbox's rate: 451 4.7.0, retried.
	t.Run("rate limited", func(t *testing.T) {
		ch := newChannel(t, senderFor(t, limited.Addr()))
		var se *dispatcher.SendError
		for i := 0; i < 5 && se == nil; i++ {
			if _, err := ch.Send(context.Background(), s1, message("42", uint32(i), "ann@mail.example", false)); err != nil && !errors.As(err, &se) {
				t.Fatal(err)
			}
		}
		if se == nil || se.Code != 451 || se.Action != dispatcher.ActionRetry || !se.Retryable {
			t.Fatalf("refusal above the rate: %+v", se)
		}
	})
	t.Run("unknown sender", func(t *testing.T) {
		ch := newChannel(t, base)
		_, err := ch.Send(context.Background(), dispatcher.Sender{ID: "nobody"}, message("42", 9, "ann@mail.example", false))
		var se *dispatcher.SendError
		if !errors.As(err, &se) || se.Action != dispatcher.ActionPauseAccount || !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("unknown sender: %v", err)
		}
	})
	t.Run("bad recipient", func(t *testing.T) {
		ch := newChannel(t, base)
		_, err := ch.Send(context.Background(), s1, message("42", 9, "not an address", false))
		var se *dispatcher.SendError
		if !errors.As(err, &se) || se.Action != dispatcher.ActionUndeliverable {
			t.Fatalf("bad recipient: %v", err)
		}
	})
	// The refusals left the connection usable: the next message goes on it.
	t.Run("connection kept after refusals", func(t *testing.T) {
		ch := newChannel(t, base)
		before := sb.Stats().Connections
		_, _ = ch.Send(context.Background(), s1, message("42", 9, addressWith(t, fates, sandbox.FateUnknownUser, false, 1), false))
		if _, err := ch.Send(context.Background(), s1, message("42", 10, addressWith(t, fates, sandbox.FateDeliver, false, 1), false)); err != nil {
			t.Fatal(err)
		}
		if n := sb.Stats().Connections - before; n != 1 {
			t.Fatalf("%d connections for a refusal and a send, want 1", n)
		}
	})
	st := sb.Stats()
	for _, k := range []string{"550 5.1.1", "452 4.2.2", "451 4.7.1"} {
		if st.Refused[k] == 0 {
			t.Errorf("sandbox counted no %s refusal: %v", k, st.Refused)
		}
	}
	// The message over the server's SIZE was refused before it was sent.
	if n := st.Refused["552 5.3.4"]; n != 0 {
		t.Errorf("the sandbox refused %d message(s) over its size: the adapter sent them despite its SIZE", n)
	}
}

// TestGreylistRetrySucceeds: a greylisted recipient is refused with 451 4.7.1, and the
// same message is accepted once the sandbox's delay has passed (its clock, not a sleep).
func TestGreylistRetrySucceeds(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	cfg := sandbox.Config{GreylistRate: 1, GreylistDelay: 5 * time.Minute, Now: clk.now}
	sb := startSandbox(t, cfg)
	ch := newChannel(t, senderFor(t, sb.Addr()))
	m := message("42", 9, "ann@mail.example", false)
	_, err := ch.Send(context.Background(), s1, m)
	var se *dispatcher.SendError
	if !errors.As(err, &se) || se.Code != 451 || !se.Retryable || se.RetryAfter != 5*time.Minute {
		t.Fatalf("first attempt: %v", err)
	}
	clk.add(time.Minute) // too early: still greylisted
	if _, err := ch.Send(context.Background(), s1, m); !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("early retry: %v", err)
	}
	clk.add(se.RetryAfter)
	id, err := ch.Send(context.Background(), s1, m)
	if err != nil {
		t.Fatalf("retry after the delay: %v", err)
	}
	if recs := sb.Records(); len(recs) != 1 || recs[0].MessageID != id {
		t.Fatalf("records %+v", recs)
	}
}

// TestConnectionReuse sends many messages from concurrent workers and counts the
// connections the server saw: never more than the pool's size.
func TestConnectionReuse(t *testing.T) {
	sb := startSandbox(t, sandbox.Config{})
	sc := senderFor(t, sb.Addr())
	sc.PoolSize, sc.MaxPerConn = 3, -1 // the per-connection cap has its own test (TestReconnect)
	ch := newChannel(t, sc)
	const n, workers = 300, 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := ch.Send(context.Background(), s1, message("7", uint32(i), fmt.Sprintf("c%d@mail.example", i), i%2 == 0)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	conns := map[int64]int{}
	for _, r := range sb.Records() {
		conns[r.Conn]++
	}
	st := sb.Stats()
	if st.Accepted != n || st.Connections > 3 || len(conns) > 3 || ch.Dials("s1") > 3 {
		t.Fatalf("%d accepted over %d connections (%v); the channel dialled %d times; want %d over ≤ 3", st.Accepted, st.Connections, conns, ch.Dials("s1"), n)
	}
}

// TestReconnect: connections the server closed (a restart, or its per-connection
// message cap answered with 421) are replaced and the message still goes, once.
func TestReconnect(t *testing.T) {
	t.Run("server closed idle connections", func(t *testing.T) {
		sb := startSandbox(t, sandbox.Config{})
		sc := senderFor(t, sb.Addr())
		sc.PoolSize = 2
		ch := newChannel(t, sc)
		for i := 0; i < 3; i++ {
			if _, err := ch.Send(context.Background(), s1, message("7", uint32(i), "ann@mail.example", false)); err != nil {
				t.Fatal(err)
			}
		}
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if n := sb.CloseConnections(); n == 0 {
				return errors.New("no connection to close yet")
			}
			return nil
		})
		if _, err := ch.Send(context.Background(), s1, message("7", 3, "ann@mail.example", false)); err != nil {
			t.Fatalf("send after the server closed the connection: %v", err)
		}
		if st := sb.Stats(); st.Accepted != 4 || st.Connections != 2 {
			t.Fatalf("accepted %d over %d connections, want 4 over 2", st.Accepted, st.Connections)
		}
	})
	t.Run("421 after the server's per-connection cap", func(t *testing.T) {
		sb := startSandbox(t, sandbox.Config{MaxMessagesPerConn: 5})
		sc := senderFor(t, sb.Addr())
		sc.PoolSize = 1
		ch := newChannel(t, sc)
		for i := 0; i < 12; i++ {
			if _, err := ch.Send(context.Background(), s1, message("7", uint32(i), "ann@mail.example", false)); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		if st := sb.Stats(); st.Accepted != 12 || st.Connections != 3 || st.Refused["421 4.7.0"] != 2 {
			t.Fatalf("stats %+v, want 12 accepted over 3 connections and two 421", st)
		}
	})
	t.Run("the channel's own per-connection cap", func(t *testing.T) {
		sb := startSandbox(t, sandbox.Config{})
		sc := senderFor(t, sb.Addr())
		sc.PoolSize, sc.MaxPerConn = 1, 4
		ch := newChannel(t, sc)
		for i := 0; i < 10; i++ {
			if _, err := ch.Send(context.Background(), s1, message("7", uint32(i), "ann@mail.example", false)); err != nil {
				t.Fatal(err)
			}
		}
		if st := sb.Stats(); st.Accepted != 10 || st.Connections != 3 || len(st.Refused) != 0 {
			t.Fatalf("stats %+v, want 10 accepted over 3 connections, no refusal", st)
		}
	})
}

// TestContextCancel: a send stuck on a server that never answers returns as soon as its
// context is cancelled, and a cancelled context sends nothing.
func TestContextCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held sync.WaitGroup
	held.Add(1)
	go func() { // accepts and never greets
		defer held.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	sc := senderFor(t, ln.Addr().String())
	sc.Timeout = time.Minute
	ch := newChannel(t, sc)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = ch.Send(ctx, s1, message("42", 9, "ann@mail.example", false))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	var se *dispatcher.SendError
	if !errors.As(err, &se) || se.Action != dispatcher.ActionTransport || !se.Retryable {
		t.Fatalf("cancelled send: %v", err)
	}
	ln.Close()
	held.Wait()

	sb := startSandbox(t, sandbox.Config{})
	ch2 := newChannel(t, senderFor(t, sb.Addr()))
	if _, err := ch2.Send(ctx, s1, message("42", 9, "ann@mail.example", false)); !errors.Is(err, context.Canceled) {
		t.Fatalf("send with a cancelled context: %v", err)
	}
	if st := sb.Stats(); st.Connections != 0 || st.Accepted != 0 {
		t.Fatalf("a cancelled send reached the server: %+v", st)
	}
}

func mustTLSClient(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}
