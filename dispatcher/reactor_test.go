package dispatcher

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// recPublisher records what is published.
type recPublisher struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (p *recPublisher) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *recPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// reactorRig is one contact (TH, opted in to WhatsApp marketing, its 24h window open
// with sender pnid) and one running campaign, with every store a reaction may touch.
type reactorRig struct {
	rdb       *redis.Client
	prefix    string
	contact   uint32
	policy    *throttle.Policy
	campaigns *Campaigns
	consent   *recPublisher
	events    *recPublisher
	pushback  *recPushback
	reactor   *Reactor
	at        time.Time
}

const reactPNID = "106540352242922"

func newReactorRig(t *testing.T) *reactorRig {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	store := segments.NewStore(rdb, prefix)
	ids, err := store.Upsert(ctx, []segments.Contact{{Phone: "+66812345678", Name: "Somchai"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &reactorRig{rdb: rdb, prefix: prefix, contact: ids[0], consent: &recPublisher{}, events: &recPublisher{},
		pushback: newRecPushback(), at: time.Now().Truncate(time.Millisecond)}
	ledger := throttle.NewLedger(rdb, prefix, r.consent)
	if _, err := ledger.Apply(ctx, []throttle.Change{{ContactID: r.contact, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"}}, false); err != nil {
		t.Fatal(err)
	}
	r.policy = throttle.NewPolicy(rdb, prefix, nil)
	if err := r.policy.RecordInbound(ctx, reactPNID, []uint32{r.contact}, []time.Time{r.at.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r.campaigns = NewCampaigns(CampaignsConfig{Redis: rdb, Prefix: prefix})
	rdb.HSet(ctx, prefix+"{cmp:c1}", "spec", `{"id":"c1","segment":"t","template":"promo","senders":["s1"],"channel":"whatsapp","purpose":"marketing"}`, "state", "running", "audience", 10)
	r.reactor = NewReactor(ReactorConfig{Ledger: ledger, Policy: r.policy, Campaigns: r.campaigns, Contacts: store,
		Pushback: r.pushback, Events: r.events, UndeliverableFor: time.Hour})
	return r
}

// refusal is a WhatsApp refusal with code, classified as action with signal (the
// classification itself is channels/whatsapp's, tested there).
func (r *reactorRig) refusal(code int, action string, signal throttle.Signal) Refusal {
	return Refusal{Campaign: "c1", Contact: r.contact, Sender: "s1", PhoneNumberID: reactPNID, Channel: "whatsapp",
		Code: code, Action: action, Signal: signal, MessageID: "wamid.X1", At: r.at}
}

// policyAt decides a marketing template and a free-form text to the contact at now.
func (r *reactorRig) policyAt(t *testing.T, now time.Time) (template, freeForm throttle.Decision) {
	t.Helper()
	p := throttle.NewPolicy(r.rdb, r.prefix, func() time.Time { return now })
	ds, err := p.Preview(context.Background(), []throttle.Job{
		{ContactID: r.contact, SenderID: reactPNID, Channel: "whatsapp", Purpose: "marketing"},
		{ContactID: r.contact, SenderID: reactPNID, Channel: "whatsapp", Purpose: "marketing", FreeForm: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ds[0], ds[1]
}

func (r *reactorRig) state(t *testing.T) Status {
	t.Helper()
	st, err := r.campaigns.Status(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// assertUntouched checks that a reaction changed nothing beyond what want names.
func (r *reactorRig) assertUntouched(t *testing.T, except ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, e := range except {
		skip[e] = true
	}
	tpl, ff := r.policyAt(t, r.at)
	if !skip["consent"] && !skip["suppression"] && tpl.Verdict != throttle.Allow {
		t.Errorf("a template is no longer allowed: %+v", tpl)
	}
	if !skip["consent"] && !skip["suppression"] && !skip["window"] && ff.Verdict != throttle.Allow {
		t.Errorf("free-form text is no longer allowed: %+v", ff)
	}
	if !skip["campaign"] {
		if st := r.state(t); st.State != Running {
			t.Errorf("campaign state %s, want running", st.State)
		}
	}
	if !skip["restriction"] {
		if rs, _ := r.campaigns.Restrictions(context.Background(), []string{"c1"}); len(rs) != 0 {
			t.Errorf("restrictions %v, want none", rs)
		}
	}
	if !skip["recipient"] && len(r.pushback.recipients) != 0 {
		t.Errorf("recipient pushback %v, want none", r.pushback.recipients)
	}
	if !skip["sender"] && len(r.pushback.senders) != 0 {
		t.Errorf("sender pushback %v, want none", r.pushback.senders)
	}
}

// Every action a channel's refusal can be classified as (Actions) has a reaction, carried
// out and observable in Redis, the ledger or the pushback; a new action without one fails
// here. The refusals are WhatsApp's: a code, its action and its signal.
func TestEveryProviderActionHasAReaction(t *testing.T) {
	ctx := context.Background()
	checks := map[string]struct {
		code   int
		signal throttle.Signal
		check  func(t *testing.T, r *reactorRig)
	}{
		ActionNone:    {0, 0, func(t *testing.T, r *reactorRig) { r.assertUntouched(t) }},
		ActionDrop:    {130472, 0, func(t *testing.T, r *reactorRig) { r.assertUntouched(t) }},
		ActionFailJob: {131009, 0, func(t *testing.T, r *reactorRig) { r.assertUntouched(t) }},
		ActionRetry: {130429, throttle.SignalSlowSender, func(t *testing.T, r *reactorRig) {
			if got := r.pushback.senders["s1"]; len(got) != 1 || got[0] != throttle.SignalSlowSender {
				t.Errorf("sender pushback %v, want [SignalSlowSender]", got)
			}
			r.assertUntouched(t, "sender")
		}},
		ActionPauseSender: {131048, throttle.SignalHoldSender, func(t *testing.T, r *reactorRig) {
			if got := r.pushback.senders["s1"]; len(got) != 1 || got[0] != throttle.SignalHoldSender {
				t.Errorf("sender pushback %v, want [SignalHoldSender]", got)
			}
			r.assertUntouched(t, "sender")
		}},
		ActionBackoffRecipient: {131056, throttle.SignalBackoffRecipient, func(t *testing.T, r *reactorRig) {
			if got := r.pushback.recipients[r.contact]; len(got) != 1 || got[0] != throttle.SignalBackoffRecipient {
				t.Errorf("recipient pushback %v, want [SignalBackoffRecipient]", got)
			}
			r.assertUntouched(t, "recipient")
		}},
		ActionHoldMarketing: {131049, throttle.SignalHoldMarketing, func(t *testing.T, r *reactorRig) {
			if got := r.pushback.recipients[r.contact]; len(got) != 1 || got[0] != throttle.SignalHoldMarketing {
				t.Errorf("recipient pushback %v, want [SignalHoldMarketing]", got)
			}
			r.assertUntouched(t, "recipient")
		}},
		ActionOptOut: {131050, 0, func(t *testing.T, r *reactorRig) {
			if tpl, _ := r.policyAt(t, r.at); tpl.Verdict != throttle.Skip || tpl.Reason != throttle.ReasonOptedOut {
				t.Errorf("after 131050 the policy says %+v, want skip opted_out", tpl)
			}
			if r.consent.count() != 2 {
				t.Fatalf("%d consent records, want the grant and one revoke", r.consent.count())
			}
			rec, err := events.UnmarshalConsent(r.consent.msgs[1].Value)
			if err != nil || rec.Action != events.Revoke || rec.Source != "provider" || rec.Purpose != "marketing" ||
				!strings.Contains(rec.Proof, "131050") || !strings.Contains(rec.Proof, "wamid.X1") || !rec.Time.After(r.at) {
				t.Errorf("revoke record %+v, %v; want a provider revoke of marketing naming the code and the message", rec, err)
			}
			if r.events.count() != 1 {
				t.Fatalf("%d events, want one opted_out", r.events.count())
			}
			ev, _ := events.Unmarshal(r.events.msgs[0].Value)
			if ev.Kind != events.OptedOut || ev.ConsentRef != rec.ID || ev.ErrorCode != 131050 || ev.CampaignID != "c1" {
				t.Errorf("opted_out event %+v, want one naming the revoke %s", ev, rec.ID)
			}
			r.assertUntouched(t, "consent")
		}},
		ActionUndeliverable: {131026, 0, func(t *testing.T, r *reactorRig) {
			if tpl, _ := r.policyAt(t, r.at.Add(59*time.Minute)); tpl.Verdict != throttle.Skip || tpl.Reason != throttle.ReasonUndeliverable {
				t.Errorf("within the suppression the policy says %+v, want skip undeliverable", tpl)
			}
			if tpl, _ := r.policyAt(t, r.at.Add(61*time.Minute)); tpl.Verdict != throttle.Allow {
				t.Errorf("after the suppression ran out the policy says %+v, want allow", tpl)
			}
			sups, err := r.policy.Suppressions(ctx, "whatsapp", []uint32{r.contact})
			if err != nil || sups[0].Reason != throttle.ReasonUndeliverable || !sups[0].Until.Equal(r.at.Add(time.Hour)) || !strings.Contains(sups[0].Proof, "131026") {
				t.Errorf("suppression %+v, %v", sups, err)
			}
			r.assertUntouched(t, "suppression")
		}},
		ActionConvertToTemplate: {131047, 0, func(t *testing.T, r *reactorRig) {
			tpl, ff := r.policyAt(t, r.at)
			if ff.Verdict != throttle.Skip || ff.Reason != throttle.ReasonOutsideWindow || tpl.Verdict != throttle.Allow {
				t.Errorf("after 131047: template %+v, free-form %+v; want allow and skip outside_window", tpl, ff)
			}
			r.assertUntouched(t, "window")
		}},
		ActionSkipCountry: {130497, 0, func(t *testing.T, r *reactorRig) {
			rs, err := r.campaigns.Restrictions(ctx, []string{"c1"})
			if err != nil || !rs["c1"][reactPNID+":TH"] || len(rs["c1"]) != 1 {
				t.Errorf("restrictions %v, %v; want TH on %s (the country looked up from the contact)", rs, err, reactPNID)
			}
			r.assertUntouched(t, "restriction")
		}},
		ActionPauseCampaign: {132001, 0, func(t *testing.T, r *reactorRig) {
			if st := r.state(t); st.State != Paused || st.PauseReason != "provider:132001" {
				t.Errorf("campaign %s (%s), want paused provider:132001", st.State, st.PauseReason)
			}
			r.assertUntouched(t, "campaign")
		}},
		ActionPauseAccount: {190, 0, func(t *testing.T, r *reactorRig) {
			if st := r.state(t); st.State != Paused || st.PauseReason != "provider:190" {
				t.Errorf("campaign %s (%s), want paused provider:190", st.State, st.PauseReason)
			}
			r.assertUntouched(t, "campaign")
		}},
	}
	actions := Actions() // every channel's code table returns only these (channeltest checks it)
	for _, a := range actions {
		t.Run(a, func(t *testing.T) {
			if a == ActionTransport {
				r := newReactorRig(t)
				f := r.refusal(-1, ActionTransport, 0) // no provider code
				if err := r.reactor.React(ctx, []Refusal{f}); err != nil {
					t.Fatal(err)
				}
				r.assertUntouched(t, "sender") // the governor ignores codes that are not about pace
				return
			}
			c, ok := checks[a]
			if !ok {
				t.Fatalf("action %s has no reaction test: add one, and its reaction to Reactor.React", a)
			}
			r := newReactorRig(t)
			f := r.refusal(c.code, a, c.signal)
			// Twice: providers and Kafka redeliver, and a reaction must be idempotent.
			for range 2 {
				if err := r.reactor.React(ctx, []Refusal{f}); err != nil {
					t.Fatal(err)
				}
			}
			if a == ActionRetry || a == ActionPauseSender || a == ActionBackoffRecipient || a == ActionHoldMarketing {
				// Pushback is counted per report; the throttle's own scripts make it idempotent.
				r.pushback.senders["s1"] = r.pushback.senders["s1"][:min(1, len(r.pushback.senders["s1"]))]
				r.pushback.recipients[r.contact] = r.pushback.recipients[r.contact][:min(1, len(r.pushback.recipients[r.contact]))]
				if len(r.pushback.senders["s1"]) == 0 {
					delete(r.pushback.senders, "s1")
				}
				if len(r.pushback.recipients[r.contact]) == 0 {
					delete(r.pushback.recipients, r.contact)
				}
			}
			c.check(t, r)
		})
	}
	t.Run("unknown", func(t *testing.T) {
		r := newReactorRig(t)
		f := r.refusal(1, "teleport", 0)
		if err := r.reactor.React(ctx, []Refusal{f}); !errors.Is(err, ErrNoReaction) {
			t.Fatalf("unknown action: %v, want ErrNoReaction", err)
		}
	})
}
