// Package channeltest is the conformance suite every channel adapter passes (like
// alertmanager's shared notifier tests), each check a real exchange with the channel's
// own sandbox:
//
//   - sends land exactly once at the sandbox with unique ids, and a cancelled context
//     never reports a send;
//   - every documented refusal comes back as a typed *dispatcher.SendError whose action
//     the core carries out, classified the same however often it is tried;
//   - a transient refusal is retryable with a sane delay and the signal the throttle
//     needs, and once the sandbox stops refusing the same message lands once;
//   - idempotency: the provider's key makes a repeated send take effect once, or (the
//     provider offers none, and the harness says so) the adapter's id is new per send,
//     is the one the provider recorded, and the provider dedupes nothing;
//   - what the provider reports back (statuses, inbound messages, bounces, complaints)
//     names the sends, and a signed webhook is accepted only with its signature: forged,
//     missing, malformed, replayed from another request or over an altered body or URL,
//     it is refused and decodes nothing; malformed and oversized deliveries decode
//     nothing;
//   - consent: each case the channel declares (STOP and its kin, START, a complaint, a
//     hard bounce, other text) goes through the channel's real decoder to its effect;
//   - limits: an over-limit message is refused before sending (typed, not a network
//     error) or split as documented, and the harness's sender stays within the
//     provider's pace.
//
// Each channel's tests build a Harness around its own sandbox and call Run; a channel
// missing a declaration fails. Recorder stands in for Herald's webhook endpoint in front
// of a sandbox.
package channeltest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/throttle"
)

// Refusal is one documented refusal a sandbox can be made to answer: sending to To (or
// Message, when the refusal is about the message rather than the address) must fail
// with Action (and Retryable).
type Refusal struct {
	Name      string
	To        string
	Message   func(cb string) dispatcher.Message
	Action    string
	Retryable bool
}

// Landed is a message the sandbox accepted.
type Landed struct {
	Callback string // its callback data
	ID       string // the provider's id of it
}

// Transient is a temporary refusal the sandbox can be made to answer and then lift: a
// throughput or pair-rate limit, a queue that is full, greylisting, a busy server.
type Transient struct {
	Name string
	// Sender sends it (default Harness.Sender): a transient may need a sender of its own
	// (a slow long code, a server that takes one connection).
	Sender *dispatcher.Sender
	// Message builds the message that will be refused.
	Message func(cb string) dispatcher.Message
	// Refuse makes the sandbox refuse the next send of the message; Lift makes it accept
	// it again (time passes on the sandbox's clock, a connection closes…).
	Refuse, Lift func(t *testing.T)
	// What the refusal must say.
	Action                       string
	Signal                       throttle.Signal
	MinRetryAfter, MaxRetryAfter time.Duration
}

// maxSaneRetryAfter bounds any retry delay an adapter suggests (WhatsApp's marketing
// hold is the longest the providers document).
const maxSaneRetryAfter = 24 * time.Hour

// Idempotency says how the provider makes a repeated send take effect once: Key names
// its mechanism (an idempotency header the adapter derives from the message), or None
// says why there is none. Exactly one is set.
type Idempotency struct {
	Key  string
	None string
	// IDKey, when the adapter's ids name the (campaign, contact) they were sent for
	// (email's Message-ID), reads it back.
	IDKey func(id string) (dispatcher.Key, bool)
}

// Limits are what a provider allows one message and one sender.
type Limits struct {
	// Rate is the provider's documented pace of one sender, in messages (SMS: segments)
	// per second; the harness's Sender.Rate must not exceed it. 0: the provider documents
	// none, and RateNote says so.
	Rate     float64
	RateNote string
	Cases    []Limit
	// Parts returns in how many parts the sandbox recorded the message with callback
	// data cb (SMS segments); nil when every message is one part.
	Parts func(cb string) int
	// Attempts counts the send attempts the sandbox has seen (requests, SMTP
	// transactions); a message refused before sending adds none.
	Attempts func() int64
}

