// Package sandbox is a local SMTP submission server that behaves like a mail provider's:
// AUTH PLAIN or LOGIN when users are configured (530 5.7.0 without it, 535 5.7.8 for bad
// credentials), optional STARTTLS, and per-recipient fates decided by a hash of the
// address under configurable shares: unknown users (550 5.1.1 at RCPT TO), full
// mailboxes (452 4.2.2), greylisting (451 4.7.1 on the first attempt of a (sender,
// recipient) pair, accepted once GreylistDelay has passed), recipients accepted and then
// bounced (an RFC 3464 DSN) and recipients who complain (an RFC 5965 ARF report); the
// DSNs and ARF reports go to a sink (a callback, or an SMTP server such as Herald's
// report receiver). Rate limits (global and per connection: 451 4.7.0), a cap of
// concurrent connections (421 4.7.0 as the greeting), a cap of messages per connection
// (421 4.7.0, then the connection closes) and a size limit (552 5.3.4) round it off.
//
// It records every accepted message (Records) and counts what it did (Stats), so tests
// and benchmarks compare Herald's figures with the truth. It owns only this simulation;
// it does not import the email channel: its DSNs and ARF reports quote the original
// headers as a real MTA does, and the channel's parser must find its way back from them.
package sandbox

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"
)

// Config configures a Sandbox. Zero values take the defaults noted.
type Config struct {
	Addr string // listen address (default 127.0.0.1:0)
	// Listener, when set, is served instead of listening on Addr (a caller that holds
	// its port from the start, so no other process can take it in between).
	Listener net.Listener
	Domain   string            // the server's name in its greeting and DSNs (default mx.sandbox.test)
	Users    map[string]string // AUTH user → password; empty: no AUTH offered or required
	// TLS, when set, offers STARTTLS (and AUTH only after it); RequireTLS refuses MAIL
	// before STARTTLS with 530 5.7.0.
	TLS        *tls.Config
	RequireTLS bool

	// Recipient fates: shares of recipient addresses (each address has one, decided by a
	// hash of it; see Config.FateOf). They add up to at most 1; the rest is delivered.
	UnknownUserRate float64 // 550 5.1.1 at RCPT TO
	MailboxFullRate float64 // 452 4.2.2 at RCPT TO, every time
	BounceRate      float64 // accepted, then a DSN (550 5.1.1 or 552 5.2.2 from the "remote" MX)
	ComplaintRate   float64 // accepted, delivered, then an ARF abuse report
	// GreylistRate is the share of recipients (an independent hash) greylisted: the first
	// RCPT TO of a (sender, recipient) pair, and any before GreylistDelay (default 1 min)
	// has passed, get 451 4.7.1.
	GreylistRate  float64
	GreylistDelay time.Duration

	// MaxConnections bounds concurrent client connections (0: no limit): one more is
	// greeted with 421 4.7.0 and closed, as providers answer a client that opens too many.
	MaxConnections     int
	Rate               float64 // accepted messages per second, all connections (0: no limit); above: 451 4.7.0
	ConnRate           float64 // messages per second on one connection (0: no limit); above: 451 4.7.0
	MaxMessagesPerConn int     // then 421 4.7.0 and the connection closes (0: no limit)
	MaxMessageBytes    int64   // default 10 MiB; above: 552 5.3.4

	// Sink receives each DSN and ARF report; SinkAddr, when set instead, is an SMTP
	// server (host:port) they are delivered to (MAIL FROM:<>, RCPT TO: the notice's To).
	Sink     func(ctx context.Context, n Notice) error
	SinkAddr string
	// FeedbackTo is where ARF reports go (default the message's envelope sender).
	FeedbackTo     string
	BounceDelay    time.Duration // after acceptance (default 0: at once)
	ComplaintDelay time.Duration // after acceptance (default 0)

	KeepRaw bool             // keep each accepted message's bytes in its Record
	Now     func() time.Time // greylisting and timestamps (default time.Now)
	Logger  *slog.Logger
}

// Fate is what the sandbox does with messages to a recipient.
type Fate string

