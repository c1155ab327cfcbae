package dispatcher

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/throttle"
)

// The worker's failover stages (failover.go): choose picks each contact's channel on
// campaigns with a channel policy and fires fallback requests; recordBreaker feeds the
// circuit breakers; requestFallbacks stores the fallbacks first sends ask for.

// choice is a usable channel of a contact: the policy's entry and the sender it would
// send from.
type choice struct {
	cs     ChannelSenders
	sender string
}

// choose picks the channel of each job of a campaign with a channel policy: for a first
// send the first usable channel of the policy, for a fallback request (once its
// compare-and-set fired) the first usable channel after the one it leaves. A channel is
// usable for a contact with an address on it, consent for the campaign's purpose and no
// suppression; when the campaign falls back on circuit_open, a channel whose sender's
// breaker is open is passed over (a first send then asks for the fallback instead of
// sending). A contact with no usable channel is skipped with the last channel's reason.
func (w *Worker) choose(ctx context.Context, items []*item) error {
	var todo []*item
	for _, it := range items {
		// A cancelled campaign's jobs are skipped by render, with nothing fired.
		if active(it) && !it.chosen && !it.cancelled && (it.job.Stage > 0 || it.cp.HasFailover() && w.cfg.Failover != nil) {
			todo = append(todo, it)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := w.fire(ctx, todo); err != nil {
		return err
	}
	live := todo[:0:0]
	for _, it := range todo {
		if active(it) {
			live = append(live, it)
		}
	}
	if len(live) == 0 {
		return nil
	}
	ids := make([]uint32, len(live))
	for i, it := range live {
		ids[i] = it.job.Contact
	}
	profiles, err := w.cfg.Contacts.ProfileFields(ctx, ids)
	if err != nil {
		return err
	}
	// Consent and suppressions, one read per (channel, purpose) and per channel.
	type ck struct{ channel, purpose string }
	need := map[ck][]uint32{}
	cands := make([][]ChannelSenders, len(live))
	for i, it := range live {
		if it.job.Stage > 0 {
			cands[i] = it.cp.after(it.fired.From)
		} else {
			cands[i] = it.cp.ChannelPolicy()
		}
		if profiles[i].ID == 0 {
			continue
		}
		for _, cs := range cands[i] {
			if Address(cs.Channel, profiles[i]) != "" {
				k := ck{cs.Channel, it.cp.Purpose}
				need[k] = append(need[k], it.job.Contact)
			}
		}
	}
	consent := map[ck]map[uint32]throttle.State{}
	suppressed := map[string]map[uint32]string{}
	now := time.Now()
	for k, cs := range need {
		st, err := w.cfg.Policy.Consent(ctx, k.channel, k.purpose, cs)
		if err != nil {
			return err
		}
		m := map[uint32]throttle.State{}
		for i, s := range st {
			m[cs[i]] = s
		}
		consent[k] = m
		if suppressed[k.channel] == nil {
			sp, err := w.cfg.Policy.Suppressions(ctx, k.channel, cs)
			if err != nil {
				return err
			}
			sm := map[uint32]string{}
			for i, s := range sp {
				if s.Active(now) {
					sm[cs[i]] = s.Reason
				}
			}
			suppressed[k.channel] = sm
		}
	}
	// Each job's usable channels, in order.
	usable := make([][]choice, len(live))
	for i, it := range live {
		c := profiles[i]
		reason := ReasonNoChannel
		if c.ID == 0 {
			reason = "contact_erased"
		}
		for n, cs := range cands[i] {
			if c.ID == 0 {
				break
			}
			if w.channel(cs.Channel) == nil || len(cs.Senders) == 0 {
				reason = "channel_unconfigured"
				continue
			}
			if Address(cs.Channel, c) == "" {
				reason = NoAddressReason(cs.Channel)
				continue
			}
			if st := consent[ck{cs.Channel, it.cp.Purpose}][c.ID]; !st.Granted {
				reason = throttle.ReasonNoConsent
				if st.RecordID != "" {
					reason = throttle.ReasonOptedOut
				}
				continue
			}
			if r := suppressed[cs.Channel][c.ID]; r != "" {
				reason = r
				continue
			}
			sender := pickSender(cs.Senders, it.job.Contact)
			if it.job.Stage == 0 && n == 0 && slices.Contains(cs.Senders, it.job.Sender) {
				sender = it.job.Sender // the first channel's sender, as the fan-out routed it
			}
			usable[i] = append(usable[i], choice{cs, sender})
		}
		if len(usable[i]) == 0 {
			it.outcome, it.reason, it.chosen = OutcomeSkipped, reason, true
		}
	}
	pick, err := w.passOpenBreakers(ctx, live, usable)
	if err != nil {
		return err
	}
	var evs []kafka.Message
	for i, it := range live {
		if it.chosen {
			continue
		}
		if pick[i] == -2 {
			// No usable channel is up: wait, holding nothing, until the breakers probe.
			it.deferUntil, it.deferReason, it.chosen = now.Add(w.cfg.Breaker.cfg.OpenFor), FallbackCircuitOpen, true
			continue
		}
		if pick[i] < 0 {
			// A first send whose channel's breaker is open: the next channel instead.
			if err := w.useChannel(ctx, it, usable[i][0]); err != nil {
				return err
			}
			it.outcome, it.chosen = OutcomeFallback, true
			continue
		}
		if err := w.useChannel(ctx, it, usable[i][pick[i]]); err != nil {
			return err
		}
		it.chosen = true
		if it.job.Stage > 0 && it.outcome == "" {
			ev := fallbackEvent(it.job.Campaign, it.job.Contact, it.fired, it.cp.Channel, it.job.Sender, now)
			b, _ := ev.Marshal()
			evs = append(evs, kafka.Message{Key: kafkax.ContactKey(it.job.Contact), Value: b})
		}
	}
	if len(evs) > 0 {
		// Before the fallback's send: one per fired fallback, whatever redelivers it.
		if err := w.cfg.Events.WriteMessages(ctx, evs...); err != nil {
			for _, it := range live {
				if it.job.Stage > 0 {
					it.chosen = false // chosen again on the stage's retry
				}
			}
			return err
		}
	}
	return nil
}

// fire runs the compare-and-set of the fallback requests among todo; a request that may
// not fire gives its claim back and is dropped.
func (w *Worker) fire(ctx context.Context, todo []*item) error {
	var reqs []*item
	var jobs []Job
	for _, it := range todo {
		if it.job.Stage == 0 || it.fireDone {
			continue
		}
		if w.cfg.Failover == nil || !it.cp.HasFailover() {
			it.outcome, it.reason, it.chosen, it.fireDone = OutcomeSkipped, ReasonNoChannel, true, true
			continue
		}
		reqs, jobs = append(reqs, it), append(jobs, it.job)
	}
	if len(reqs) > 0 {
		fired, ok, err := w.cfg.Failover.Fire(ctx, jobs)
		if err != nil {
			return err
		}
		for i, it := range reqs {
			it.fireDone, it.fired, it.refused = true, fired[i], !ok[i]
		}
	}
	var release []Key
	var refused []*item
	for _, it := range todo {
		if it.refused && it.claimed && !it.drop {
			release, refused = append(release, it.key()), append(refused, it)
		}
	}
	if err := w.cfg.Tracker.Release(ctx, release); err != nil {
		return err
	}
	for _, it := range refused {
		it.claimed, it.drop = false, true
		w.m.jobs.WithLabelValues("fallback_not_fired").Inc()
	}
	return nil
}

// passOpenBreakers picks, per job, the index of its usable channel to send on: the first
// whose sender's breaker lets it through, for campaigns that fall back on circuit_open (the
// first otherwise). A first send whose first usable channel is open and that has another
// gets -1: it asks for the fallback; a job all of whose usable channels are open gets -2:
// it waits for the breakers' next probe round. One round trip per (channel, sender) and
// level.
func (w *Worker) passOpenBreakers(ctx context.Context, live []*item, usable [][]choice) ([]int, error) {
	pick := make([]int, len(live))
	if w.cfg.Breaker == nil {
		return pick, nil
	}
	type bk struct{ channel, sender string }
	level := make([]int, len(live))
	pending := map[int]bool{}
	for i, it := range live {
		if !it.chosen && it.cp.FallsBackOn(FallbackCircuitOpen) {
			pending[i] = true
		}
	}
	for len(pending) > 0 {
		groups := map[bk][]int{}
		var order []bk
		for i := range live {
			if !pending[i] {
				continue
			}
			c := usable[i][level[i]]
			k := bk{c.cs.Channel, c.sender}
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], i)
		}
		for _, k := range order {
			idx := groups[k]
			n, err := w.cfg.Breaker.Allow(ctx, k.channel, k.sender, len(idx))
			if err != nil {
				return nil, err
			}
			for j, i := range idx {
				switch {
				case j < n:
					pick[i] = level[i]
					delete(pending, i)
				case live[i].job.Stage == 0 && len(usable[i]) > 1:
					pick[i] = -1
					delete(pending, i)
				case level[i]+1 < len(usable[i]):
					level[i]++
				default:
					pick[i] = -2 // every usable channel is open: wait for a probe round
					delete(pending, i)
				}
			}
		}
	}
	return pick, nil
}

