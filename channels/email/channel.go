package email

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/herald-dev/herald/dispatcher"
)

// ChannelName is the channel's name in events, reports and suppressions.
const ChannelName = "email"

// Channel sends email through each sender's SMTP submission server, over a small pool of
// connections per sender. It implements dispatcher.Channel and is safe for concurrent use.
type Channel struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	bufs sync.Pool

	mu      sync.RWMutex
	senders map[string]*pool
	closed  bool
}

var _ dispatcher.Channel = (*Channel)(nil)

// New returns a Channel for cfg's senders; it opens no connection until the first send.
func New(cfg Config) (*Channel, error) {
	c := &Channel{cfg: cfg, log: cfg.Logger, now: cfg.Now, senders: make(map[string]*pool, len(cfg.Senders))}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "email")
	if c.now == nil {
		c.now = time.Now
	}
	c.bufs.New = func() any { return bytes.NewBuffer(make([]byte, 0, 8<<10)) }
	for id, sc := range cfg.Senders {
		if err := c.SetSender(id, sc); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// SetSender adds or replaces the SMTP configuration of sender id. A replaced sender's
// connections are closed once their sends finish.
func (c *Channel) SetSender(id string, sc SenderConfig) error {
	sc, err := sc.withDefaults()
	if err != nil {
		return fmt.Errorf("email sender %q: %w", id, err)
	}
	p, err := newPool(sc)
	if err != nil {
		return fmt.Errorf("email sender %q: %w", id, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errPoolClosed
	}
	old := c.senders[id]
	c.senders[id] = p
	c.mu.Unlock()
	if old != nil {
		old.close()
	}
	return nil
}

// Close closes every idle connection (QUIT) and those in use as their sends finish.
func (c *Channel) Close() error {
	c.mu.Lock()
	c.closed = true
	pools := c.senders
	c.senders = map[string]*pool{}
	c.mu.Unlock()
	for _, p := range pools {
		p.close()
	}
	return nil
}

// Dials returns how many connections the channel has opened for sender id (tests and
// benchmarks compare it with the messages sent).
func (c *Channel) Dials(id string) int64 {
	c.mu.RLock()
	p := c.senders[id]
	c.mu.RUnlock()
	if p == nil {
		return 0
	}
	return p.dials.Load()
}

// Send sends one message from sender s to m.To: m.Rendered.Email's subject, text and HTML
// parts (multipart/alternative when there is HTML), a Message-ID naming the callback's
// (campaign, contact) (see NewMessageID), X-Herald-Callback, RFC 8058 one-click
// unsubscribe headers when m.Unsubscribe is set, and a DKIM signature when the sender
// has a key. It returns the Message-ID (without angle brackets); a refusal is a
// *dispatcher.SendError classified by the Codes table.
//
// A message over the size limit the server advertises (SIZE) is refused before it is
// sent (552 5.3.4, ActionFailJob). A message whose connection broke before its data went
// out (an idle connection the server had closed, a 421) is sent again at once on a fresh
// connection. Once the data was sent, an error leaves the outcome unknown (the server
// may have accepted it): the SendError is retryable, as for any transport error.
func (c *Channel) Send(ctx context.Context, s dispatcher.Sender, m dispatcher.Message) (string, error) {
	c.mu.RLock()
	p := c.senders[s.ID]
	c.mu.RUnlock()
	if p == nil {
		return "", &dispatcher.SendError{Action: dispatcher.ActionPauseAccount, Err: fmt.Errorf("email sender %q: %w", s.ID, ErrUnknownSender)}
	}
	if err := ctx.Err(); err != nil {
		return "", c.refusal(err)
	}
	out := c.bufs.Get().(*bytes.Buffer)
	defer func() {
		if out.Cap() <= 1<<20 {
			out.Reset()
			c.bufs.Put(out)
		}
	}()
	out.Reset()
	id, to, err := c.compose(p, m, out)
	if err != nil {
		return "", err
	}
	for attempt := 0; ; attempt++ {
		cn, reused, err := p.get(ctx)
		if err != nil {
			return "", c.refusal(err)
		}
		dataSent, err := p.transact(ctx, cn, to, out.Bytes())
		p.put(cn, err)
		if err == nil {
			return id, nil
		}
		if !dataSent && reused && attempt <= p.sc.PoolSize && retryableOnFreshConn(err) && ctx.Err() == nil {
			c.log.Debug("connection broken before the message was sent; retrying on another", "err", err)
			continue
		}
		return "", c.refusal(err)
	}
}

func (c *Channel) refusal(err error) *dispatcher.SendError {
	se := Classify(err)
	if c.cfg.MaxRetryAfter > 0 && se.RetryAfter > c.cfg.MaxRetryAfter {
		se.RetryAfter = c.cfg.MaxRetryAfter
	}
	return se
}

// transact sends one message on cn: MAIL, RCPT, DATA. dataSent is true once the data
// command was accepted (from then on the outcome may be unknown).
func (p *pool) transact(ctx context.Context, cn *conn, to string, msg []byte) (dataSent bool, err error) {
	if cn.raw != nil {
		_ = cn.raw.SetDeadline(time.Now().Add(p.sc.Timeout))
		stop := context.AfterFunc(ctx, func() { _ = cn.raw.SetDeadline(pastDeadline) })
		defer func() {
			if !stop() && err == nil {
				// Cancelled just as the send finished: the message went, but the
				// connection's deadline is spoiled; close it.
				_ = cn.cl.Close()
			}
			if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%w)", ctx.Err(), err)
			}
		}()
	}
	if limit := sizeLimit(cn.cl); limit > 0 && int64(len(msg)) > limit {
		// RFC 1870: a message over the server's advertised SIZE is refused before MAIL,
		// rather than uploaded only to be answered 552 at the end of its data.
		return false, &ReplyError{Reply: 552, Enhanced: "5.3.4", Command: "SIZE",
			Text: fmt.Sprintf("message of %d bytes is over the server's SIZE limit of %d bytes; not sent", len(msg), limit)}
	}
	cn.sent++
	if cn.pipelining {
		return p.transactPipelined(cn, to, msg)
	}
	if err := cn.cl.Mail("<" + p.sc.ReturnPath + ">"); err != nil {
		return false, p.resetAfter("MAIL", cn, err)
	}
	if err := cn.cl.Rcpt("<" + to + ">"); err != nil {
		return false, p.resetAfter("RCPT", cn, err)
	}
	w, err := cn.cl.Data()
	if err != nil {
		return false, p.resetAfter("DATA", cn, err)
	}
	if _, err := w.Write(msg); err != nil {
		_ = w.Close()
		return true, replyError("DATA", err)
	}
	if err := w.Close(); err != nil {
		return true, replyError("DATA", err)
	}
	return true, nil
}

