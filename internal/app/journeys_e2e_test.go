package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/journeys"
	"github.com/herald-dev/herald/templates"
)

const followUpTemplate = `name: follow_up
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: follow_up
  language: en_US
  category: MARKETING
  body:
    first_name: "{{ name | default: 'friend' }}"
variables:
  name: {type: string, default: ""}
`

// The "read but no reply within 30 minutes" recipe, driven by events on Kafka against
// the WhatsApp sandbox on an injected clock: of three contacts who read a message, the
// one who replies gets nothing, the two who stay silent get one follow-up each, only
// once the clock passes 30 minutes, and exactly one however often their read is
// redelivered. A reply while waiting leaves the journey within a second.
func TestJourneyRecipeReadNoReply(t *testing.T) {
	var clk atomic.Int64
	clk.Store(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clk.Load()).UTC() }
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1000, DelayScale: 0.02, Seed: 3,
		Templates: []sandbox.ApprovedTemplate{{Name: "follow_up", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}},
	}, func(c *Config, _ *Stack) { c.JourneyClock = now })
	d := s.Deps
	comp := journeyRig(ctx, t, d, "phone,name,opted_in\n+66810000001,Ann,yes\n+66810000002,Bee,yes\n+66810000003,Cat,yes\n", 100)
	src, err := os.ReadFile("../../journeys/examples/read-no-reply.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddJourney(ctx, d, src); err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{}
	for _, p := range []string{"+66810000001", "+66810000002", "+66810000003"} {
		if ids[p], err = comp.Contacts.Lookup(ctx, p); err != nil || ids[p] == 0 {
			t.Fatalf("lookup %s: %d %v", p, ids[p], err)
		}
	}
	eng, err := JourneyEngine(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	evw, inw := d.Writer(d.Topics.Events), d.Writer(d.Topics.Inbound)
	publish := func(w *kafka.Writer, contact uint32, v any) {
		b, _ := json.Marshal(v)
		if err := w.WriteMessages(ctx, kafka.Message{Key: kafkax.ContactKey(contact), Value: b}); err != nil {
			t.Fatal(err)
		}
	}
	// Reads of campaign 1's message (sent to them earlier); repeated until the engine,
	// which reloads journeys every second, has taken each contact in.
	poll(t, 30*time.Second, func() bool {
		all := true
		for _, c := range ids {
			if _, ok, _ := eng.Get(ctx, "read-no-reply", c); !ok {
				all = false
				ev := events.New(events.Read, "1", c, now())
				publish(evw, c, ev)
			}
		}
		return all
	})
	// Bee replies 10 minutes later: she leaves within a second.
	clk.Add(int64(10 * time.Minute))
	bee := ids["+66810000002"]
	publish(inw, bee, events.Inbound{ID: "wamid.reply1", ContactID: bee, From: "+66810000002", SenderID: "106540352242922", Channel: "whatsapp", Type: "text", Text: "yes please", Time: now()})
	start := time.Now()
	poll(t, 10*time.Second, func() bool { _, ok, _ := eng.Get(ctx, "read-no-reply", bee); return !ok })
	t.Logf("exit on reply took %v", time.Since(start))
	if time.Since(start) > 5*time.Second {
		t.Errorf("exit on reply took %v", time.Since(start))
	}
	// Nothing goes before the 30 minutes are up.
	if n := len(s.Sandbox.Records()); n != 0 {
		t.Fatalf("%d messages before the timeout", n)
	}
	// A redelivered read (same event id) does not enter anyone again.
	publish(evw, ids["+66810000001"], events.New(events.Read, "1", ids["+66810000001"], now()))
	clk.Add(int64(21 * time.Minute))
	poll(t, 60*time.Second, func() bool { return len(s.Sandbox.Records()) >= 2 })
	// Give any duplicate time to show up: the instances leave once their sends queued.
	poll(t, 30*time.Second, func() bool {
		_, a, _ := eng.Get(ctx, "read-no-reply", ids["+66810000001"])
		_, c, _ := eng.Get(ctx, "read-no-reply", ids["+66810000003"])
		return !a && !c
	})
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		got[r.To]++
		if r.TemplateName != "follow_up" || !strings.HasPrefix(r.CallbackData, journeys.CampaignPrefix("read-no-reply")) {
			t.Errorf("record %+v", r)
		}
	}
	if got["+66810000001"] != 1 || got["+66810000003"] != 1 || got["+66810000002"] != 0 || len(got) != 2 {
		t.Fatalf("who got what: %v", got)
	}
	if err := waitSink(wctx, d); err != nil {
		t.Fatal(err)
	}
	var rep JourneyReport
	poll(t, 30*time.Second, func() bool {
		rep, err = ReportJourney(ctx, d, "read-no-reply")
		return err == nil && rep.Entered == 3 && rep.Exits["replied"] == 1 && rep.Exits["completed"] == 2 && len(rep.Steps) == 3 && rep.Steps[1].Sent == 2
	})
	if rep.Steps[0].Reached != 3 || rep.Steps[1].Reached != 2 || rep.AvgSecondsIn <= 0 {
		t.Fatalf("report %+v", rep)
	}
	t.Logf("report %s", fmt.Sprint(rep))
}

