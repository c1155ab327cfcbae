package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/journeys"
)

const offerJourney = `id: offer-once
senders: ["106540352242922"]
entry: {event: custom, name: promo}
reentry: once
exit_on: [replied]
steps:
  - id: offer
    send: {template: follow_up}
  - id: rest
    wait: 1d
`

// An exit takes effect at once even for a send already queued: the journey queues Bob's
// offer while the sender's rate (one message per 10 s, Ann's just went) holds it in the
// delayed set; Bob replies meanwhile and leaves the journey; when his job comes back the
// worker skips it (journey_exited) instead of sending.
func TestJourneyExitDropsQueuedSend(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{Throughput: 1000, DelayScale: 0.02, Seed: 11,
		Templates: []sandbox.ApprovedTemplate{{Name: "follow_up", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}})
	d := s.Deps
	comp := journeyRig(ctx, t, d, "phone,name,opted_in\n+66810000031,Ann,yes\n+66810000032,Bob,yes\n", 0.1)
	const pnid = journeySender
	if _, err := AddJourney(ctx, d, []byte(offerJourney)); err != nil {
		t.Fatal(err)
	}
	eng, err := JourneyEngine(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	ann, _ := comp.Contacts.Lookup(ctx, "+66810000031")
	bob, _ := comp.Contacts.Lookup(ctx, "+66810000032")
	enter := func(phone string, c uint32) {
		// Posted until the engine (reloading journeys every second) has taken the contact in.
		poll(t, 30*time.Second, func() bool {
			if _, ok, _ := eng.Get(ctx, "offer-once", c); ok {
				return true
			}
			if _, err := SendEvent(ctx, d, CustomEvent{Name: "promo", Phone: phone}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				if _, ok, _ := eng.Get(ctx, "offer-once", c); ok {
					return true
				}
				time.Sleep(20 * time.Millisecond)
			}
			return false
		})
	}
	enter("+66810000031", ann)
	poll(t, 30*time.Second, func() bool { return len(s.Sandbox.Records()) == 1 })
	enter("+66810000032", bob)
	// Bob's job is in the delayed set, waiting for the sender's next slot.
	poll(t, 30*time.Second, func() bool { st, _ := comp.Delayed.Stats(ctx); return st.Jobs == 1 })
	b, _ := json.Marshal(events.Inbound{ID: "wamid.bob1", ContactID: bob, From: "+66810000032", SenderID: pnid, Channel: "whatsapp", Type: "text", Text: "not now", Time: time.Now()})
	if err := d.Writer(d.Topics.Inbound).WriteMessages(ctx, kafka.Message{Key: kafkax.ContactKey(bob), Value: b}); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, func() bool { _, ok, _ := eng.Get(ctx, "offer-once", bob); return !ok })
	if st, _ := comp.Delayed.Stats(ctx); st.Jobs != 1 {
		t.Fatalf("Bob's job left the delayed set before his exit was recorded: %+v (the sender's rate was meant to hold it)", st)
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cid := journeys.CampaignID("offer-once", 1, "offer", 1)
	var skipped uint64
	// Either the worker skips Bob's job (the check under test) or it sends it: stop at
	// whichever comes first.
	poll(t, 60*time.Second, func() bool {
		if len(s.Sandbox.Records()) > 1 {
			return true
		}
		err := conn.QueryRow(ctx, "SELECT uniqExact(event_id) FROM events WHERE campaign_id = ? AND contact_id = ? AND kind = 'skipped' AND reason = ?",
			cid, bob, dispatcher.ReasonJourneyExited).Scan(&skipped)
		return err == nil && skipped == 1
	})
	if recs := s.Sandbox.Records(); len(recs) > 1 {
		t.Fatalf("Bob's offer, queued before he exited the journey, was sent after it: %+v", recs[1:])
	}
	if err := s.Sandbox.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	recs := s.Sandbox.Records()
	if len(recs) != 1 || recs[0].To != "+66810000031" {
		t.Fatalf("sandbox records %+v: want Ann's offer only", recs)
	}
	var sentBob uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE campaign_id = ? AND contact_id = ? AND kind = 'sent'", cid, bob).Scan(&sentBob); err != nil || sentBob != 0 {
		t.Fatalf("sent events for Bob: %d %v", sentBob, err)
	}
}

const vipCareJourney = `id: vip-care
senders: ["106540352242922"]
entry: {segment: "vip and not churned"}
exit_on: [left_segment]
steps:
  - id: settle
    wait: 30d
  - id: hello
    send: {template: follow_up}
`

// Segment entries and the left_segment exit are driven by tag events, not by polling
// the segment (the reconcile runs every 5 minutes): tagging a contact through the tags
// use case (the API's and the CLI's) enters it into a "vip and not churned" journey,
// and adding churned takes it out, both within about a second.
func TestJourneySegmentMovesOnTagEvents(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{Throughput: 1000, DelayScale: 0.02, Seed: 12,
		Templates: []sandbox.ApprovedTemplate{{Name: "follow_up", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}})
	d := s.Deps
	comp := journeyRig(ctx, t, d, "phone,name,opted_in\n+66810000041,Dee,yes\n", 100)
	if _, err := AddJourney(ctx, d, []byte(vipCareJourney)); err != nil {
		t.Fatal(err)
	}
	eng, err := JourneyEngine(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	dee, _ := comp.Contacts.Lookup(ctx, "+66810000041")
	rdb, err := d.Redis()
	if err != nil {
		t.Fatal(err)
	}
	// The running engine's first look at the segment (it takes those who join after it).
	poll(t, 30*time.Second, func() bool { return rdb.Exists(ctx, d.Cfg.Prefix+"{jrn:vip-care}:seg").Val() == 1 })
	in := func() bool { _, ok, _ := eng.Get(ctx, "vip-care", dee); return ok }
	tag := func(name string, add bool) time.Time {
		if _, err := TagContacts(ctx, comp, name, add, TagTarget{ContactIDs: []uint64{uint64(dee)}}, nil); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	start := tag("vip", true)
	poll(t, 10*time.Second, in)
	t.Logf("entered %v after the tag", time.Since(start))
	start = tag("churned", true)
	poll(t, 10*time.Second, func() bool { return !in() })
	took := time.Since(start)
	t.Logf("left (left_segment) %v after the tag", took)
	if took > 5*time.Second {
		t.Errorf("left_segment took %v: tag events should move it at once", took)
	}
	if n := rdb.ZCard(ctx, d.Cfg.Prefix+"{jrn:vip-care}:timers").Val(); n != 0 {
		t.Fatalf("%d timers left", n)
	}
}
