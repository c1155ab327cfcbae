package channeltest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
)

// Decoded is what one delivery from a provider says in the core's terms (the fields of
// internal/server's Batch).
type Decoded struct {
	Reports     []dispatcher.Report
	Inbound     []dispatcher.Inbound
	Preferences []dispatcher.Preference
}

func (d Decoded) empty() bool {
	return len(d.Reports) == 0 && len(d.Inbound) == 0 && len(d.Preferences) == 0
}

// Reports is how a channel's provider reports back to Herald after a send: status
// webhooks, inbound messages, bounces and complaints.
type Reports struct {
	// To is a recipient about whose messages the provider reports back (default
	// Recipient(41); email: an address that bounces).
	To string
	// Received returns every delivery the provider has made to Herald so far, each read,
	// verified and decoded by Herald's own code; an error is a delivery Herald refused.
	// Default: every request Webhook.Captured holds, through Webhook.Receive.
	Received func() ([]Decoded, error)
	// Keyword is how the core reads an inbound message's text (internal/server's
	// Server.Keyword); nil when the channel carries no inbound messages.
	Keyword func(text string) (optOut, optIn bool)

	// Webhook is the provider's signed webhook; nil when it signs nothing, and Unsigned
	// says why.
	Webhook  *Webhook
	Unsigned string
	// NoReports, when the provider reports nothing about a message it accepted (Telegram
	// has no delivery or read receipts for bots; LINE's answer to the send is final), says
	// why; the check that reports name their sends is skipped with it, and the rest of the
	// reports still run.
	NoReports string
	// Deliver hands one raw delivery to Herald's receiving end as the provider would and
	// returns what Herald decoded from it (default, for signed webhooks: the body in
	// Webhook.Request, signed with Webhook.Key, through Webhook.Receive).
	Deliver func(body []byte) (Decoded, error)
	// Sample is a well-formed delivery in the provider's format that decodes to
	// something; Malformed are deliveries that must decode to nothing (refused, when
	// signed, even correctly signed); Oversized is a well-formed delivery larger than
	// MaxBody, the most Herald reads, and must decode to nothing too.
	Sample    string
	Malformed []string
	Oversized string
	MaxBody   int
}

// Webhook is a provider's signed webhook and Herald's endpoint for it.
type Webhook struct {
	// Header carries the signature; Key is the one the provider signs with.
	Header, Key string
	// Sign returns the Header value the provider sends with r (whose body is body) when
	// it signs with key.
	Sign func(key string, r *http.Request, body []byte) string
	// SignsURL: the signature covers the request's URL (Twilio's does), so a request
	// moved to another URL must be refused.
	SignsURL bool
	// Captured returns the requests the sandbox sent to Herald (a Recorder's).
	Captured func() []Captured
	// Request builds the provider's unsigned request carrying body to Herald's endpoint.
	Request func(body []byte) *http.Request
	// Receive is Herald's endpoint up to what it does with the result: it reads the
	// request (bounded), verifies its signature and decodes it. On error, nothing.
	Receive func(r *http.Request) (Decoded, error)
}