// Fates.
const (
	FateDeliver     Fate = "deliver"
	FateUnknownUser Fate = "unknown_user"
	FateMailboxFull Fate = "mailbox_full"
	FateBounce      Fate = "bounce"
	FateComplain    Fate = "complain"
)

// FateOf returns the fate of recipient addr under c's shares: a deterministic function
// of the lower-cased address.
func (c Config) FateOf(addr string) Fate {
	u := unit(hashString('f', strings.ToLower(addr)))
	for _, f := range []struct {
		share float64
		fate  Fate
	}{{c.UnknownUserRate, FateUnknownUser}, {c.MailboxFullRate, FateMailboxFull}, {c.BounceRate, FateBounce}, {c.ComplaintRate, FateComplain}} {
		if u < f.share {
			return f.fate
		}
		u -= f.share
	}
	return FateDeliver
}

// Greylists reports whether recipient addr is greylisted under c.
func (c Config) Greylists(addr string) bool {
	return c.GreylistRate > 0 && unit(hashString('g', strings.ToLower(addr))) < c.GreylistRate
}

// Record is a message the sandbox accepted, for one recipient.
type Record struct {
	From      string      `json:"from"` // envelope sender
	To        string      `json:"to"`   // envelope recipient
	MessageID string      `json:"message_id"`
	Callback  string      `json:"callback,omitempty"` // X-Herald-Callback
	Subject   string      `json:"subject"`
	Header    mail.Header `json:"header"`
	Size      int         `json:"size"`
	At        time.Time   `json:"at"`
	Conn      int64       `json:"conn"` // the connection's number (1, 2, …)
	TLS       bool        `json:"tls"`
	User      string      `json:"user,omitempty"` // the AUTH user
	Fate      Fate        `json:"fate"`
	Raw       []byte      `json:"-"` // with Config.KeepRaw
}

// Notice is a DSN or ARF report the sandbox sends about an accepted message.
type Notice struct {
	Kind      string // "bounce" or "complaint"
	To        string // the envelope recipient: the original envelope sender, or FeedbackTo
	MessageID string // of the original message
	Raw       []byte // the whole RFC 5322 message
}

// Stats are the sandbox's counters.
type Stats struct {
	Connections      int64            `json:"connections"`
	Accepted         int64            `json:"accepted"`
	Refused          map[string]int64 `json:"refused"` // by reply: "550 5.1.1"
	AuthFailures     int64            `json:"auth_failures"`
	Bounces          int64            `json:"bounces"`    // DSNs made
	Complaints       int64            `json:"complaints"` // ARF reports made
	NoticesDelivered int64            `json:"notices_delivered"`
	NoticesFailed    int64            `json:"notices_failed"` // given up after retries
}

// Sandbox is a running SMTP server. New, then Start.
type Sandbox struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
	srv *smtp.Server
	ln  net.Listener

	stopOnce sync.Once
	stopErr  error

	global *rate.Limiter

	connSeq  atomic.Int64
	connsMu  sync.Mutex
	conns    map[string]*trackedConn // by remote address
	accepted atomic.Int64
	authFail atomic.Int64
	bounces  atomic.Int64
	compl    atomic.Int64
	nDeliv   atomic.Int64
	nFailed  atomic.Int64
	refMu    sync.Mutex
	refused  map[string]int64

	greyMu sync.Mutex
	grey   map[string]time.Time // sender + "\x00" + recipient → first attempt
	passed map[string]bool

	recMu   sync.Mutex
	records []Record

	qMu    sync.Mutex
	q      noticeQueue
	wake   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a sandbox for cfg; Start listens.
func New(cfg Config) *Sandbox {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Domain == "" {
		cfg.Domain = "mx.sandbox.test"
	}
	if cfg.GreylistDelay == 0 {
		cfg.GreylistDelay = time.Minute
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 10 << 20
	}
	s := &Sandbox{cfg: cfg, log: cfg.Logger, now: cfg.Now, conns: map[string]*trackedConn{}, refused: map[string]int64{},
		grey: map[string]time.Time{}, passed: map[string]bool{}, wake: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "email-sandbox")
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.Rate > 0 {
		s.global = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate)))
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Domain
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = 100
	srv.TLSConfig = cfg.TLS
	srv.AllowInsecureAuth = cfg.TLS == nil // loopback without TLS: AUTH in clear, as a local relay would
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	s.srv = srv
	return s
}