// sizeLimit returns the message size limit the server advertised in its EHLO reply
// (SIZE n, RFC 1870), or 0 when it gave none.
func sizeLimit(cl *smtp.Client) int64 {
	ok, param := cl.Extension("SIZE")
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(param), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// transactPipelined sends one message on cn as RFC 2920 allows: MAIL, RCPT and DATA in
// one write, their three replies read in order, then the data and its final reply. Two
// round trips instead of four, and half the writes. The commands are go-mail's own
// (with the parameters its Mail adds); its client is bypassed only to write them at once.
func (p *pool) transactPipelined(cn *conn, to string, msg []byte) (dataSent bool, err error) {
	if err := validAddr(p.sc.ReturnPath); err != nil {
		return false, err
	}
	if err := validAddr(to); err != nil {
		return false, err
	}
	t := cn.cl.Text
	w := t.W
	w.WriteString("MAIL FROM:<")
	w.WriteString(p.sc.ReturnPath)
	w.WriteString(">")
	w.WriteString(cn.mailParams)
	w.WriteString("\r\nRCPT TO:<")
	w.WriteString(to)
	w.WriteString(">\r\nDATA\r\n")
	if err := w.Flush(); err != nil {
		return false, err
	}
	// Every reply is read, whatever the earlier ones said, to stay in step with the server.
	var first error
	var firstCmd string
	dataOpen := false
	for _, r := range []struct {
		cmd  string
		code int
	}{{"MAIL", 250}, {"RCPT", 25}, {"DATA", 354}} {
		_, _, err := t.ReadResponse(r.code)
		if err == nil {
			dataOpen = r.cmd == "DATA"
			continue
		}
		if first == nil {
			first, firstCmd = err, r.cmd
		}
		if _, ok := errors.AsType[*textproto.Error](err); !ok {
			_ = cn.cl.Close() // the connection broke: nothing more to read
			return false, replyError(firstCmd, first)
		}
	}
	if first != nil {
		if dataOpen {
			// A server that took DATA all the same gets an empty message's end (RFC 2920
			// §3.1), which it refuses for want of a recipient.
			_, _ = w.WriteString(".\r\n")
			if err := w.Flush(); err != nil {
				_ = cn.cl.Close()
			} else if _, _, err := t.ReadResponse(250); err != nil {
				if _, ok := errors.AsType[*textproto.Error](err); !ok {
					_ = cn.cl.Close()
				}
			}
		}
		return false, p.resetAfter(firstCmd, cn, first)
	}
	dw := t.DotWriter()
	if _, err := dw.Write(msg); err != nil {
		_ = dw.Close()
		return true, replyError("DATA", err)
	}
	if err := dw.Close(); err != nil {
		return true, replyError("DATA", err)
	}
	if _, _, err := t.ReadResponse(250); err != nil {
		return true, replyError("DATA", err)
	}
	return true, nil
}

// validAddr refuses an address that would break the command line it goes in (go-mail's
// validateLine does the same for its own commands).
func validAddr(a string) error {
	if strings.ContainsAny(a, "\r\n<>") {
		return errors.New("smtp: an address contains CR, LF or angle brackets")
	}
	return nil
}

// resetAfter classifies err and, when the server refused the command but the connection
// lives, sends RSET so the connection can carry the next message.
func (p *pool) resetAfter(cmd string, cn *conn, err error) error {
	err = replyError(cmd, err)
	if !broken(err) {
		if rerr := cn.cl.Reset(); rerr != nil {
			_ = cn.cl.Close()
		}
	}
	return err
}

// dkimHeaders are the fields signed when present (RFC 6376 §5.4.1, RFC 8058 §4).
var dkimHeaders = []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
	"List-Unsubscribe", "List-Unsubscribe-Post", "X-Herald-Callback"}

