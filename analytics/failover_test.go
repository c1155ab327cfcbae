package analytics

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// quantileExact is ClickHouse's quantileExact of level q over xs: the element at
// floor(q·n) of the sorted values.
func quantileExact(xs []uint64, q float64) uint64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

func reachTimeOf(waits []uint64) ReachTime {
	if len(waits) == 0 {
		return ReachTime{}
	}
	return ReachTime{Contacts: uint64(len(waits)), P50MS: quantileExact(waits, 0.5), P90MS: quantileExact(waits, 0.9), P99MS: quantileExact(waits, 0.99)}
}

// waitsOf is, per contact of evs, the time from its first queued event to its first
// delivered or read event, in ms; and whether that delivery's channel is fallbackCh
// (a contact with a fallback event into it). A provider's coarse delivery stamp (an SMS
// receipt to the minute) counts as no earlier than the contact's first send, nor its
// queueing.
func waitsOf(evs []events.Event) (all, byFallback []uint64) {
	queued, first, sent := map[uint32]time.Time{}, map[uint32]events.Event{}, map[uint32]time.Time{}
	fb := map[uint32]string{}
	for _, e := range evs {
		switch e.Kind {
		case events.Queued:
			if q, ok := queued[e.ContactID]; !ok || e.Time.Before(q) {
				queued[e.ContactID] = e.Time
			}
		case events.Delivered, events.Read:
			if f, ok := first[e.ContactID]; !ok || e.Time.Before(f.Time) {
				first[e.ContactID] = e
			}
		case events.Sent:
			if f, ok := sent[e.ContactID]; !ok || e.Time.Before(f) {
				sent[e.ContactID] = e.Time
			}
		case events.Fallback:
			fb[e.ContactID] = e.Channel
		}
	}
	for _, c := range sortedKeys(first) {
		q, ok := queued[c]
		if !ok {
			continue
		}
		d := first[c].Time
		for _, t := range []time.Time{sent[c], q} {
			if d.Before(t) {
				d = t
			}
		}
		w := uint64(d.Sub(q).Milliseconds())
		all = append(all, w)
		if to, ok := fb[c]; ok && first[c].Channel == to {
			byFallback = append(byFallback, w)
		}
	}
	return all, byFallback
}

// A campaign without fallbacks: one channel whose queued … read are the funnel's, and
// no fallback figure.
func TestChannelsFunnelWithoutFallback(t *testing.T) {
	ctx := context.Background()
	conn := migrated(t)
	evs, funnel := campaignStream("spring", 3)
	insertEvents(t, conn, evs)
	insertEvents(t, conn, evs[:len(evs)/2]) // redelivered
	got, err := ChannelsFunnel(ctx, conn, "spring")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Channels) != 1 || got.Channels[0].Channel != "whatsapp" {
		t.Fatalf("channels %+v, want whatsapp alone", got.Channels)
	}
	wa := got.Channels[0]
	if !reflect.DeepEqual(wa.Steps[:4], funnel.Steps) {
		t.Errorf("whatsapp steps\n got %+v\nwant the funnel's %+v", wa.Steps[:4], funnel.Steps)
	}
	var failed uint64
	for _, f := range funnel.Failed {
		failed += f.Contacts
	}
	if wa.Failed != failed || wa.FallbackIn != 0 || wa.FallbackOut != 0 || wa.Steps[4].Contacts != 0 || wa.Steps[5].Contacts != 0 {
		t.Errorf("whatsapp %+v, want %d failed and no fallback, click or reply", wa, failed)
	}
	all, _ := waitsOf(evs)
	want := ChannelsReport{Campaign: "spring", Contacts: 500, Reached: funnel.Steps[2].Contacts,
		Channels: got.Channels, FallbackReasons: []ReasonCount{}, Fallbacks: []FallbackCount{},
		TimeToReach: reachTimeOf(all)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("report\n got %+v\nwant %+v", got, want)
	}
	if got.MultiChannel() {
		t.Error("a single-channel campaign says it used several")
	}

	empty, err := ChannelsFunnel(ctx, conn, "nothing")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(empty, ChannelsReport{Campaign: "nothing", Channels: []ChannelFunnel{}, FallbackReasons: []ReasonCount{}, Fallbacks: []FallbackCount{}}) {
		t.Errorf("campaign without events: %+v", empty)
	}
}

