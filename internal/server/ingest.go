package server

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// Batch is what one webhook request says, decoded by its channel into the core's terms.
type Batch struct {
	Reports     []dispatcher.Report
	Inbound     []dispatcher.Inbound
	Preferences []dispatcher.Preference
}

// IngestReports carries out reports that did not come through an HTTP webhook (email
// bounces and complaints received by SMTP). Like a webhook, an error means nothing may
// have been recorded: the sender must deliver them again.
func (s *Server) IngestReports(ctx context.Context, reports []dispatcher.Report) error {
	for _, r := range reports {
		s.m.statuses.WithLabelValues(string(r.Kind)).Inc()
	}
	return s.commit.Submit(Batch{Reports: reports})
}

// lookup finds the contact with an address on a channel (0 when there is none).
func (s *Server) lookup(ctx context.Context, channel, address string) (uint32, error) {
	var id uint32
	var err error
	switch channel {
	case "email":
		id, err = s.cfg.Contacts.LookupEmail(ctx, address)
	case "telegram":
		if s.cfg.Telegram == nil || s.cfg.Telegram.Lookup == nil {
			return 0, nil
		}
		return s.cfg.Telegram.Lookup(ctx, address)
	case "whatsapp", "sms", "":
		id, err = s.cfg.Contacts.LookupPhone(ctx, address)
	default: // a channel's own identity: a LINE user id, a Telegram chat id
		id, err = s.cfg.Contacts.LookupIdentity(ctx, channel, address)
	}
	if errors.Is(err, segments.ErrNotFound) {
		return 0, nil
	}
	return id, err
}