// useChannel makes the job send on c: its channel, senders, template and sender.
func (w *Worker) useChannel(ctx context.Context, it *item, c choice) error {
	if c.cs.Channel == it.cp.Channel && c.sender == it.job.Sender && it.sender.ID != "" {
		return nil
	}
	s, err := w.cfg.Senders.Cached(ctx, c.sender)
	if errors.Is(err, ErrNotFound) {
		it.outcome, it.reason = OutcomeFailed, "unknown_sender"
		return nil
	}
	if err != nil {
		return err
	}
	if c.cs.Channel != it.cp.Channel {
		it.cp.FallbackTemplate = "" // the 24h window's template is WhatsApp's
	}
	it.cp.Channel, it.cp.Senders = c.cs.Channel, c.cs.Senders
	if c.cs.Template != "" {
		it.cp.Template = c.cs.Template
	}
	it.sender, it.job.Sender = s, s.ID
	return nil
}

// recordBreaker counts the outcomes of this batch's provider requests in the breakers of
// their (channel, sender).
func (w *Worker) recordBreaker(ctx context.Context, items []*item) error {
	if w.cfg.Breaker == nil {
		return nil
	}
	type bk struct{ channel, sender string }
	counts := map[bk]*[2]int{}
	var seen []*item
	for _, it := range items {
		if it.breakerSeen || it.startedAt.IsZero() || it.providerID == pending {
			continue
		}
		var bad bool
		switch {
		case it.providerID != "":
		case it.action != "":
			bad = breakerError(&SendError{Action: it.action, Signal: it.signal})
		default:
			continue // not sent (a lost claim, a mark that failed)
		}
		k := bk{it.cp.Channel, it.sender.ID}
		if counts[k] == nil {
			counts[k] = &[2]int{}
		}
		if bad {
			counts[k][1]++
		} else {
			counts[k][0]++
		}
		seen = append(seen, it)
	}
	for k, c := range counts {
		if _, err := w.cfg.Breaker.Record(ctx, k.channel, k.sender, c[0], c[1]); err != nil {
			return err
		}
	}
	for _, it := range seen {
		it.breakerSeen = true
	}
	return nil
}