// poll waits for cond, failing the test after limit.
func poll(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The "first inquiry gets a welcome" recipe end to end: contacts write to the business
// number at the sandbox, whose signed webhooks reach serve, herald.inbound, the journey
// engine, the worker and the sandbox again. Each first inquiry gets one welcome, a second
// message nothing more, and the contact is tagged inquired.
func TestJourneyRecipeFirstInquiry(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{Throughput: 1000, DelayScale: 0.02, Seed: 5,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_inquiry", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	csv := bytes.NewBufferString("phone,name,opted_in\n+66810000011,Eve,yes\n+66810000012,Fay,yes\n+66810000013,Gus,yes\n")
	if _, err := ImportContacts(ctx, d, csv, ImportOptions{Source: "inquiry.csv"}); err != nil {
		t.Fatal(err)
	}
	src := strings.NewReplacer("name: follow_up\n", "name: welcome_inquiry\n", "  name: follow_up\n", "  name: welcome_inquiry\n").Replace(followUpTemplate)
	tpl, err := templates.ParseFile([]byte(src), "welcome_inquiry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(src)); err != nil {
		t.Fatal(err)
	}
	const pnid = "106540352242922"
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: pnid, Channel: "whatsapp", PhoneNumberID: pnid, Token: DevSandboxToken, Rate: 100}); err != nil {
		t.Fatal(err)
	}
	def, err := os.ReadFile("../../journeys/examples/first-inquiry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddJourney(ctx, d, def); err != nil {
		t.Fatal(err)
	}
	eng, err := JourneyEngine(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	eve, _ := comp.Contacts.Lookup(ctx, "+66810000011")
	fay, _ := comp.Contacts.Lookup(ctx, "+66810000012")
	// The engine reloads journeys every second: Eve writes until she is taken in (a
	// message before that only opens her window).
	poll(t, 30*time.Second, func() bool {
		if err := s.Sandbox.Inbound(ctx, pnid, "+66810000011", "Hi, do you deliver to Phuket?"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if _, ok, _ := eng.Get(ctx, "first-inquiry", eve); ok || len(s.Sandbox.Records()) > 0 {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
	if err := s.Sandbox.Inbound(ctx, pnid, "+66810000012", "hello"); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, func() bool { return len(s.Sandbox.Records()) >= 2 })
	if err := s.Sandbox.Inbound(ctx, pnid, "+66810000012", "are you there?"); err != nil {
		t.Fatal(err)
	}
	tagged := func() bool {
		bm, err := comp.Contacts.Evaluate(ctx, "inquired")
		return err == nil && bm.Contains(eve) && bm.Contains(fay) && bm.GetCardinality() == 2
	}
	poll(t, 30*time.Second, tagged)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		got[r.To]++
		if r.TemplateName != "welcome_inquiry" {
			t.Errorf("record %+v", r)
		}
	}
	if got["+66810000011"] != 1 || got["+66810000012"] != 1 || len(got) != 2 {
		t.Fatalf("who got what: %v", got)
	}
}

// The after-order recipe end to end on an injected clock: orders delivered (custom
// events, as POST /v1/events sends them) get the care message a day later and the review
// invitation (the VIP one for gold customers) a week later; the same order posted twice
// enters once.
func TestJourneyRecipeAfterOrder(t *testing.T) {
	var clk atomic.Int64
	clk.Store(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clk.Load()).UTC() }
	var approved []sandbox.ApprovedTemplate
	for _, n := range []string{"after_sales_care", "review_invite", "review_invite_vip"} {
		approved = append(approved, sandbox.ApprovedTemplate{Name: n, Language: "en_US", Category: "UTILITY", BodyParams: []string{"first_name"}})
	}
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1000, DelayScale: 0.02, Seed: 9, Templates: approved},
		func(c *Config, _ *Stack) { c.JourneyClock = now })
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	csv := bytes.NewBufferString("phone,name,opted_in\n+66810000021,Hal,yes\n+66810000022,Ida,yes\n")
	if _, err := ImportContacts(ctx, d, csv, ImportOptions{Source: "orders.csv", Purpose: "utility"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"after_sales_care", "review_invite", "review_invite_vip"} {
		src := strings.NewReplacer("name: follow_up\n", "name: "+n+"\n", "  name: follow_up\n", "  name: "+n+"\n", "MARKETING", "UTILITY").Replace(followUpTemplate)
		tpl, err := templates.ParseFile([]byte(src), n+".yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := comp.Templates.Save(ctx, tpl, []byte(src)); err != nil {
			t.Fatal(err)
		}
	}
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: DevSandboxToken, Rate: 100}); err != nil {
		t.Fatal(err)
	}
	def, err := os.ReadFile("../../journeys/examples/after-order.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddJourney(ctx, d, def); err != nil {
		t.Fatal(err)
	}
	eng, err := JourneyEngine(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	hal, _ := comp.Contacts.Lookup(ctx, "+66810000021")
	ida, _ := comp.Contacts.Lookup(ctx, "+66810000022")
	deliver := func(phone, order, tier string) {
		if _, err := SendEvent(ctx, d, CustomEvent{ID: "delivered-" + order, Name: "order_delivered", Phone: phone,
			Properties: map[string]string{"order_id": order, "tier": tier}, Time: now()}); err != nil {
			t.Fatal(err)
		}
	}
	// Posted until the engine (reloading journeys every second) has taken each in.
	poll(t, 30*time.Second, func() bool {
		_, a, _ := eng.Get(ctx, "after-order", hal)
		_, b, _ := eng.Get(ctx, "after-order", ida)
		if !a {
			deliver("+66810000021", "A-1", "gold")
		}
		if !b {
			deliver("+66810000022", "B-1", "silver")
		}
		return a && b
	})
	deliver("+66810000022", "B-1", "silver") // the same order again
	byTemplate := func() map[string][]string {
		m := map[string][]string{}
		for _, r := range s.Sandbox.Records() {
			m[r.TemplateName] = append(m[r.TemplateName], r.To)
		}
		return m
	}
	// 23 hours on, nothing is due: the engine's timer poll runs (it ticks every 100 ms)
	// and queues nothing.
	clk.Add(int64(23 * time.Hour))
	if st, _ := comp.Delayed.Stats(ctx); st.Jobs != 0 {
		t.Fatalf("delayed jobs before the day was up: %+v", st)
	}
	if n := len(s.Sandbox.Records()); n != 0 {
		t.Fatalf("%d messages before the day was up", n)
	}
	clk.Add(int64(time.Hour))
	poll(t, 30*time.Second, func() bool { return len(byTemplate()["after_sales_care"]) == 2 })
	clk.Add(int64(6 * 24 * time.Hour))
	poll(t, 30*time.Second, func() bool { m := byTemplate(); return len(m["review_invite"])+len(m["review_invite_vip"]) == 2 })
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	m := byTemplate()
	if len(m["after_sales_care"]) != 2 || fmt.Sprint(m["review_invite_vip"]) != "[+66810000021]" || fmt.Sprint(m["review_invite"]) != "[+66810000022]" || len(s.Sandbox.Records()) != 4 {
		t.Fatalf("who got what: %v", m)
	}
}

// journeySender is the WhatsApp sender of the journey tests.
const journeySender = "106540352242922"

// journeyRig imports contacts (CSV rows with a header), saves the follow_up template and
// puts journeySender at rate msg/s: what every journey test starts from.
func journeyRig(ctx context.Context, t *testing.T, d *Deps, csv string, rate float64) *Components {
	t.Helper()
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ImportContacts(ctx, d, bytes.NewBufferString(csv), ImportOptions{Source: "journey.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(followUpTemplate), "follow_up.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(followUpTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: journeySender, Channel: "whatsapp", PhoneNumberID: journeySender, Token: DevSandboxToken, Rate: rate}); err != nil {
		t.Fatal(err)
	}
	return comp
}