// Start listens on Config.Addr and serves until ctx ends or Close.
func (s *Sandbox) Start(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("email sandbox: listen: %w", err)
		}
	}
	s.ln = ln
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(&trackingListener{Listener: ln, s: s}); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			s.log.Warn("serve", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.deliverNotices(ctx)
	}()
	context.AfterFunc(ctx, func() { _ = s.stop() })
	return nil
}

// stop closes the server and its listener once: go-smtp's Server.Close panics when two
// calls race (the context's end and Close).
func (s *Sandbox) stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.srv.Close()
		if s.ln != nil {
			_ = s.ln.Close() // Serve may not have registered it with the server yet
		}
	})
	return s.stopErr
}

// Addr is the address the sandbox listens on (after Start).
func (s *Sandbox) Addr() string { return s.ln.Addr().String() }

// Close stops the server, closes every connection and drops notices not yet sent.
func (s *Sandbox) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	err := s.stop()
	s.wg.Wait()
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	return err
}

// CloseConnections closes every client connection from the server side (a restart, an
// idle timeout) and returns how many it closed. The sandbox keeps serving.
func (s *Sandbox) CloseConnections() int {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	n := 0
	for _, c := range s.conns {
		_ = c.Conn.Close()
		n++
	}
	return n
}

// OpenConnections returns how many client connections are open now.
func (s *Sandbox) OpenConnections() int {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	return len(s.conns)
}

// Records returns a copy of what the sandbox accepted, in order.
func (s *Sandbox) Records() []Record {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return append([]Record(nil), s.records...)
}

// TakeRecords returns what the sandbox accepted since the last TakeRecords, in order, and
// forgets it (a benchmark of many rounds keeps its memory flat). Stats still count it.
func (s *Sandbox) TakeRecords() []Record {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	recs := s.records
	s.records = nil
	return recs
}

// Stats returns the counters.
func (s *Sandbox) Stats() Stats {
	st := Stats{Connections: s.connSeq.Load(), Accepted: s.accepted.Load(), AuthFailures: s.authFail.Load(),
		Bounces: s.bounces.Load(), Complaints: s.compl.Load(), NoticesDelivered: s.nDeliv.Load(),
		NoticesFailed: s.nFailed.Load(), Refused: map[string]int64{}}
	s.refMu.Lock()
	for k, v := range s.refused {
		st.Refused[k] = v
	}
	s.refMu.Unlock()
	return st
}

func (s *Sandbox) refuse(code int, enh smtp.EnhancedCode, msg string) error {
	s.refMu.Lock()
	s.refused[fmt.Sprintf("%d %d.%d.%d", code, enh[0], enh[1], enh[2])]++
	s.refMu.Unlock()
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// trackingListener numbers connections and lets the sandbox close them or close one
// right after a reply (421).
type trackingListener struct {
	net.Listener
	s *Sandbox
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.s
		s.connsMu.Lock()
		full := s.cfg.MaxConnections > 0 && len(s.conns) >= s.cfg.MaxConnections
		var tc *trackedConn
		if !full {
			tc = &trackedConn{Conn: c, id: s.connSeq.Add(1), s: s}
			if s.cfg.ConnRate > 0 {
				tc.lim = rate.NewLimiter(rate.Limit(s.cfg.ConnRate), max(1, int(s.cfg.ConnRate)))
			}
			s.conns[c.RemoteAddr().String()] = tc
		}
		s.connsMu.Unlock()
		if tc != nil {
			return tc, nil
		}
		// Too many connections: the greeting is the refusal.
		_ = s.refuse(421, smtp.EnhancedCode{4, 7, 0}, "")
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = fmt.Fprintf(c, "421 4.7.0 %s Too many concurrent SMTP connections; try again later\r\n", s.cfg.Domain)
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	id         int64
	s          *Sandbox
	lim        *rate.Limiter
	msgs       atomic.Int64
	closeAfter atomic.Bool // close once the next reply is written
	once       sync.Once
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if c.closeAfter.Load() && bytes.HasSuffix(b, []byte("\r\n")) {
		_ = c.Close()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.connsMu.Lock()
		delete(c.s.conns, c.RemoteAddr().String())
		c.s.connsMu.Unlock()
	})
	return c.Conn.Close()
}

