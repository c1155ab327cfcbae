package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	netmail "net/mail"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// pool keeps up to PoolSize open SMTP connections to one sender's server. A connection
// sends one message at a time, many in its life; a broken one is closed and replaced.
type pool struct {
	sc     SenderConfig
	from   *netmail.Address // sc's From and FromName
	mc     *mail.Client     // dials, says EHLO, STARTTLS and AUTH; shared by the pool's connections
	slots  chan struct{}    // a token per open connection
	idle   chan *conn
	closed atomic.Bool
	dials  atomic.Int64
}

type conn struct {
	cl       *smtp.Client
	raw      net.Conn // under any TLS: deadlines set here reach the TLS layer too
	sent     int
	lastUsed time.Time
	// pipelining: the server offers PIPELINING (RFC 2920), so MAIL, RCPT and DATA go in
	// one write and their replies are read together. mailParams are the MAIL parameters
	// go-mail's Mail would add for the server's extensions.
	pipelining bool
	mailParams string
}

// dialHolder carries the raw connection out of go-mail's dialer, and a cancellation in.
type dialHolder struct {
	mu        sync.Mutex
	conn      net.Conn
	cancelled bool
}

type holderKey struct{}

var pastDeadline = time.Unix(1, 0)

func (h *dialHolder) kill() {
	h.mu.Lock()
	h.cancelled = true
	if h.conn != nil {
		_ = h.conn.SetDeadline(pastDeadline)
	}
	h.mu.Unlock()
}

func newPool(sc SenderConfig) (*pool, error) {
	p := &pool{sc: sc, from: &netmail.Address{Name: sc.FromName, Address: sc.From},
		slots: make(chan struct{}, sc.PoolSize), idle: make(chan *conn, sc.PoolSize)}
	tlsConf := &tls.Config{ServerName: sc.Host, MinVersion: tls.VersionTLS12}
	if sc.TLSConfig != nil {
		tlsConf = sc.TLSConfig.Clone()
		if tlsConf.ServerName == "" {
			tlsConf.ServerName = sc.Host
		}
	}
	policy := mail.NoTLS
	switch sc.TLS {
	case TLSMandatory:
		policy = mail.TLSMandatory
	case TLSOpportunistic:
		policy = mail.TLSOpportunistic
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if h, ok := ctx.Value(holderKey{}).(*dialHolder); ok {
			h.mu.Lock()
			h.conn = c
			if h.cancelled {
				_ = c.SetDeadline(pastDeadline)
			}
			h.mu.Unlock()
		}
		if sc.TLS == TLSImplicit {
			tc := tls.Client(c, tlsConf)
			_ = c.SetDeadline(time.Now().Add(sc.Timeout))
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = c.Close()
				return nil, err
			}
			return tc, nil // go-mail's SMTP client sees a *tls.Conn: AUTH PLAIN may go
		}
		return c, nil
	}
	opts := []mail.Option{
		mail.WithPort(sc.Port), mail.WithTimeout(sc.Timeout), mail.WithHELO(sc.HELO),
		mail.WithTLSPolicy(policy), mail.WithTLSConfig(tlsConf), mail.WithDialContextFunc(dial),
	}
	switch sc.Auth {
	case AuthPlain:
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(sc.User), mail.WithPassword(sc.Password))
	case AuthLogin:
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthLogin), mail.WithUsername(sc.User), mail.WithPassword(sc.Password))
	}
	mc, err := mail.NewClient(sc.Host, opts...)
	if err != nil {
		return nil, err
	}
	p.mc = mc
	return p, nil
}

// get returns an idle connection still fit for use, or dials a new one when fewer than
// PoolSize are open, or waits for one to come back.
func (p *pool) get(ctx context.Context) (c *conn, reused bool, err error) {
	for {
		if p.closed.Load() {
			return nil, false, errPoolClosed
		}
		select {
		case c := <-p.idle:
			if p.fit(c) {
				return c, true, nil
			}
			p.discard(c)
			continue
		default:
		}
		select {
		case c := <-p.idle:
			if p.fit(c) {
				return c, true, nil
			}
			p.discard(c)
		case p.slots <- struct{}{}:
			c, err := p.dial(ctx)
			if err != nil {
				<-p.slots
				return nil, false, err
			}
			return c, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

var errPoolClosed = errors.New("email channel closed")

func (p *pool) fit(c *conn) bool {
	return c.cl.HasConnection() && time.Since(c.lastUsed) < p.sc.IdleTimeout &&
		(p.sc.MaxPerConn < 0 || c.sent < p.sc.MaxPerConn)
}

func (p *pool) dial(ctx context.Context) (*conn, error) {
	h := &dialHolder{}
	stop := context.AfterFunc(ctx, h.kill)
	cl, err := p.mc.DialToSMTPClientWithContext(context.WithValue(ctx, holderKey{}, h))
	cancelled := !stop()
	p.dials.Add(1)
	if err == nil && cancelled {
		_ = cl.Close()
		err = ctx.Err()
	}
	if err != nil {
		if h.conn != nil {
			_ = h.conn.Close()
		}
		if cerr := ctx.Err(); cerr != nil && cancelled {
			return nil, fmt.Errorf("connect to %s: %w", p.addr(), cerr)
		}
		return nil, fmt.Errorf("connect to %s: %w", p.addr(), dialError(err))
	}
	c := &conn{cl: cl, raw: h.conn, lastUsed: time.Now()}
	c.pipelining, _ = cl.Extension("PIPELINING")
	if ok, _ := cl.Extension("8BITMIME"); ok {
		c.mailParams += " BODY=8BITMIME"
	}
	if ok, _ := cl.Extension("SMTPUTF8"); ok {
		c.mailParams += " SMTPUTF8"
	}
	return c, nil
}

func (p *pool) addr() string { return net.JoinHostPort(p.sc.Host, strconv.Itoa(p.sc.Port)) }

// dialError tells the replies (a 421 greeting, a 535 to AUTH) and the network failures
// apart from configurations the client or server refuses (no STARTTLS offered, an
// untrusted certificate, an AUTH mechanism the server lacks).
func dialError(err error) error {
	if re := replyError("CONNECT", err); re != err {
		return re
	}
	if isNetErr(err) {
		return err
	}
	return &ConfigError{Err: err}
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// put returns c to the pool after a send that ended with err, or closes it when the
// connection is broken, used up or the pool closed.
func (p *pool) put(c *conn, err error) {
	if (err != nil && broken(err)) || p.closed.Load() || !c.cl.HasConnection() ||
		(p.sc.MaxPerConn > 0 && c.sent >= p.sc.MaxPerConn) {
		p.discard(c)
		return
	}
	c.lastUsed = time.Now()
	select {
	case p.idle <- c:
		if p.closed.Load() { // Close may have drained the idle list just before
			p.drain()
		}
	default:
		p.discard(c)
	}
}

// discard says QUIT (briefly) and closes c, freeing its slot.
func (p *pool) discard(c *conn) {
	if c.raw != nil {
		_ = c.raw.SetDeadline(time.Now().Add(min(p.sc.Timeout, 2*time.Second)))
	}
	if c.cl.HasConnection() {
		if err := c.cl.Quit(); err != nil {
			_ = c.cl.Close()
		}
	}
	<-p.slots
}

func (p *pool) drain() {
	for {
		select {
		case c := <-p.idle:
			p.discard(c)
		default:
			return
		}
	}
}

func (p *pool) close() {
	p.closed.Store(true)
	p.drain()
}
