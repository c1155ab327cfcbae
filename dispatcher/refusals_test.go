package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// outcomes reads the rig's events topic up to its end and returns, for campaign, each
// contact's decided outcome event (skipped, sent or failed).
func (r *rig) outcomes(t *testing.T, campaign string) map[uint32]events.Event {
	t.Helper()
	return r.eventsOf(t, campaign, events.Skipped, events.Sent, events.Failed)
}

// eventsOf reads the rig's events topic up to its end and returns, for campaign, each
// contact's last event of one of kinds.
func (r *rig) eventsOf(t *testing.T, campaign string, kinds ...events.Kind) map[uint32]events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[uint32]events.Event{}
	for p := range 3 {
		conn, err := kafka.DialLeader(ctx, "tcp", r.brokers[0], r.topics.Events, p)
		if err != nil {
			t.Fatal(err)
		}
		end, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: r.brokers, Topic: r.topics.Events, Partition: p, MaxWait: 50 * time.Millisecond})
		for off := int64(0); off < end; {
			m, err := rd.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("read events partition %d at %d of %d: %v", p, off, end, err)
			}
			off = m.Offset + 1
			e, err := events.Unmarshal(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if e.CampaignID == campaign && slices.Contains(kinds, e.Kind) {
				out[e.ContactID] = e
			}
		}
		rd.Close()
	}
	return out
}

func (r *rig) create(t *testing.T, cp Campaign) Campaign {
	t.Helper()
	ctx := context.Background()
	if cp.Segment == "" {
		cp.Segment = "t"
	}
	if len(cp.Senders) == 0 {
		cp.Senders = []string{"s1"}
	}
	if cp.Template == "" {
		cp.Template = "promo"
	}
	cp, err := r.campaigns.Create(ctx, cp, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	return cp
}

// refuse makes the fake channel refuse messages to the contacts of ids with code.
func refuse(ch *fakeChannel, campaign string, ids []uint32, code int, action string) {
	refused := map[string]bool{}
	for _, id := range ids {
		refused[CallbackData(campaign, id)] = true
	}
	ch.fail = func(_ int, m Message) error {
		if refused[m.CallbackData] {
			return &SendError{Code: code, Action: action, Err: fmt.Errorf("(#%d) refused", code)}
		}
		return nil
	}
}

// A marketing hold (131049) is not a failure: the job waits, deferred marketing_hold, as
// long as the refusal says (SendError.RetryAfter), else throttle.MarketingHold.
func TestMarketingHoldWaitsAsTheRefusalSays(t *testing.T) {
	r := newRig(t, 10)
	_, ch := r.run(t)
	said, unsaid := r.ids[2], r.ids[5]
	ch.fail = func(_ int, m Message) error {
		hold := &SendError{Code: 131049, Action: ActionHoldMarketing, Signal: throttle.SignalHoldMarketing, Err: errors.New("(#131049) held")}
		switch m.CallbackData {
		case CallbackData("1", said):
			hold.RetryAfter = 3 * time.Hour
			return hold
		case CallbackData("1", unsaid):
			return hold
		}
		return nil
	}
	start := time.Now()
	cp := r.create(t, Campaign{})
	var held map[uint32]events.Event
	for deadline := time.Now().Add(30 * time.Second); len(held) < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("deferred events %+v, want the two held contacts'", held)
		}
		held = r.eventsOf(t, cp.ID, events.Deferred)
	}
	end := time.Now()
	for id, want := range map[uint32]time.Duration{said: 3 * time.Hour, unsaid: throttle.MarketingHold} {
		e := held[id]
		if e.Reason != "marketing_hold" || e.ErrorCode != 131049 || e.Until.Before(start.Add(want).Truncate(time.Millisecond)) || e.Until.After(end.Add(want)) {
			t.Errorf("contact %d: deferred %q (code %d) until %v, want marketing_hold until %v after the refusal", id, e.Reason, e.ErrorCode, e.Until, want)
		}
	}
	if _, attempts := ch.counts(); attempts[CallbackData(cp.ID, said)] != 1 || attempts[CallbackData(cp.ID, unsaid)] != 1 {
		t.Errorf("held contacts tried %d and %d times, want once each", attempts[CallbackData(cp.ID, said)], attempts[CallbackData(cp.ID, unsaid)])
	}
}