// ingest carries out a decoded batch, whatever its channel: statuses become events, the
// sends they prove were accepted and that are still in doubt are settled, failed ones
// are handed to the Reactor; inbound messages go to herald.inbound, open WhatsApp's
// 24h window and carry STOP/START; the provider's own consent reports go to the ledger.
// Everything is idempotent (providers redeliver and duplicate), and everything is done
// before the caller answers 200, so that an error makes the provider retry.
func (s *Server) ingest(ctx context.Context, b Batch) error {
	var evs, inbound []kafka.Message
	var statuses, fallbackStatuses []dispatcher.Settlement
	var refusals []dispatcher.Refusal
	var changes []throttle.Change
	type window struct {
		sender  string
		contact uint32
		at      time.Time
	}
	var windows []window
	// Failover first: a fallback a failed status asks for is stored before the 200, and
	// a fallback's statuses take its channel as their events' discriminator.
	var observed []dispatcher.Observed
	if s.cfg.Failover != nil && len(b.Reports) > 0 {
		var err error
		if observed, err = s.cfg.Failover.Observe(ctx, b.Reports); err != nil {
			return err
		}
	}
	for ri, r := range b.Reports {
		if r.Kind == events.OptedOut {
			// A complaint (an email marked as spam): the message was delivered; the
			// Reactor records the opt-out and its event.
			refusals = append(refusals, dispatcher.Refusal{Campaign: r.Campaign, Contact: r.Contact, PhoneNumberID: r.SenderRef,
				Channel: r.Channel, Code: r.Code, Action: r.Action, Signal: r.Signal, MessageID: r.MessageID + " (complaint)", At: time.Now()})
			continue
		}
		fallback := observed != nil && observed[ri] == dispatcher.ObservedFallback
		st := dispatcher.Settlement{Key: r.Key, Channel: r.Channel, PhoneNumberID: r.SenderRef, MessageID: r.MessageID, Variant: r.Variant}
		if fallback { // it proves the fallback's send, not the first one
			fallbackStatuses = append(fallbackStatuses, st)
		} else {
			statuses = append(statuses, st)
		}
		if r.Kind == events.Sent {
			continue // the worker's sent event (with its consent proof) is the record
		}
		ev := events.New(r.Kind, r.Campaign, r.Contact, r.Time)
		if fallback {
			ev.ID = events.ID(r.Campaign, r.Contact, r.Kind, r.Channel)
		}
		ev.SenderID, ev.Channel, ev.ProviderMessageID, ev.Variant = r.SenderRef, r.Channel, r.MessageID, r.Variant
		if r.Kind == events.Failed && r.Code != 0 {
			ev.ErrorCode, ev.Reason = r.Code, "provider_failed"
		}
		if r.Kind == events.Failed && r.Action != "" {
			// Recorded as of now, when Herald learns it: the send it refused was made under
			// the consent on record then (providers' timestamps have whole seconds).
			refusals = append(refusals, dispatcher.Refusal{Campaign: r.Campaign, Contact: r.Contact, PhoneNumberID: r.SenderRef,
				Channel: r.Channel, Code: r.Code, Action: r.Action, Signal: r.Signal,
				MessageID: r.MessageID + " (failed status of " + r.Time.UTC().Format(time.RFC3339) + ")", At: time.Now()})
		}
		b, _ := ev.Marshal()
		evs = append(evs, kafka.Message{Key: kafkax.ContactKey(r.Contact), Value: b})
	}
	for _, p := range b.Preferences {
		contact, err := s.lookup(ctx, p.Channel, p.From)
		if err != nil {
			return err
		}
		if contact == 0 && p.OptIn && p.Create {
			// Someone unknown opted in on a channel whose identity is all it gives (a LINE
			// follow): they become a contact known by it, with the opt-in as its consent.
			if contact, err = s.cfg.Contacts.CreateWithIdentity(ctx, p.Channel, p.From, segments.Contact{}); err != nil {
				return err
			}
		}
		if contact == 0 {
			continue // not a contact of ours: nothing to record
		}
		// Effective from when Herald learns it (the proof keeps the provider's time):
		// sends made before were made under the consent on record then.
		at := time.Now()
		action, kind := events.Revoke, events.OptedOut
		if p.OptIn {
			action, kind = events.Grant, events.OptedIn
		}
		purpose := p.Purpose
		if purpose == "" {
			purpose = "marketing"
		}
		changes = append(changes, throttle.Change{ContactID: contact, Channel: p.Channel, Purpose: purpose,
			Action: action, Source: "provider", Proof: p.Proof, Time: at})
		ev := events.New(kind, "", contact, at)
		ev.ID = events.ID("", contact, kind, p.ID)
		ev.Channel, ev.SenderID, ev.Reason = p.Channel, p.SenderRef, "provider"
		b, _ := ev.Marshal()
		evs = append(evs, kafka.Message{Key: kafkax.ContactKey(contact), Value: b})
	}
	for _, m := range b.Inbound {
		contact, err := s.lookup(ctx, m.Channel, m.From)
		if err != nil {
			return err
		}
		in := events.Inbound{ID: m.MessageID, ContactID: contact, From: m.From, SenderID: m.SenderRef, Channel: m.Channel,
			Type: m.Type, Text: m.Text, ReplyToProviderID: m.ReplyTo, Time: m.Time.UTC()}
		b, _ := json.Marshal(in)
		inbound = append(inbound, kafka.Message{Key: kafkax.ContactKey(contact), Value: b})
		if contact == 0 {
			continue
		}
		if m.Channel == "whatsapp" {
			windows = append(windows, window{m.SenderRef, contact, m.Time})
		}
		// STOP revokes and START re-grants marketing on that channel, with the message as proof.
		if optOut, optIn := s.Keyword(m.Text); optOut || optIn {
			action, kind := events.Revoke, events.OptedOut
			if optIn {
				action, kind = events.Grant, events.OptedIn
			}
			changes = append(changes, throttle.Change{ContactID: contact, Channel: m.Channel, Purpose: "marketing",
				Action: action, Source: "keyword", Proof: m.Channel + " message " + m.MessageID + ": " + m.Text, Time: m.Time})
			ev := events.New(kind, "", contact, m.Time)
			ev.ID = events.ID("", contact, kind, m.MessageID)
			ev.Channel, ev.SenderID, ev.Reason = m.Channel, m.SenderRef, "keyword"
			b, _ := ev.Marshal()
			evs = append(evs, kafka.Message{Key: kafkax.ContactKey(contact), Value: b})
		}
	}
	if len(changes) > 0 {
		if s.cfg.Ledger == nil {
			return errors.New("consent changes arrived but no consent ledger is configured")
		}
		if _, err := s.cfg.Ledger.Apply(ctx, changes, false); err != nil {
			return err
		}
	}
	bySender := map[string][]window{}
	for _, w := range windows {
		bySender[w.sender] = append(bySender[w.sender], w)
	}
	for sender, ws := range bySender {
		contacts, ats := make([]uint32, len(ws)), make([]time.Time, len(ws))
		for i, w := range ws {
			contacts[i], ats[i] = w.contact, w.at
		}
		if err := s.cfg.Policy.RecordInbound(ctx, sender, contacts, ats); err != nil {
			return err
		}
	}
	// The inbound messages and the events known so far (statuses, consent changes) go to
	// Kafka while the settlement is looked up in Redis: round trips at once, not in turn.
	writes := make(chan error, 2)
	pending := 0
	wait := func() error {
		var errs []error
		for ; pending > 0; pending-- {
			if err := <-writes; err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	defer wait() // no write outlives the call, whatever it returns
	if len(inbound) > 0 {
		pending++
		go func() { writes <- s.cfg.Inbound.WriteMessages(ctx, inbound...) }()
	}
	if len(evs) > 0 {
		pending++
		go func() { writes <- s.cfg.Events.WriteMessages(ctx, evs...) }()
	}
	// Any status proves the provider accepted the message. A send whose worker died before
	// recording it (claimed, never finished) is settled here: its sent event, with the
	// consent its policy check relied on, goes out before the outcome is recorded, so a
	// failed publish leaves it in doubt for the provider's retry of this webhook.
	// Sends already found finished settle nothing: their statuses skip Redis.
	statuses = s.finished.unsettled(statuses)
	keys := make([]dispatcher.Key, len(statuses))
	for i, st := range statuses {
		keys[i] = st.Key
	}
	release, err := s.settling.acquire(ctx, keys)
	if err != nil {
		return err
	}
	defer release()
	settledEvs, settle, err := dispatcher.SettleNoting(ctx, s.cfg.Tracker, s.cfg.Policy, statuses, time.Now(), s.finished.add)
	if err != nil {
		return err
	}
	if len(fallbackStatuses) > 0 {
		fbEvs, fbKeys, err := dispatcher.SettleFallbacks(ctx, s.cfg.Tracker, s.cfg.Policy, fallbackStatuses, time.Now())
		if err != nil {
			return err
		}
		settledEvs, settle = append(settledEvs, fbEvs...), append(settle, fbKeys...)
	}
	// What failed statuses ask for beyond the record (opt-outs, undeliverable numbers,
	// marketing holds…), carried out before the 200 so that a retry redoes it.
	if len(refusals) > 0 {
		if s.cfg.Reactor == nil {
			return errors.New("failed statuses arrived but no reactor is configured")
		}
		if err := s.cfg.Reactor.React(ctx, refusals); err != nil {
			return err
		}
	}
	if err := wait(); err != nil {
		return err
	}
	if len(settledEvs) > 0 {
		if err := s.cfg.Events.WriteMessages(ctx, settledEvs...); err != nil {
			return err
		}
	}
	outcomes := make([]string, len(settle))
	for i := range outcomes {
		outcomes[i] = dispatcher.OutcomeSent
	}
	if _, err := s.cfg.Tracker.Finish(ctx, settle, outcomes); err != nil {
		return err
	}
	for _, k := range settle {
		s.finished.add(k)
	}
	return nil
}
