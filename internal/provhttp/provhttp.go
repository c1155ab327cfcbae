// Package provhttp is the HTTP plumbing the provider clients share (WhatsApp's Graph API,
// the SMS API, Telegram's Bot API, LINE's Messaging API): one connection-pool shape and
// one way to read an answer. Each client keeps its own request shapes and error table.
package provhttp

import (
	"io"
	"net"
	"net/http"
	"time"
)

// MaxAnswer bounds the answer body a client reads; a provider's JSON answer is small.
const MaxAnswer = 1 << 20

// Client returns an HTTP client for one provider host: keep-alive, up to 256 idle
// connections per host (a sender's workers send in parallel), bounded dial, TLS and
// response-header timeouts, 30 s in all.
func Client() *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// ReadAnswer reads up to MaxAnswer bytes of resp's body, drains a little more so the
// connection can be reused, and closes it.
func ReadAnswer(resp *http.Response) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return b, err
}

// Snippet is the start of an answer body, for an error message.
func Snippet(b []byte) string {
	const n = 256
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