// Limit is one message at or over a limit: sent in Parts parts when Parts > 0, else
// refused with Action (not retryable), by the adapter before it reaches the provider
// when Before.
type Limit struct {
	Name    string
	Message func(cb string) dispatcher.Message
	Parts   int
	Action  string
	Before  bool
}

// Harness wires one channel adapter to its sandbox.
type Harness struct {
	Channel dispatcher.Channel
	Sender  dispatcher.Sender
	// Message builds a message to address to whose callback data is cb.
	Message func(to, cb string) dispatcher.Message
	// Recipient is the i-th address the sandbox accepts and delivers to.
	Recipient func(i int) string
	// Accepted returns every message the sandbox accepted so far (its record of the
	// truth), from every sandbox the harness's senders reach.
	Accepted func() []Landed
	// Refusals are the documented refusals the sandbox can be made to answer.
	Refusals []Refusal
	// Actions are the actions the channel's code table can return (each must be one the
	// core's Reactor carries out).
	Actions []string
	// SkipSends runs only the actions and the refusals (a harness built to be refused,
	// e.g. a bad token).
	SkipSends bool

	Transients  []Transient
	Idempotency Idempotency
	Reports     Reports
	Consent     []ConsentCase
	Limits      Limits
}

// Recipients the checks use: Recipient(i) for i below 40 are the concurrent sends'.
const (
	recipientIdempotency = 40
	recipientReports     = 41
	recipientCancelled   = 999
)

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	t.Run("actions", func(t *testing.T) {
		known := dispatcher.Actions()
		for _, a := range h.Actions {
			if !slices.Contains(known, a) {
				t.Errorf("the code table returns action %q, which the core does not carry out (known: %v)", a, known)
			}
		}
	})
	if !h.SkipSends {
		t.Run("sends land once each", func(t *testing.T) { sendsLandOnce(t, h) })
	}
	for _, r := range h.Refusals {
		t.Run("refusal "+r.Name, func(t *testing.T) { refusal(t, h, r) })
	}
	if h.SkipSends {
		return
	}
	t.Run("a cancelled send reports no success", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if id, err := h.Channel.Send(ctx, h.Sender, h.Message(h.Recipient(recipientCancelled), "cancelled:1")); err == nil {
			t.Fatalf("a send with a cancelled context succeeded (%s)", id)
		}
	})
	t.Run("transient refusals", func(t *testing.T) {
		if len(h.Transients) == 0 {
			t.Fatal("the harness declares no transient refusal: every provider has one (a rate limit, a busy server)")
		}
		for i, tr := range h.Transients {
			t.Run(tr.Name, func(t *testing.T) { transient(t, h, tr, fmt.Sprintf("transient:%d", i+1)) })
		}
	})
	t.Run("idempotency", func(t *testing.T) { idempotency(t, h) })
	t.Run("limits", func(t *testing.T) { limits(t, h) })
	t.Run("reports", func(t *testing.T) { reports(t, h) })
	t.Run("consent", func(t *testing.T) { consent(t, h) })
}

