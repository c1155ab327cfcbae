package channeltest

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
)

// Effect is what a delivery asks of a contact's consent or deliverability, as the core
// carries it out: an inbound keyword or a provider's preference revokes or grants
// marketing, a report's action opts out or suppresses.
type Effect string

// Effects.
const (
	NoEffect      Effect = "none"
	OptOut        Effect = "opt_out"
	OptIn         Effect = "opt_in"
	Undeliverable Effect = "undeliverable"
)

// ConsentCase is something a contact or the provider says about consent: a keyword
// texted, a preference changed, a complaint, a bounce, or other text that must change
// nothing.
type ConsentCase struct {
	Name string
	// Subject is who it is about: the contact's address (inbound messages and
	// preferences) or the callback data of the message a report is about.
	Subject string
	// Provoke makes the sandbox deliver it (a user texts the sandbox's number, a
	// recipient complains about a message sent to them); or, for what the sandbox cannot
	// produce, Payload is a provider-shaped delivery the suite hands to Herald itself
	// (Reports.Deliver: signed when the channel signs).
	Provoke func(t *testing.T)
	Payload string
	Want    Effect
}

func consent(t *testing.T, h Harness) {
	if len(h.Consent) == 0 {
		t.Fatal("the harness declares no consent case: every channel has a way to opt out")
	}
	if !slices.ContainsFunc(h.Consent, func(c ConsentCase) bool { return c.Want == OptOut }) {
		t.Fatal("the harness declares no opt-out")
	}
	for _, c := range h.Consent {
		t.Run(c.Name, func(t *testing.T) {
			if (c.Provoke == nil) == (c.Payload == "") {
				t.Fatal("a case is provoked through the sandbox or delivered as a Payload, one of the two")
			}
			if c.Payload != "" {
				d, err := h.deliver([]byte(c.Payload))
				if err != nil {
					t.Fatalf("Herald refused the delivery: %v", err)
				}
				found, effs := effectsOn([]Decoded{d}, c.Subject, h.Reports.Keyword)
				if c.Want != NoEffect && !found {
					t.Fatalf("the delivery decoded to %+v, nothing about %s", d, c.Subject)
				}
				checkEffects(t, effs, c.Want)
				return
			}
			c.Provoke(t)
			var effs []Effect
			checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
				ds, err := h.received()
				if err != nil {
					t.Fatal(err)
				}
				var found bool
				found, effs = effectsOn(ds, c.Subject, h.Reports.Keyword)
				if !found {
					return fmt.Errorf("nothing about %s among %d deliveries", c.Subject, len(ds))
				}
				if c.Want != NoEffect && len(effs) == 0 {
					// Providers post a message's statuses separately (sent, then failed):
					// what came first may say nothing yet.
					return fmt.Errorf("no effect on %s yet among %d deliveries", c.Subject, len(ds))
				}
				return nil
			})
			checkEffects(t, effs, c.Want)
		})
	}
}

func checkEffects(t *testing.T, effs []Effect, want Effect) {
	t.Helper()
	for _, e := range effs {
		if e != want {
			t.Fatalf("effects %v, want %s only", effs, want)
		}
	}
	if want != NoEffect && len(effs) == 0 {
		t.Fatalf("no effect, want %s", want)
	}
}

// effectsOn returns whether the deliveries say anything about subject, and the effects
// other than NoEffect they ask for.
func effectsOn(ds []Decoded, subject string, keyword func(string) (bool, bool)) (found bool, effs []Effect) {
	add := func(e Effect) {
		found = true
		if e != NoEffect && !slices.Contains(effs, e) {
			effs = append(effs, e)
		}
	}
	for _, d := range ds {
		for _, in := range d.Inbound {
			if in.From != subject {
				continue
			}
			e := NoEffect
			if keyword != nil {
				switch out, opt := keyword(in.Text); {
				case opt:
					e = OptIn
				case out:
					e = OptOut
				}
			}
			add(e)
		}
		for _, p := range d.Preferences {
			if p.From != subject {
				continue
			}
			if p.OptIn {
				add(OptIn)
			} else {
				add(OptOut)
			}
		}
		for _, r := range d.Reports {
			if r.Campaign+":"+strconv.FormatUint(uint64(r.Contact), 10) != subject {
				continue
			}
			add(reportEffect(r))
		}
	}
	return found, effs
}

// reportEffect is what the core does about a report (internal/server's ingest and the
// Reactor): a complaint or an opt-out code revokes, an undeliverable code suppresses.
func reportEffect(r dispatcher.Report) Effect {
	switch {
	case r.Kind == events.OptedOut || r.Action == dispatcher.ActionOptOut:
		return OptOut
	case r.Action == dispatcher.ActionUndeliverable:
		return Undeliverable
	}
	return NoEffect
}