// failoverStream is a campaign from WhatsApp to SMS, for 191 contacts:
//
//	1-100    WhatsApp delivered (1-50 read; 1 clicked, 2 replied)
//	101-140  WhatsApp failed 131026 → permanent_failure → SMS sent; 101-135 delivered
//	         (101 clicked), 136-140 failed
//	141-160  circuit_open before any WhatsApp send → SMS sent, delivered (141-150 read),
//	         the receipt stamped to the minute (before the send)
//	161-180  WhatsApp sent, not delivered within 10 min → SMS sent, delivered 5 s later;
//	         WhatsApp's receipt arrives late for 161-172: after the SMS delivery for
//	         161-170, before it for 171-172
//	181-190  not_delivered_within → SMS sent, never delivered
//	191      sent on both channels without a fallback (a broken invariant), WhatsApp
//	         delivered
//
// Every event of 101-120, and the fallback of 121, are delivered twice (a redelivery).
func failoverStream(campaign string) []events.Event {
	var evs []events.Event
	at := func(c uint32, d time.Duration) time.Time {
		return baseTime.Add(time.Duration(c)*time.Second + d)
	}
	ev := func(kind events.Kind, c uint32, ch string, d time.Duration) events.Event {
		e := events.New(kind, campaign, c, at(c, d))
		if ch == "sms" { // the fallback send's events: the channel discriminates them
			e.ID = events.ID(campaign, c, kind, "sms")
		}
		e.Channel, e.SenderID = ch, map[string]string{"whatsapp": "wa1", "sms": "sms1", "": ""}[ch]
		if kind == events.Sent {
			e.ConsentRef = "consent-" + ch
		}
		return e
	}
	fallback := func(c uint32, reason string, code int, d time.Duration) events.Event {
		e := events.New(events.Fallback, campaign, c, at(c, d))
		e.Channel, e.FromChannel, e.Reason, e.ErrorCode = "sms", "whatsapp", reason, code
		return e
	}
	for c := uint32(1); c <= 191; c++ {
		start := len(evs)
		evs = append(evs, ev(events.Queued, c, "whatsapp", 0))
		switch {
		case c <= 100:
			evs = append(evs, ev(events.Sent, c, "whatsapp", time.Second), ev(events.Delivered, c, "whatsapp", time.Duration(c)*100*time.Millisecond+2*time.Second))
			if c <= 50 {
				evs = append(evs, ev(events.Read, c, "whatsapp", time.Minute))
			}
			if c == 1 {
				evs = append(evs, ev(events.Clicked, c, "", 2*time.Minute))
			}
			if c == 2 {
				evs = append(evs, ev(events.Replied, c, "whatsapp", 3*time.Minute))
			}
		case c <= 140:
			f := ev(events.Failed, c, "whatsapp", 3*time.Second)
			f.ErrorCode = 131026
			evs = append(evs, ev(events.Sent, c, "whatsapp", time.Second), f, fallback(c, FallbackPermanentFailure, 131026, 3*time.Second),
				ev(events.Sent, c, "sms", 4*time.Second))
			if c <= 135 {
				evs = append(evs, ev(events.Delivered, c, "sms", time.Duration(c)*10*time.Millisecond+8*time.Second))
			} else {
				f := ev(events.Failed, c, "sms", 9*time.Second)
				f.ErrorCode = 30003
				evs = append(evs, f)
			}
			if c == 101 {
				evs = append(evs, ev(events.Clicked, c, "", time.Hour))
			}
		case c <= 160:
			// An SMS delivery receipt stamps the minute: before the send, even the queueing.
			d := ev(events.Delivered, c, "sms", 6*time.Second)
			d.Time = d.Time.Truncate(time.Minute)
			evs = append(evs, fallback(c, FallbackCircuitOpen, 0, 500*time.Millisecond), ev(events.Sent, c, "sms", time.Second), d)
			if c <= 150 {
				evs = append(evs, ev(events.Read, c, "sms", time.Minute))
			}
		case c <= 190:
			evs = append(evs, ev(events.Sent, c, "whatsapp", time.Second), fallback(c, FallbackNotDeliveredWithin, 0, 10*time.Minute),
				ev(events.Sent, c, "sms", 10*time.Minute+time.Second))
			if c <= 180 {
				evs = append(evs, ev(events.Delivered, c, "sms", 10*time.Minute+5*time.Second))
			}
			switch {
			case c <= 170:
				evs = append(evs, ev(events.Delivered, c, "whatsapp", 15*time.Minute))
			case c <= 172:
				evs = append(evs, ev(events.Delivered, c, "whatsapp", 10*time.Minute+2*time.Second))
			}
		default:
			evs = append(evs, ev(events.Sent, c, "whatsapp", time.Second), ev(events.Sent, c, "sms", 2*time.Second),
				ev(events.Delivered, c, "whatsapp", 3*time.Second))
		}
		if c >= 101 && c <= 120 {
			evs = append(evs, evs[start:]...)
		}
		if c == 121 {
			evs = append(evs, fallback(c, FallbackPermanentFailure, 131026, 3*time.Second))
		}
	}
	return evs
}