func (s *Sandbox) newSession(c *smtp.Conn) (smtp.Session, error) {
	var tc *trackedConn
	switch nc := c.Conn().(type) {
	case *trackedConn:
		tc = nc
	case *tls.Conn:
		tc, _ = nc.NetConn().(*trackedConn)
	}
	if tc == nil {
		return nil, errors.New("email sandbox: untracked connection")
	}
	_, isTLS := c.TLSConnectionState()
	return &session{s: s, conn: tc, tls: isTLS}, nil
}

// session is one SMTP session (a new one after STARTTLS).
type session struct {
	s     *Sandbox
	conn  *trackedConn
	tls   bool
	user  string
	from  string
	rcpts []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if len(ss.s.cfg.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if want, ok := ss.s.cfg.Users[user]; ok && want == pass {
			ss.user = user
			return nil
		}
		ss.s.authFail.Add(1)
		return ss.s.refuse(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				ss.s.authFail.Add(1)
				return ss.s.refuse(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
			}
			return check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of AUTH LOGIN (go-sasl has only the client).
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(resp) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	s := ss.s
	switch {
	case s.cfg.RequireTLS && !ss.tls:
		return s.refuse(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	case len(s.cfg.Users) > 0 && ss.user == "":
		return s.refuse(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	case s.cfg.MaxMessagesPerConn > 0 && ss.conn.msgs.Load() >= int64(s.cfg.MaxMessagesPerConn):
		ss.conn.closeAfter.Store(true)
		return s.refuse(421, smtp.EnhancedCode{4, 7, 0}, fmt.Sprintf("%s Too many messages on this connection, closing", s.cfg.Domain))
	case ss.conn.lim != nil && !ss.conn.lim.Allow():
		return s.refuse(451, smtp.EnhancedCode{4, 7, 0}, "Connection rate limit exceeded, try again later")
	case s.global != nil && !s.global.Allow():
		return s.refuse(451, smtp.EnhancedCode{4, 7, 0}, "Rate limit exceeded, try again later")
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := ss.s
	switch s.cfg.FateOf(to) {
	case FateUnknownUser:
		return s.refuse(550, smtp.EnhancedCode{5, 1, 1}, fmt.Sprintf("<%s>: Recipient address rejected: User unknown in virtual mailbox table", to))
	case FateMailboxFull:
		return s.refuse(452, smtp.EnhancedCode{4, 2, 2}, fmt.Sprintf("<%s>: Recipient address rejected: Mailbox full", to))
	}
	if s.cfg.Greylists(to) && !s.greylistPassed(ss.from, to) {
		return s.refuse(451, smtp.EnhancedCode{4, 7, 1}, fmt.Sprintf("<%s>: Recipient address rejected: Greylisted, please try again in %d seconds",
			to, int(s.cfg.GreylistDelay.Seconds())))
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

// greylistPassed records the attempt and reports whether the pair waited long enough.
func (s *Sandbox) greylistPassed(from, to string) bool {
	k := strings.ToLower(from) + "\x00" + strings.ToLower(to)
	now := s.now()
	s.greyMu.Lock()
	defer s.greyMu.Unlock()
	if s.passed[k] {
		return true
	}
	first, ok := s.grey[k]
	if !ok {
		s.grey[k] = now
		return false
	}
	if now.Sub(first) >= s.cfg.GreylistDelay {
		s.passed[k] = true
		delete(s.grey, k)
		return true
	}
	return false
}

func (ss *session) Data(r io.Reader) error {
	s := ss.s
	raw, err := io.ReadAll(r)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return s.refuse(se.Code, se.EnhancedCode, se.Message)
		}
		return err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return s.refuse(554, smtp.EnhancedCode{5, 6, 0}, "Message is not RFC 5322: "+err.Error())
	}
	ss.conn.msgs.Add(1)
	now := s.now()
	for _, to := range ss.rcpts {
		rec := Record{From: ss.from, To: to, MessageID: strings.Trim(msg.Header.Get("Message-Id"), "<> "),
			Callback: msg.Header.Get("X-Herald-Callback"), Subject: decodeSubject(msg.Header.Get("Subject")),
			Header: msg.Header, Size: len(raw), At: now, Conn: ss.conn.id, TLS: ss.tls, User: ss.user, Fate: s.cfg.FateOf(to)}
		if s.cfg.KeepRaw {
			rec.Raw = raw
		}
		s.accepted.Add(1)
		s.recMu.Lock()
		s.records = append(s.records, rec)
		s.recMu.Unlock()
		switch rec.Fate {
		case FateBounce:
			s.bounces.Add(1)
			s.enqueue(now.Add(s.cfg.BounceDelay), Notice{Kind: "bounce", To: ss.from, MessageID: rec.MessageID,
				Raw: s.dsn(rec, raw, now)})
		case FateComplain:
			s.compl.Add(1)
			to := s.cfg.FeedbackTo
			if to == "" {
				to = ss.from
			}
			s.enqueue(now.Add(s.cfg.ComplaintDelay), Notice{Kind: "complaint", To: to, MessageID: rec.MessageID,
				Raw: s.arf(rec, raw, now)})
		}
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.rcpts = "", nil }

func (ss *session) Logout() error { return nil }

func decodeSubject(s string) string {
	if d, err := mimeDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// notices: a min-heap by due time, delivered by one goroutine.

type pendingNotice struct {
	due     time.Time
	n       Notice
	attempt int
}

type noticeQueue []pendingNotice

func (q noticeQueue) Len() int           { return len(q) }
func (q noticeQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q noticeQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *noticeQueue) Push(x any)        { *q = append(*q, x.(pendingNotice)) }
func (q *noticeQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

func (s *Sandbox) enqueue(due time.Time, n Notice) {
	s.push(pendingNotice{due: due, n: n})
}

func (s *Sandbox) push(p pendingNotice) {
	if s.cfg.Sink == nil && s.cfg.SinkAddr == "" {
		return
	}
	s.qMu.Lock()
	heap.Push(&s.q, p)
	s.qMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

const maxNoticeAttempts = 6

func (s *Sandbox) deliverNotices(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.qMu.Lock()
		var next *pendingNotice
		if len(s.q) > 0 && !s.q[0].due.After(s.now()) {
			p := heap.Pop(&s.q).(pendingNotice)
			next = &p
		}
		wait := time.Hour
		if next == nil && len(s.q) > 0 {
			wait = s.q[0].due.Sub(s.now())
		}
		s.qMu.Unlock()
		if next != nil {
			if err := s.deliver(ctx, next.n); err != nil {
				if ctx.Err() != nil {
					return
				}
				next.attempt++
				if next.attempt >= maxNoticeAttempts {
					s.nFailed.Add(1)
					s.log.Warn("notice not delivered; giving up", "kind", next.n.Kind, "to", next.n.To, "err", err)
				} else {
					next.due = s.now().Add(time.Duration(1<<next.attempt) * 100 * time.Millisecond)
					s.push(*next)
				}
			} else {
				s.nDeliv.Add(1)
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

func (s *Sandbox) deliver(ctx context.Context, n Notice) error {
	if s.cfg.Sink != nil {
		return s.cfg.Sink(ctx, n)
	}
	c, err := smtp.Dial(s.cfg.SinkAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(s.cfg.Domain); err != nil {
		return err
	}
	if err := c.SendMail("", []string{n.To}, bytes.NewReader(n.Raw)); err != nil {
		return err
	}
	return c.Quit()
}