// compose writes the message (signed when the sender has a DKIM key) to out and returns
// its Message-ID and the recipient's address.
func (c *Channel) compose(p *pool, m dispatcher.Message, out *bytes.Buffer) (id, to string, err error) {
	sc := p.sc
	e := m.Rendered.Email
	if e == nil {
		return "", "", &dispatcher.SendError{Action: dispatcher.ActionFailJob,
			Err: fmt.Errorf("email: template %q rendered no email (kind %q)", m.Rendered.Template, m.Rendered.Kind)}
	}
	rcpt, err := mail.ParseAddress(m.To)
	if err != nil {
		return "", "", &dispatcher.SendError{Action: dispatcher.ActionUndeliverable,
			Err: fmt.Errorf("email: recipient %q: %w", m.To, err)}
	}
	to = rcpt.Address
	key, variant, ok := parseCallback(m.CallbackData)
	if ok {
		id = NewMessageID(key.Campaign, key.Contact, variant, sc.MessageIDDomain, c.cfg.MessageKey)
	} else {
		id = randomMessageID(sc.MessageIDDomain) // not a campaign message: nothing to name
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	// The addresses as parsed already (the sender's once, in newPool): go-mail would
	// parse each again for every message.
	msg.FromMailAddress(p.from)
	msg.ToMailAddress(&mail.Address{Address: to})
	msg.Subject(e.Subject)
	msg.SetMessageIDWithValue(id)
	msg.SetDateWithValue(c.now())
	if cb := m.CallbackData; cb != "" && headerSafe(cb) {
		msg.SetGenHeader(gomail.Header("X-Herald-Callback"), cb)
	}
	if u := strings.TrimSpace(m.Unsubscribe); u != "" {
		if !headerSafe(u) || strings.ContainsAny(u, "<>, ") {
			return "", "", &dispatcher.SendError{Action: dispatcher.ActionFailJob, Err: fmt.Errorf("email: unsubscribe URL %q is not a URL", u)}
		}
		msg.SetListUnsubscribe(u)
		msg.SetListUnsubscribePost()
	}
	switch {
	case e.HTML != "" && e.Text != "":
		msg.SetBodyString(gomail.TypeTextPlain, e.Text)
		msg.AddAlternativeString(gomail.TypeTextHTML, e.HTML)
	case e.HTML != "":
		msg.SetBodyString(gomail.TypeTextHTML, e.HTML)
	default:
		msg.SetBodyString(gomail.TypeTextPlain, e.Text)
	}
	if sc.DKIMKey == nil {
		if _, err := msg.WriteTo(out); err != nil {
			return "", "", &dispatcher.SendError{Action: dispatcher.ActionFailJob, Err: fmt.Errorf("email: write message: %w", err)}
		}
		return id, to, nil
	}
	if err := c.sign(sc, msg, out); err != nil {
		return "", "", &dispatcher.SendError{Action: dispatcher.ActionFailJob, Err: err}
	}
	return id, to, nil
}

// sign writes msg to out behind its DKIM-Signature field.
func (c *Channel) sign(sc SenderConfig, msg *gomail.Msg, out *bytes.Buffer) error {
	body := c.bufs.Get().(*bytes.Buffer)
	body.Reset()
	defer c.bufs.Put(body)
	if _, err := msg.WriteTo(body); err != nil {
		return fmt.Errorf("email: write message: %w", err)
	}
	keys := make([]string, 0, len(dkimHeaders))
	for _, k := range dkimHeaders {
		if hasHeader(body.Bytes(), k) {
			keys = append(keys, k)
		}
	}
	s, err := dkim.NewSigner(&dkim.SignOptions{Domain: sc.DKIMDomain, Selector: sc.DKIMSelector, Signer: sc.DKIMKey,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: keys})
	if err != nil {
		return fmt.Errorf("email: dkim: %w", err)
	}
	if _, err := s.Write(body.Bytes()); err != nil {
		_ = s.Close()
		return fmt.Errorf("email: dkim sign: %w", err)
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("email: dkim sign: %w", err)
	}
	out.WriteString(s.Signature())
	out.Write(body.Bytes())
	return nil
}

// hasHeader reports whether the message's header section has field name.
func hasHeader(msg []byte, name string) bool {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	h := msg[:end]
	for len(h) > 0 {
		line := h
		if i := bytes.Index(h, []byte("\r\n")); i >= 0 {
			line, h = h[:i], h[i+2:]
		} else {
			h = nil
		}
		if len(line) > len(name) && line[len(name)] == ':' && strings.EqualFold(string(line[:len(name)]), name) {
			return true
		}
	}
	return false
}

// headerSafe reports whether s can stand in a header field as it is: printable ASCII,
// at most 900 bytes.
func headerSafe(s string) bool {
	if len(s) > 900 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
