package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

// wirePoster posts webhooks over one kept-alive HTTP/1.1 connection of its own: each
// request goes out in one write and its answer is read in the same goroutine. A poster
// is one of Meta's delivery connections; net/http's client would add two goroutines and
// their hand-offs to every POST, which on a shared machine is CPU the simulator takes
// from the receiver it measures. Plain http:// receivers only (https and proxies go
// through WebhookClient).
type wirePoster struct {
	addr, host, path string
	timeout          time.Duration

	conn net.Conn
	br   *bufio.Reader
	buf  []byte
}

// newWirePoster returns a poster for rawURL, or nil when the URL needs net/http (https,
// a proxy from the environment).
func newWirePoster(rawURL string, timeout time.Duration) *wirePoster {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil {
		return nil
	}
	if p, err := http.ProxyFromEnvironment(&http.Request{URL: u}); err != nil || p != nil {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	path := u.RequestURI()
	return &wirePoster{addr: addr, host: u.Host, path: path, timeout: timeout}
}

// statusError is a receiver's answer other than 200.
type statusError struct{ code int }

func (e statusError) Error() string {
	return fmt.Sprintf("post webhook: receiver answered HTTP %d", e.code)
}

// post sends body (signed with sig when not empty) and reads the answer. When a
// kept-alive connection fails (most often one the receiver closed while idle) the POST
// goes once more at once on a fresh one; a webhook may so arrive twice, which receivers
// take as Meta's own redeliveries. Everything else fails the POST (the poster retries it
// with backoff). An answer other than 200 is never sent again here.
func (p *wirePoster) post(ctx context.Context, body []byte, sig string) error {
	reused := p.conn != nil
	err := p.exchange(ctx, body, sig)
	if err != nil && reused && ctx.Err() == nil && !errors.As(err, new(statusError)) {
		err = p.exchange(ctx, body, sig)
	}
	return err
}

func (p *wirePoster) exchange(ctx context.Context, body []byte, sig string) error {
	if p.conn == nil {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		c, err := d.DialContext(ctx, "tcp", p.addr)
		if err != nil {
			return fmt.Errorf("post webhook: %w", err)
		}
		p.conn, p.br = c, bufio.NewReaderSize(c, 4096)
	}
	keep := false
	defer func() {
		if !keep {
			p.close()
		}
	}()
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := p.conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	b := append(p.buf[:0], "POST "...)
	b = append(b, p.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, p.host...)
	b = append(b, "\r\nUser-Agent: facebookexternalua\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if sig != "" {
		b = append(b, "\r\n"+graph.SignatureHeader+": "...)
		b = append(b, sig...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	p.buf = b
	if _, err := p.conn.Write(b); err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	n, copyErr := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	// The connection carries the next POST only when this answer was read to its end.
	keep = copyErr == nil && n < 64<<10 && !resp.Close && p.br.Buffered() == 0
	if resp.StatusCode != http.StatusOK {
		return statusError{resp.StatusCode}
	}
	return nil
}

func (p *wirePoster) close() {
	if p != nil && p.conn != nil {
		_ = p.conn.Close()
		p.conn, p.br = nil, nil
	}
}