// A contact whose send Meta refuses with 131050 (stopped marketing) is revoked in the
// ledger: the next campaign to the same audience skips exactly those contacts as
// opted_out, without trying them.
func TestProviderOptOutSkipsLaterCampaigns(t *testing.T) {
	r := newRig(t, 30)
	ctx, ch := r.run(t)
	stopped := r.ids[:4]
	refuse(ch, "1", stopped, 131050, ActionOptOut)
	first := r.create(t, Campaign{})
	if st := r.waitCompleted(t, first.ID); st.Sent != 26 || st.Failed != 4 {
		t.Fatalf("first campaign: %+v", st)
	}
	second := r.create(t, Campaign{})
	if st := r.waitCompleted(t, second.ID); st.Sent != 26 || st.Skipped != 4 {
		t.Fatalf("second campaign: sent %d, skipped %d; want 26 and the 4 who stopped marketing", st.Sent, st.Skipped)
	}
	_, attempts := ch.counts()
	outs := r.outcomes(t, second.ID)
	for _, id := range stopped {
		if attempts[CallbackData(second.ID, id)] != 0 {
			t.Errorf("contact %d who stopped marketing was tried again", id)
		}
		if e := outs[id]; e.Kind != events.Skipped || e.Reason != throttle.ReasonOptedOut {
			t.Errorf("contact %d: %s %q, want skipped opted_out", id, e.Kind, e.Reason)
		}
	}
	if e := r.outcomes(t, first.ID)[stopped[0]]; e.Kind != events.Failed || e.ErrorCode != 131050 {
		t.Errorf("first campaign's refused send: %+v, want failed 131050", e)
	}
	// A re-grant lifts it.
	ledger := throttle.NewLedger(r.rdb, r.prefix, memPublisher{})
	if _, err := ledger.Apply(ctx, []throttle.Change{{ContactID: stopped[0], Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "keyword"}}, false); err != nil {
		t.Fatal(err)
	}
	ch.fail = nil
	third := r.create(t, Campaign{})
	if st := r.waitCompleted(t, third.ID); st.Sent != 27 || st.Skipped != 3 {
		t.Fatalf("after a re-grant: sent %d, skipped %d; want 27 and 3", st.Sent, st.Skipped)
	}
}

// 131026 (not on WhatsApp) suppresses the contact on WhatsApp: later campaigns skip it
// as undeliverable without trying it (TestEveryProviderActionHasAReaction shows the
// suppression running out).
func TestUndeliverableContactsAreSuppressed(t *testing.T) {
	r := newRig(t, 20)
	_, ch := r.run(t)
	gone := r.ids[5:7]
	refuse(ch, "1", gone, 131026, ActionUndeliverable)
	first := r.create(t, Campaign{})
	if st := r.waitCompleted(t, first.ID); st.Failed != 2 {
		t.Fatalf("first campaign: %+v", st)
	}
	second := r.create(t, Campaign{})
	if st := r.waitCompleted(t, second.ID); st.Sent != 18 || st.Skipped != 2 {
		t.Fatalf("second campaign: sent %d, skipped %d; want 18 and the 2 undeliverable", st.Sent, st.Skipped)
	}
	_, attempts := ch.counts()
	outs := r.outcomes(t, second.ID)
	for _, id := range gone {
		if attempts[CallbackData(second.ID, id)] != 0 {
			t.Errorf("undeliverable contact %d was tried again", id)
		}
		if e := outs[id]; e.Kind != events.Skipped || e.Reason != throttle.ReasonUndeliverable {
			t.Errorf("contact %d: %s %q, want skipped undeliverable", id, e.Kind, e.Reason)
		}
	}
}

const freeFormTemplate = "name: hello\nchannel: whatsapp\nlocale: en_US\nkind: text\nbody: \"Thanks for writing, {{ name }}!\"\nvariables:\n  name: {type: string, default: \"\"}\n"