func steps6(c ...uint64) []FunnelStep { return stepsOf(channelSteps, c) }

// A WhatsApp → SMS campaign, through the real sink path (Kafka, the sink, ClickHouse):
// fallbacks after a failure, on an open circuit and after the not-delivered-within
// timer, late WhatsApp receipts after the fallback (counted on WhatsApp, reached once),
// redelivered events (counted once), and a double send without fallback (flagged).
func TestChannelsFunnelFailover(t *testing.T) {
	ctx := context.Background()
	brokers, topics := testenv.Kafka(t, 3)
	conn := migrated(t)
	evs := failoverStream("fo")
	publish(t, brokers, topics.Events, eventMessages(t, evs))
	s := NewSink(SinkConfig{Brokers: brokers, Topics: topics, Conn: conn, Logger: testLogger(t), BatchRows: 101, FlushInterval: 20 * time.Millisecond})
	runSink(t, s)
	waitCaughtUp(t, s)

	got, err := ChannelsFunnel(ctx, conn, "fo")
	if err != nil {
		t.Fatal(err)
	}
	all, byFB := waitsOf(evs)
	want := ChannelsReport{
		Campaign: "fo", Contacts: 191, Reached: 176, FellBack: 90,
		ReachedByFallback: 73, ReachedOnlyByFallback: 63, LateFirstChannel: 12,
		SentTwiceWithoutFallback: 1,
		Channels: []ChannelFunnel{
			{Channel: "whatsapp", Steps: steps6(191, 171, 113, 50, 1, 1), Failed: 40, FallbackOut: 90},
			{Channel: "sms", Steps: steps6(91, 91, 75, 10, 1, 0), Failed: 5, FallbackIn: 90, FallbackSent: 90, FallbackDelivered: 75},
		},
		FallbackReasons: []ReasonCount{{FallbackPermanentFailure, 40}, {FallbackNotDeliveredWithin, 30}, {FallbackCircuitOpen, 20}},
		Fallbacks: []FallbackCount{{FallbackPermanentFailure, "whatsapp", "sms", 40}, {FallbackNotDeliveredWithin, "whatsapp", "sms", 30},
			{FallbackCircuitOpen, "whatsapp", "sms", 20}},
		TimeToReach:           reachTimeOf(all),
		TimeToReachByFallback: reachTimeOf(byFB),
	}
	if len(all) != 176 || len(byFB) != 73 {
		t.Fatalf("the stream has %d reached and %d by fallback: fix the test", len(all), len(byFB))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("report\n got %+v\nwant %+v", got, want)
	}
	if !got.MultiChannel() {
		t.Error("a two-channel campaign says it used one")
	}
	// The whole-campaign funnel still counts each contact once.
	f, err := Funnel(ctx, conn, "fo")
	if err != nil {
		t.Fatal(err)
	}
	if f.Steps[0].Contacts != 191 || f.Steps[2].Contacts != got.Reached {
		t.Errorf("funnel %+v: want 191 queued and %d delivered", f.Steps, got.Reached)
	}
}