func (h Harness) received() ([]Decoded, error) {
	if h.Reports.Received != nil {
		return h.Reports.Received()
	}
	w := h.Reports.Webhook
	var out []Decoded
	for _, c := range w.Captured() {
		d, err := w.Receive(c.Request())
		if err != nil {
			return out, fmt.Errorf("Herald refused a request the sandbox signed (%s %s): %w", c.Method, c.URL, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func (h Harness) deliver(body []byte) (Decoded, error) {
	if h.Reports.Deliver != nil {
		return h.Reports.Deliver(body)
	}
	w := h.Reports.Webhook
	r := w.Request(body)
	r.Header.Set(w.Header, w.Sign(w.Key, r, body))
	return w.Receive(r)
}

func reports(t *testing.T, h Harness) {
	rp := h.Reports
	if (rp.Webhook == nil) == (rp.Unsigned == "") {
		t.Fatalf("the harness must declare the provider's signed webhook, or say why it signs nothing (Unsigned %q)", rp.Unsigned)
	}
	if rp.Webhook == nil && (rp.Received == nil || rp.Deliver == nil) {
		t.Fatal("an unsigned channel needs Reports.Received and Reports.Deliver")
	}
	to := rp.To
	if to == "" {
		to = h.Recipient(recipientReports)
	}
	const cb = "report:5"
	id, err := h.Channel.Send(context.Background(), h.Sender, h.Message(to, cb))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("reports name their sends", func(t *testing.T) {
		if rp.NoReports != "" {
			t.Skipf("the provider reports nothing about a sent message (%s): accepted is final", rp.NoReports)
		}
		want := dispatcher.Key{Campaign: "report", Contact: 5}
		checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
			ds, err := h.received()
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				for _, r := range d.Reports {
					if r.Key != want {
						continue
					}
					if r.MessageID != id || r.Channel != h.Sender.Channel {
						t.Fatalf("report %+v about the message sent as %q on %s", r, id, h.Sender.Channel)
					}
					return nil
				}
			}
			return fmt.Errorf("no report about the message %s (%s) among %d deliveries", cb, id, len(ds))
		})
	})
	t.Run("deliveries", func(t *testing.T) { deliveries(t, h) })
	if rp.Webhook == nil {
		t.Run("signatures", func(t *testing.T) { t.Skipf("the provider signs nothing: %s", rp.Unsigned) })
		return
	}
	t.Run("signatures", func(t *testing.T) { signatures(t, h) })
}

// deliveries: a sample decodes; malformed and oversized deliveries decode to nothing,
// and are refused when the channel signs.
func deliveries(t *testing.T, h Harness) {
	rp := h.Reports
	if rp.Sample == "" || len(rp.Malformed) == 0 || rp.Oversized == "" || rp.MaxBody <= 0 {
		t.Fatal("the harness must give a Sample, Malformed deliveries, an Oversized one and MaxBody")
	}
	if d, err := h.deliver([]byte(rp.Sample)); err != nil || d.empty() {
		t.Fatalf("the sample delivery decoded to %+v, %v; want something", d, err)
	}
	if len(rp.Oversized) <= rp.MaxBody {
		t.Fatalf("the oversized delivery has %d bytes, not more than MaxBody %d", len(rp.Oversized), rp.MaxBody)
	}
	cases := slices.Clone(rp.Malformed)
	cases = append(cases, rp.Oversized)
	for i, body := range cases {
		name := fmt.Sprintf("malformed %d", i+1)
		if i == len(cases)-1 {
			name = fmt.Sprintf("oversized (%d bytes)", len(body))
		}
		t.Run(name, func(t *testing.T) {
			d, err := h.deliver([]byte(body))
			if !d.empty() {
				t.Fatalf("decoded %+v", d)
			}
			if rp.Webhook != nil && err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// signatures: every request the sandbox signed is accepted; a forged, missing or
// malformed signature, another request's signature, an altered body or (when signed)
// URL are refused and decode nothing; a verbatim replay decodes to the same ids.
func signatures(t *testing.T, h Harness) {
	w := h.Reports.Webhook
	caps := w.Captured()
	var good, other *Captured
	for i := range caps {
		d, err := w.Receive(caps[i].Request())
		if err != nil {
			t.Fatalf("Herald refused a request the sandbox signed (%s %s): %v", caps[i].Method, caps[i].URL, err)
		}
		switch {
		case good == nil && !d.empty():
			good = &caps[i]
		case good != nil && other == nil && !bytes.Equal(caps[i].Body, good.Body):
			other = &caps[i]
		}
	}
	if good == nil || other == nil {
		t.Fatalf("the sandbox signed %d requests; want two different ones", len(caps))
	}
	refused := func(t *testing.T, r *http.Request) {
		t.Helper()
		d, err := w.Receive(r)
		if err == nil {
			t.Fatalf("accepted, decoding %+v", d)
		}
		if !d.empty() {
			t.Fatalf("refused (%v) but decoded %+v", err, d)
		}
	}
	t.Run("forged", func(t *testing.T) {
		r := good.Request()
		r.Header.Set(w.Header, w.Sign("not-"+w.Key, good.Request(), good.Body))
		refused(t, r)
	})
	t.Run("missing", func(t *testing.T) {
		r := good.Request()
		r.Header.Del(w.Header)
		refused(t, r)
	})
	t.Run("malformed", func(t *testing.T) {
		for _, v := range []string{"garbage", "sha256=", strings.Repeat("0", 64), good.Header.Get(w.Header) + "00"} {
			r := good.Request()
			r.Header.Set(w.Header, v)
			refused(t, r)
		}
	})
	t.Run("another request's signature", func(t *testing.T) {
		// Neither Meta nor Twilio signs a timestamp: a stale signature is one made for
		// another (earlier) request, put on this one.
		r := good.Request()
		r.Header.Set(w.Header, other.Header.Get(w.Header))
		refused(t, r)
	})
	t.Run("altered body", func(t *testing.T) {
		c := *good
		c.Body = append(slices.Clone(good.Body), ' ')
		refused(t, c.Request())
	})
	if w.SignsURL {
		t.Run("moved to another URL", func(t *testing.T) {
			c := *good
			sep := "?"
			if strings.Contains(c.URL, "?") {
				sep = "&"
			}
			c.URL += sep + "cb=1%3A2"
			refused(t, c.Request())
		})
	}
	t.Run("replayed verbatim", func(t *testing.T) {
		// A replay verifies (no timestamp is signed) and decodes to the same ids: the
		// core deduplicates on them, as it must for the providers' own redeliveries.
		a, err := w.Receive(good.Request())
		if err != nil {
			t.Fatal(err)
		}
		b, err := w.Receive(good.Request())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(a), ids(b)) || len(ids(a)) == 0 {
			t.Fatalf("a replay decoded to %v, the first delivery to %v", ids(b), ids(a))
		}
	})
}

// ids names what a delivery decoded to, for comparing two decodings.
func ids(d Decoded) []string {
	var out []string
	for _, r := range d.Reports {
		out = append(out, fmt.Sprintf("report %s %s %s:%d", r.Kind, r.MessageID, r.Campaign, r.Contact))
	}
	for _, in := range d.Inbound {
		out = append(out, "inbound "+in.MessageID+" "+in.From)
	}
	for _, p := range d.Preferences {
		out = append(out, "preference "+p.ID+" "+p.From)
	}
	return out
}

// Captured is one request a sandbox sent to Herald, whole.
type Captured struct {
	Method string
	URL    string // absolute, as the sandbox requested it
	Header http.Header
	Body   []byte
}

// Request returns a fresh request equal to the captured one.
func (c Captured) Request() *http.Request {
	r := httptest.NewRequest(c.Method, c.URL, bytes.NewReader(c.Body))
	r.Header = c.Header.Clone()
	return r
}

// Recorder stands in for Herald's webhook endpoint in front of a sandbox: it keeps
// every request whole and answers 200; the suite hands each to the channel's Receive.
type Recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []Captured
}

// NewRecorder starts a Recorder, closed when the test ends.
func NewRecorder(t testing.TB) *Recorder {
	rec := &Recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c := Captured{Method: r.Method, URL: "http://" + r.Host + r.URL.RequestURI(), Header: r.Header.Clone(), Body: body}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, c)
		rec.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// URL is the recorder's base URL.
func (r *Recorder) URL() string { return r.srv.URL }

// Captured returns the requests received so far, in order.
func (r *Recorder) Captured() []Captured {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}