func (r *rig) saveTemplate(t *testing.T, text, file string) {
	t.Helper()
	tpl, err := templates.ParseFile([]byte(text), file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.tpls.Save(context.Background(), tpl, []byte(text)); err != nil {
		t.Fatal(err)
	}
}

// A free-form message outside the window goes out as the campaign's fallback template,
// whether Herald's window record or the provider (131047) says the window is closed;
// without a fallback it is skipped outside_window, never failed.
func TestFreeFormOutsideTheWindowFallsBackToATemplate(t *testing.T) {
	for _, withFallback := range []bool{true, false} {
		t.Run(fmt.Sprintf("fallback=%v", withFallback), func(t *testing.T) {
			r := newRig(t, 10)
			ctx, ch := r.run(t)
			r.saveTemplate(t, freeFormTemplate, "hello.yaml")
			// Contacts 0-5 wrote within the day by Herald's record; 6-9 never did. Meta
			// knows better about 4 and 5: their windows closed.
			now := time.Now()
			ats := make([]time.Time, 6)
			for i := range ats {
				ats[i] = now.Add(-time.Hour)
			}
			if err := throttle.NewPolicy(r.rdb, r.prefix, nil).RecordInbound(ctx, "s1", r.ids[:6], ats); err != nil {
				t.Fatal(err)
			}
			closed := map[string]bool{}
			for _, id := range r.ids[4:6] {
				closed[CallbackData("1", id)] = true
			}
			ch.fail = func(_ int, m Message) error {
				if closed[m.CallbackData] && m.Rendered.FreeForm {
					return &SendError{Code: 131047, Action: ActionConvertToTemplate, Err: errors.New("(#131047) Re-engagement message")}
				}
				return nil
			}
			cp := Campaign{Template: "hello"}
			if withFallback {
				cp.FallbackTemplate = "promo"
			}
			cp = r.create(t, cp)
			st := r.waitCompleted(t, cp.ID)
			accepted, _ := ch.counts()
			outs := r.outcomes(t, cp.ID)
			if withFallback {
				if st.Sent != 10 || st.Failed != 0 {
					t.Fatalf("sent %d, failed %d; want all 10 (4 as text, 6 as the fallback template)", st.Sent, st.Failed)
				}
				for i, id := range r.ids {
					m := ch.last[CallbackData(cp.ID, id)]
					wantText := i < 4
					if accepted[CallbackData(cp.ID, id)] != 1 || m.Rendered.FreeForm != wantText {
						t.Errorf("contact %d: %d accepted, free-form %v; want 1, %v", i, accepted[CallbackData(cp.ID, id)], m.Rendered.FreeForm, wantText)
					}
					if e := outs[id]; (e.Template == "promo") == wantText {
						t.Errorf("contact %d: sent event names template %q", i, e.Template)
					}
				}
				return
			}
			if st.Sent != 4 || st.Skipped != 6 || st.Failed != 0 {
				t.Fatalf("sent %d, skipped %d, failed %d; want 4, 6 outside the window, 0", st.Sent, st.Skipped, st.Failed)
			}
			for i, id := range r.ids[4:] {
				if e := outs[id]; e.Kind != events.Skipped || e.Reason != throttle.ReasonOutsideWindow {
					t.Errorf("contact %d: %s %q, want skipped outside_window", i+4, e.Kind, e.Reason)
				}
			}
		})
	}
}

// 130497 (the account may not message that country) skips the contact as
// country_restricted and stops the campaign trying that country on that sender.
func TestCountryRestrictionStopsTryingTheCountry(t *testing.T) {
	r := newRig(t, 0)
	var cs []segments.Contact
	for i := range 100 {
		cs = append(cs, segments.Contact{Phone: fmt.Sprintf("+6681%07d", i+1), Tags: []string{"t"}}) // TH
	}
	for i := range 20 {
		cs = append(cs, segments.Contact{Phone: fmt.Sprintf("+4915123%06d", i+1), Tags: []string{"t"}}) // DE
	}
	r.addContacts(t, cs)
	_, ch := r.run(t)
	ch.fail = func(_ int, m Message) error {
		if m.To[:3] == "+66" {
			return &SendError{Code: 130497, Action: ActionSkipCountry, Err: errors.New("(#130497) Business account is restricted from messaging users in this country")}
		}
		return nil
	}
	cp := r.create(t, Campaign{})
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 20 || st.Skipped != 100 || st.Failed != 0 {
		t.Fatalf("sent %d, skipped %d, failed %d; want the 20 DE contacts sent and the 100 TH skipped", st.Sent, st.Skipped, st.Failed)
	}
	_, attempts := ch.counts()
	tried := 0
	for _, id := range r.ids[:100] {
		tried += attempts[CallbackData(cp.ID, id)]
	}
	if tried >= 100 {
		t.Errorf("every TH contact was tried (%d attempts): the restriction did not stop the campaign trying TH", tried)
	}
	outs := r.outcomes(t, cp.ID)
	for _, id := range r.ids[:100] {
		if e := outs[id]; e.Kind != events.Skipped || e.Reason != ReasonCountryRestricted {
			t.Fatalf("TH contact %d: %s %q, want skipped country_restricted", id, e.Kind, e.Reason)
		}
	}
}

// Meta's experiment and blocked-user refusals (130472, 130403) are skipped as
// provider_dropped, never retried and never counted as failures.
func TestDroppedByTheProviderIsSkipped(t *testing.T) {
	r := newRig(t, 10)
	_, ch := r.run(t)
	refuse(ch, "1", r.ids[:3], 130472, ActionDrop)
	cp := r.create(t, Campaign{})
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 7 || st.Skipped != 3 || st.Failed != 0 {
		t.Fatalf("sent %d, skipped %d, failed %d; want 7, 3, 0", st.Sent, st.Skipped, st.Failed)
	}
	_, attempts := ch.counts()
	outs := r.outcomes(t, cp.ID)
	for _, id := range r.ids[:3] {
		if n := attempts[CallbackData(cp.ID, id)]; n != 1 {
			t.Errorf("contact %d tried %d times, want once", id, n)
		}
		if e := outs[id]; e.Reason != ReasonProviderDropped || e.ErrorCode != 130472 {
			t.Errorf("contact %d: %+v, want provider_dropped with code 130472", id, e)
		}
	}
}