func sendsLandOnce(t *testing.T, h Harness) {
	const n = 40
	ctx := context.Background()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id, err := h.Channel.Send(ctx, h.Sender, h.Message(h.Recipient(i), fmt.Sprintf("conf:%d", i+1)))
			if err != nil {
				errs <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			ids[i] = id
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for i, id := range ids {
		if id == "" || seen[id] {
			t.Errorf("send %d: provider id %q is empty or not unique", i, id)
		}
		seen[id] = true
	}
	for i := range n {
		landed(t, h, fmt.Sprintf("conf:%d", i+1), ids[i])
	}
}

// landed checks that the message with callback data cb landed exactly once at the
// sandbox, as id when id is not "".
func landed(t *testing.T, h Harness, cb, id string) {
	t.Helper()
	got := landedAs(h, cb)
	switch {
	case len(got) != 1:
		t.Errorf("message %s accepted %d times at the sandbox (ids %v), want once", cb, len(got), got)
	case id != "" && got[0] != id:
		t.Errorf("message %s: Send returned id %q, the sandbox recorded %q", cb, id, got[0])
	}
}

// landedAs returns the ids the sandbox recorded for the messages with callback data cb.
func landedAs(h Harness, cb string) []string {
	var ids []string
	for _, l := range h.Accepted() {
		if l.Callback == cb {
			ids = append(ids, l.ID)
		}
	}
	return ids
}

func refusal(t *testing.T, h Harness, r Refusal) {
	for attempt := range 2 { // classified the same when tried again
		cb := fmt.Sprintf("ref:%s:%d", r.Name, attempt)
		m := h.Message(r.To, cb)
		if r.Message != nil {
			m = r.Message(cb)
		}
		_, err := h.Channel.Send(context.Background(), h.Sender, m)
		var se *dispatcher.SendError
		if !errors.As(err, &se) {
			t.Fatalf("attempt %d: %v, want a *dispatcher.SendError", attempt, err)
		}
		if se.Action != r.Action || se.Retryable != r.Retryable {
			t.Fatalf("attempt %d: action %q retryable %v, want %q %v (%v)", attempt, se.Action, se.Retryable, r.Action, r.Retryable, err)
		}
		if !slices.Contains(dispatcher.Actions(), se.Action) {
			t.Fatalf("action %q is not one the core carries out", se.Action)
		}
	}
}

// transient: refused, retryable, with the declared action, signal and a sane delay, and
// nothing landed; then, once lifted, the same message lands exactly once.
func transient(t *testing.T, h Harness, tr Transient, cb string) {
	if tr.MaxRetryAfter < tr.MinRetryAfter || tr.MaxRetryAfter > maxSaneRetryAfter {
		t.Fatalf("declared retry delay [%v, %v] is not a sane range (at most %v)", tr.MinRetryAfter, tr.MaxRetryAfter, maxSaneRetryAfter)
	}
	s := h.Sender
	if tr.Sender != nil {
		s = *tr.Sender
	}
	m := tr.Message(cb)
	ctx := context.Background()
	tr.Refuse(t)
	id, err := h.Channel.Send(ctx, s, m)
	var se *dispatcher.SendError
	if !errors.As(err, &se) {
		t.Fatalf("while the sandbox refuses: Send = %q, %v; want a *dispatcher.SendError", id, err)
	}
	switch {
	case !se.Retryable:
		t.Errorf("%v: not retryable", err)
	case se.Action != tr.Action:
		t.Errorf("%v: action %q, want %q", err, se.Action, tr.Action)
	case !slices.Contains(dispatcher.Actions(), se.Action):
		t.Errorf("action %q is not one the core carries out", se.Action)
	case se.Signal != tr.Signal:
		t.Errorf("%v: signal %s, want %s", err, se.Signal, tr.Signal)
	case se.RetryAfter < tr.MinRetryAfter || se.RetryAfter > tr.MaxRetryAfter:
		t.Errorf("%v: retry after %v, want between %v and %v", err, se.RetryAfter, tr.MinRetryAfter, tr.MaxRetryAfter)
	}
	if got := landedAs(h, cb); len(got) != 0 {
		t.Fatalf("a refused message landed at the sandbox (%v)", got)
	}
	tr.Lift(t)
	id, err = h.Channel.Send(ctx, s, m)
	if err != nil {
		t.Fatalf("once the sandbox stopped refusing: %v", err)
	}
	landed(t, h, cb, id)
}

func idempotency(t *testing.T, h Harness) {
	idem := h.Idempotency
	if (idem.Key == "") == (idem.None == "") {
		t.Fatalf("the harness must name the provider's idempotency mechanism (Key) or say why it has none (None): Key %q, None %q", idem.Key, idem.None)
	}
	const cb = "idempotency:7"
	m := h.Message(h.Recipient(recipientIdempotency), cb)
	ctx := context.Background()
	id1, err := h.Channel.Send(ctx, h.Sender, m)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := h.Channel.Send(ctx, h.Sender, m) // the worker retrying the same job
	if err != nil {
		t.Fatal(err)
	}
	got := landedAs(h, cb)
	if idem.Key != "" {
		t.Logf("the provider's idempotency: %s", idem.Key)
		if id1 != id2 || len(got) != 1 {
			t.Fatalf("the same message sent twice with %s: ids %q and %q, %d landed; want one message", idem.Key, id1, id2, len(got))
		}
	} else {
		// What the adapter guarantees instead: each send is a new message with a new id,
		// the id the provider recorded (the one its reports will carry); the provider
		// dedupes nothing, so only the core's claim on (campaign, contact) prevents a
		// second send.
		t.Logf("the provider offers no idempotency: %s", idem.None)
		slices.Sort(got)
		want := []string{id1, id2}
		slices.Sort(want)
		if id1 == "" || id1 == id2 || !slices.Equal(got, want) {
			t.Fatalf("the same message sent twice: ids %q and %q, the sandbox recorded %v; want two messages with distinct ids", id1, id2, got)
		}
	}
	if idem.IDKey != nil {
		k, ok := idem.IDKey(id1)
		if want := (dispatcher.Key{Campaign: "idempotency", Contact: 7}); !ok || k != want {
			t.Fatalf("id %q names %+v (%v), want %+v", id1, k, ok, want)
		}
	}
}

func limits(t *testing.T, h Harness) {
	l := h.Limits
	switch {
	case l.Rate > 0 && h.Sender.Rate > l.Rate:
		t.Errorf("the harness's sender runs at %v/s, above the provider's %v/s", h.Sender.Rate, l.Rate)
	case l.Rate <= 0 && l.RateNote == "":
		t.Error("the harness declares no per-sender rate and does not say why (RateNote)")
	case l.Rate <= 0:
		t.Logf("per-sender rate: %s", l.RateNote)
	}
	if len(l.Cases) == 0 {
		t.Fatal("the harness declares no limit: every provider bounds a message")
	}
	for i, c := range l.Cases {
		t.Run(c.Name, func(t *testing.T) {
			cb := "limit:" + strconv.Itoa(i+1)
			m := c.Message(cb)
			var before int64
			if c.Before {
				if l.Attempts == nil {
					t.Fatal("a limit refused before sending needs Limits.Attempts to prove it")
				}
				before = l.Attempts()
			}
			id, err := h.Channel.Send(context.Background(), h.Sender, m)
			if c.Parts > 0 {
				if err != nil {
					t.Fatalf("a message the provider takes in %d parts: %v", c.Parts, err)
				}
				landed(t, h, cb, id)
				parts := 1
				if l.Parts != nil {
					parts = l.Parts(cb)
				}
				if parts != c.Parts {
					t.Fatalf("recorded in %d parts, want %d", parts, c.Parts)
				}
				return
			}
			var se *dispatcher.SendError
			switch {
			case !errors.As(err, &se):
				t.Fatalf("Send = %q, %v; want a *dispatcher.SendError", id, err)
			case se.Retryable || se.Action == dispatcher.ActionTransport:
				t.Fatalf("%v: an over-limit message is no transient or network error", err)
			case se.Action != c.Action:
				t.Fatalf("%v: action %q, want %q", err, se.Action, c.Action)
			}
			if got := landedAs(h, cb); len(got) != 0 {
				t.Fatalf("an over-limit message landed (%v)", got)
			}
			if c.Before {
				if n := l.Attempts() - before; n != 0 {
					t.Fatalf("refused only after %d attempt(s) at the provider; want it refused before sending", n)
				}
			}
		})
	}
}

// checkFor polls f every interval until it returns nil or total has passed (then it
// fails with f's last error).
func checkFor(t *testing.T, total, interval time.Duration, f func() error) {
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
		timer := time.NewTimer(interval)
		<-timer.C
	}
}
