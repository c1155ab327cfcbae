// Package channeltest is the conformance suite every channel adapter passes (like
// alertmanager's shared notifier tests): sends land exactly once at the provider's
// sandbox with unique ids, every documented refusal comes back as a typed
// *dispatcher.SendError whose action the core knows, refusals are classified the same
// however often they are tried, and a cancelled context never reports a send. Each
// channel's tests build a Harness around its own sandbox and call Run.
package channeltest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/herald-dev/herald/dispatcher"
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

// Harness wires one channel adapter to its sandbox.
type Harness struct {
	Channel dispatcher.Channel
	Sender  dispatcher.Sender
	// Message builds a message to address to whose callback data is cb.
	Message func(to, cb string) dispatcher.Message
	// Recipient is the i-th address the sandbox accepts.
	Recipient func(i int) string
	// Accepted returns the callback data of every message the sandbox accepted so far
	// (its record of the truth).
	Accepted func() []string
	// Refusals are the documented refusals the sandbox can be made to answer.
	Refusals []Refusal
	// Actions are the actions the channel's code table can return (each must be one the
	// core's Reactor carries out).
	Actions []string
	// SkipSends runs only the refusals (a harness built to be refused, e.g. a bad token).
	SkipSends bool
}

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
	t.Run("sends land once each", func(t *testing.T) {
		if h.SkipSends {
			t.Skip("a harness built to be refused")
		}
		const n = 40
		ctx := context.Background()
		before := len(h.Accepted())
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
		acc := h.Accepted()[before:]
		count := map[string]int{}
		for _, cb := range acc {
			count[cb]++
		}
		for i := range n {
			if c := count[fmt.Sprintf("conf:%d", i+1)]; c != 1 {
				t.Errorf("message conf:%d accepted %d times at the sandbox, want once", i+1, c)
			}
		}
	})
	for _, r := range h.Refusals {
		t.Run("refusal "+r.Name, func(t *testing.T) {
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
		})
	}
	t.Run("a cancelled send reports no success", func(t *testing.T) {
		if h.SkipSends {
			t.Skip("a harness built to be refused")
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if id, err := h.Channel.Send(ctx, h.Sender, h.Message(h.Recipient(999), "conf:cancelled")); err == nil {
			t.Fatalf("a send with a cancelled context succeeded (%s)", id)
		}
	})
}