// requestFallbacks stores the fallbacks first sends ask for, before their outcome is
// recorded: at once for a permanent failure or an open breaker, NotDeliveredWithin after
// the send for a sent message (the durable timer). Stage-1 sends ask for nothing.
func (w *Worker) requestFallbacks(ctx context.Context, items []*item) error {
	if w.cfg.Failover == nil {
		return nil
	}
	var jobs []Job
	var todo []*item
	for _, it := range items {
		if it.requested || it.job.Stage > 0 || it.drop || !it.cp.HasFailover() || len(it.cp.after(it.cp.Channel)) == 0 {
			continue
		}
		j := Job{Campaign: it.job.Campaign, Contact: it.job.Contact, Sender: it.job.Sender, Stage: 1, From: it.cp.Channel}
		switch {
		case it.outcome == OutcomeFallback:
			j.Reason = FallbackCircuitOpen
		case it.outcome == OutcomeFailed && permanentForContact(it.action) && it.cp.FallsBackOn(FallbackPermanentFailure):
			j.Reason, j.Code = FallbackPermanentFailure, it.code
		case it.outcome == OutcomeSent && it.cp.FallsBackOn(FallbackNotDelivered):
			j.Reason, j.NotBefore = FallbackNotDelivered, it.startedAt.Add(it.cp.NotDeliveredWithin())
		default:
			continue
		}
		jobs, todo = append(jobs, j), append(todo, it)
	}
	if err := w.cfg.Failover.Request(ctx, jobs); err != nil {
		return err
	}
	for _, it := range todo {
		it.requested = true
	}
	return nil
}
