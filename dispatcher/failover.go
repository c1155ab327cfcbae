package dispatcher

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/throttle"
)

// Channel failover. A campaign's channel policy is its Channel (with its Senders and
// Template) followed by its Fallback channels, in order. For each contact the worker's
// choose stage takes as primary the first channel of the policy where the contact has an
// address, consent for the campaign's purpose and no suppression (and, when the campaign
// falls back on circuit_open, whose sender's Breaker is not open); a contact with none is
// skipped with the last channel's reason.
//
// A fallback is requested by a stage-1 Job (Stage 1, From the channel left, Reason the
// trigger), an ordinary job that waits in the delayed set until due:
//   - permanent_failure: the send was refused for this contact for good (undeliverable,
//     opted out on that channel), by the provider's answer (the worker) or by a failed
//     status webhook (Failover.Observe, called by serve);
//   - circuit_open: the primary's breaker is open, so stage 0 sends nothing (outcome
//     OutcomeFallback) and asks for the next channel at once;
//   - not_delivered_within: a durable timer, requested when the primary send succeeds,
//     due NotDeliveredWithin later.
//
// Requests may be duplicated freely (a crash, a redelivered webhook): the stage-1 worker
// fires a fallback with one compare-and-set per (campaign, contact) (fireScript: only
// when none fired yet, or it fired from the same channel; a timer only when no delivery
// or read of the first send was recorded), and its send is claimed, marked and finished
// under its own progress keys (the campaign's id + StageSuffix), so it happens at most
// once. Nothing ever requests a fallback from a stage-1 send: a contact gets at most two
// messages, the second only after a fallback fired. A late delivery of the first send is
// recorded (its event) and triggers nothing.
//
// Events of the fallback's send carry its channel as the event-id discriminator, so
// ClickHouse keeps both sends' events; the fallback event itself (one per fired
// fallback, discriminated by the channel left) names both channels and the reason.

// Fallback triggers (Campaign.FallbackOn, Job.Reason, the fallback event's Reason).
const (
	FallbackPermanentFailure = "permanent_failure"
	FallbackCircuitOpen      = "circuit_open"
	FallbackNotDelivered     = "not_delivered_within"
)

// FallbackTriggers lists the triggers a campaign may fall back on.
var FallbackTriggers = []string{FallbackPermanentFailure, FallbackCircuitOpen, FallbackNotDelivered}

// ReasonNoChannel skips a contact none of whose policy's channels can be used when no
// channel gave a reason of its own.
const ReasonNoChannel = "no_channel"

// OutcomeFallback is the outcome of a first send that left for the next channel without
// sending (its channel's breaker was open): counted under "fallback" in the campaign's
// progress, with no event of its own (the fallback event says it).
const OutcomeFallback = "fallback"

// StageSuffix is appended to a campaign's id to name the progress keys (claims, outcomes,
// counters) of its fallback sends.
const StageSuffix = "/fallback"

// ChannelSenders is one channel of a campaign's policy: the senders that send it and the
// template its messages are rendered from ("": the campaign's Template).
type ChannelSenders struct {
	Channel  string   `json:"channel"`
	Senders  []string `json:"senders"`
	Template string   `json:"template,omitempty"`
}

// ChannelPolicy is the campaign's ordered channels: its own first, then its Fallback.
func (c Campaign) ChannelPolicy() []ChannelSenders {
	ch := c.Channel
	if ch == "" {
		ch = "whatsapp"
	}
	return append([]ChannelSenders{{Channel: ch, Senders: c.Senders, Template: c.Template}}, c.Fallback...)
}

// HasFailover reports whether the campaign has fallback channels.
func (c Campaign) HasFailover() bool { return len(c.Fallback) > 0 }

// FallsBackOn reports whether the campaign falls back on trigger.
func (c Campaign) FallsBackOn(trigger string) bool {
	return c.HasFailover() && slices.Contains(c.FallbackOn, trigger) &&
		(trigger != FallbackNotDelivered || c.NotDeliveredWithinMS > 0)
}

// NotDeliveredWithin is how long a first send may go without a delivery or read report
// before the campaign falls back (0: never).
func (c Campaign) NotDeliveredWithin() time.Duration {
	return time.Duration(c.NotDeliveredWithinMS) * time.Millisecond
}

// after returns the policy's channels after channel (none when channel is not in it).
func (c Campaign) after(channel string) []ChannelSenders {
	p := c.ChannelPolicy()
	for i, cs := range p {
		if cs.Channel == channel {
			return p[i+1:]
		}
	}
	return nil
}

// ValidatePolicy checks the fallback part of a campaign being created (its senders
// through get) and fills in the default triggers.
func (c *Campaign) ValidatePolicy(get func(id string) (Sender, error)) error {
	if !c.HasFailover() {
		if len(c.FallbackOn) > 0 || c.NotDeliveredWithinMS != 0 {
			return fmt.Errorf("campaign: fallback triggers need fallback channels (--channels)")
		}
		return nil
	}
	seen := map[string]bool{c.Channel: true}
	for i, cs := range c.Fallback {
		if cs.Channel == "" {
			return fmt.Errorf("campaign: fallback channel %d has no name", i+1)
		}
		if seen[cs.Channel] {
			return fmt.Errorf("campaign: channel %s appears twice in the channel policy", cs.Channel)
		}
		seen[cs.Channel] = true
		if len(cs.Senders) == 0 {
			return fmt.Errorf("campaign: fallback channel %s has no sender (--sender-for %s=ID)", cs.Channel, cs.Channel)
		}
		for _, id := range cs.Senders {
			s, err := get(id)
			if err != nil {
				return fmt.Errorf("campaign: sender %q: %w (add it with `herald senders add`)", id, err)
			}
			if s.Channel != cs.Channel {
				return fmt.Errorf("campaign: sender %q sends %s, not %s", id, s.Channel, cs.Channel)
			}
		}
	}
	if len(c.FallbackOn) == 0 {
		c.FallbackOn = []string{FallbackPermanentFailure, FallbackCircuitOpen}
		if c.NotDeliveredWithinMS > 0 {
			c.FallbackOn = append(c.FallbackOn, FallbackNotDelivered)
		}
	}
	for _, t := range c.FallbackOn {
		if !slices.Contains(FallbackTriggers, t) {
			return fmt.Errorf("campaign: fallback trigger %q: want %s", t, strings.Join(FallbackTriggers, ", "))
		}
	}
	if c.NotDeliveredWithinMS < 0 {
		return fmt.Errorf("campaign: not_delivered_within must not be negative")
	}
	if slices.Contains(c.FallbackOn, FallbackNotDelivered) && c.NotDeliveredWithinMS == 0 {
		return fmt.Errorf("campaign: fallback on not_delivered_within needs its duration (--not-delivered-within 10m)")
	}
	return nil
}

// pickSender chooses a contact's sender among a channel's senders (stable per contact).
func pickSender(senders []string, contact uint32) string {
	if len(senders) == 1 {
		return senders[0]
	}
	h := fnv.New32a()
	h.Write(strconv.AppendUint(nil, uint64(contact), 10))
	return senders[h.Sum32()%uint32(len(senders))]
}

// permanentForContact reports whether a refusal's action means the contact cannot be
// reached on this channel (the permanent_failure trigger).
func permanentForContact(action string) bool {
	return action == ActionUndeliverable || action == ActionOptOut
}

// stageKey is the progress key of a job: its campaign's, or its fallback's.
func stageKey(campaign string, contact uint32, stage uint8) Key {
	if stage > 0 {
		return Key{campaign + StageSuffix, contact}
	}
	return Key{campaign, contact}
}

// Failover records what the fallback decisions need in Redis: which (campaign, contact)
// fell back and from which channel, and whose first send was delivered or read.
type Failover struct {
	rdb     redis.UniversalClient
	prefix  string
	delayed *Delayed

	// policy caches whether campaigns have failover, so that Observe skips the statuses
	// of those without it with no round trip. A campaign's policy is set when it is
	// created (in the same transaction), so what was found of a campaign with statuses
	// holds; the expiry only bounds the cache.
	policyMu sync.Mutex
	policy   map[string]knownPolicy
}

type knownPolicy struct {
	on    bool
	until time.Time
}

// policyFor is how long Observe trusts what it found of a campaign's failover.
const policyFor = time.Minute

// NewFailover returns the failover records under prefix; requests go to delayed.
func NewFailover(rdb redis.UniversalClient, prefix string, delayed *Delayed) *Failover {
	return &Failover{rdb: rdb, prefix: prefix, delayed: delayed}
}

func (f *Failover) keys(campaign string) []string {
	base := f.prefix + "{cmp:" + campaign + "}"
	return []string{base, base + ":fallback", base + ":reached"}
}

// Fired is a fallback that fired: the channel it left, its trigger and the provider code.
type Fired struct {
	From   string
	Reason string
	Code   int
}

func (r Fired) encode() string { return r.From + "|" + r.Reason + "|" + strconv.Itoa(r.Code) }

func parseFired(s string) (Fired, bool) {
	f := strings.SplitN(s, "|", 3)
	if len(f) != 3 {
		return Fired{}, false
	}
	code, _ := strconv.Atoi(f[2])
	return Fired{From: f[0], Reason: f[1], Code: code}, true
}

// fireScript: KEYS = campaign, fallback, reached; ARGV = (contact, record) pairs. The
// compare-and-set of each contact from "first send" to "fallback fired from channel":
// answers the record in force when the fallback fired now or had fired from the same
// channel, "" when it may not fire (it fired from another channel, or a timer finds the
// first send delivered).
var fireScript = redis.NewScript(`
local out = {}
for i = 1, #ARGV, 2 do
  local c, rec = ARGV[i], ARGV[i + 1]
  local from = string.match(rec, '^[^|]*')
  local cur = redis.call('HGET', KEYS[2], c)
  local r = ''
  if cur then
    if string.match(cur, '^[^|]*') == from then r = cur end
  elseif string.find(rec, '|not_delivered_within|', 1, true) and redis.call('HEXISTS', KEYS[3], c) == 1 then
    r = ''
  else
    redis.call('HSET', KEYS[2], c, rec)
    r = rec
  end
  out[#out + 1] = r
end
return out
`)

// Fire fires the fallbacks requested by stage-1 jobs (their From, Reason and Code), at
// most once per key: per job, the fallback in force (which may be an earlier request's,
// from the same channel), or ok false when it must not fire.
func (f *Failover) Fire(ctx context.Context, jobs []Job) ([]Fired, []bool, error) {
	fired := make([]Fired, len(jobs))
	ok := make([]bool, len(jobs))
	cps, args := make([]string, len(jobs)), make([][]any, len(jobs))
	for i, j := range jobs {
		cps[i], args[i] = j.Campaign, []any{j.Contact, Fired{From: j.From, Reason: j.Reason, Code: j.Code}.encode()}
	}
	res, err := f.run(ctx, fireScript, cps, args)
	if err != nil {
		return nil, nil, err
	}
	for i, r := range res {
		s, _ := r.(string)
		fired[i], ok[i] = parseFired(s)
	}
	return fired, ok, nil
}

// run calls s once per campaign (pipelined) with the arguments of each entry of that
// campaign, in order, and returns the script's answers in the order of the entries.
func (f *Failover) run(ctx context.Context, s *redis.Script, campaigns []string, args [][]any) ([]any, error) {
	if len(campaigns) == 0 {
		return nil, nil
	}
	var order []string
	by := map[string][]int{}
	for i, cp := range campaigns {
		if _, ok := by[cp]; !ok {
			order = append(order, cp)
		}
		by[cp] = append(by[cp], i)
	}
	argv := func(cp string) []any {
		var a []any
		for _, i := range by[cp] {
			a = append(a, args[i]...)
		}
		return a
	}
	cmds, err := evalEach(ctx, f.rdb, s, len(order), func(n int) []string { return f.keys(order[n]) },
		func(n int) []any { return argv(order[n]) })
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	out := make([]any, len(campaigns))
	for n, cp := range order {
		res, err := cmds[n].Slice()
		if err == nil && len(res) != len(by[cp]) {
			err = fmt.Errorf("script answered %d results for %d contacts", len(res), len(by[cp]))
		}
		if err != nil {
			return nil, fmt.Errorf("failover: %w", err)
		}
		for k, i := range by[cp] {
			out[i] = res[k]
		}
	}
	return out, nil
}

// Request stores stage-1 jobs (fallback requests) in the delayed set, each due at its
// NotBefore.
func (f *Failover) Request(ctx context.Context, jobs []Job) error {
	return f.delayed.Add(ctx, jobs)
}

// observeScript: KEYS = campaign, fallback, reached; ARGV = (contact, channel, kind)
// triples, kind "d" (delivered or read), "f" (failed for good for the contact) or "o".
// Answers per report 1 when it is about a fallback's send (a fallback fired from another
// channel), 2 when it asks for a fallback (the campaign falls back on permanent failures
// and none fired from another channel), else 0; records the first delivery or read of a
// first send. A campaign without failover answers 0s after one HGET.
var observeScript = redis.NewScript(`
local on = redis.call('HGET', KEYS[1], 'failover')
local out = {}
for i = 1, #ARGV, 3 do
  local r = 0
  if on then
    local c, ch, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local cur = redis.call('HGET', KEYS[2], c)
    local from = cur and string.match(cur, '^[^|]*')
    if from and from ~= ch then
      r = 1
    elseif kind == 'd' then
      if not from then redis.call('HSETNX', KEYS[3], c, ch) end
    elseif kind == 'f' and string.find(',' .. on .. ',', ',permanent_failure,', 1, true) then
      r = 2
    end
  end
  out[#out + 1] = r
end
return out
`)

// Observed says what a status report means to failover.
type Observed uint8

// Observe results.
const (
	ObservedNothing  Observed = 0
	ObservedFallback Observed = 1 // about a fallback's send: its events take its channel as discriminator
)

// Observe looks at status reports of campaign sends (serve's webhook ingest): it records
// the first delivery or read of each first send (a not_delivered_within timer then does
// not fire), asks for a fallback for each failed report that refuses the contact for good
// on a campaign that falls back on it, and says which reports are about a fallback's
// send. Call it before answering the provider, so that a failure makes it redeliver;
// everything it does is idempotent. One round trip, two when it requests fallbacks.
func (f *Failover) Observe(ctx context.Context, reps []Report) ([]Observed, error) {
	out := make([]Observed, len(reps))
	off, err := f.withoutFailover(ctx, reps)
	if err != nil {
		return nil, err
	}
	var cps []string
	var args [][]any
	var idx []int
	for i, r := range reps {
		if r.Campaign == "" || r.Contact == 0 || r.Channel == "" || off[r.Campaign] {
			continue
		}
		kind := "o"
		switch {
		case r.Kind == events.Delivered || r.Kind == events.Read:
			kind = "d"
		case r.Kind == events.Failed && permanentForContact(r.Action):
			kind = "f"
		}
		cps, args, idx = append(cps, r.Campaign), append(args, []any{r.Contact, r.Channel, kind}), append(idx, i)
	}
	res, err := f.run(ctx, observeScript, cps, args)
	if err != nil {
		return nil, err
	}
	var requests []Job
	for k, r := range res {
		n, _ := r.(int64)
		rep := reps[idx[k]]
		switch n {
		case 1:
			out[idx[k]] = ObservedFallback
		case 2:
			requests = append(requests, Job{Campaign: rep.Campaign, Contact: rep.Contact, Sender: "fallback:" + rep.Channel,
				Stage: 1, From: rep.Channel, Reason: FallbackPermanentFailure, Code: rep.Code})
		}
	}
	if err := f.Request(ctx, requests); err != nil {
		return nil, err
	}
	return out, nil
}

// withoutFailover says which campaigns of reps have no failover: from the cache, and
// for the others one pipelined HEXISTS each.
func (f *Failover) withoutFailover(ctx context.Context, reps []Report) (map[string]bool, error) {
	now := time.Now()
	off := map[string]bool{}
	var ask []string
	f.policyMu.Lock()
	for _, r := range reps {
		if r.Campaign == "" {
			continue
		}
		if _, seen := off[r.Campaign]; seen {
			continue
		}
		p, ok := f.policy[r.Campaign]
		off[r.Campaign] = ok && now.Before(p.until) && !p.on
		if !ok || !now.Before(p.until) {
			ask = append(ask, r.Campaign)
		}
	}
	f.policyMu.Unlock()
	if len(ask) == 0 {
		return off, nil
	}
	pipe := f.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(ask))
	for i, cp := range ask {
		cmds[i] = pipe.HExists(ctx, f.keys(cp)[0], "failover")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	f.policyMu.Lock()
	defer f.policyMu.Unlock()
	if f.policy == nil || len(f.policy) > 10_000 {
		f.policy = map[string]knownPolicy{}
	}
	for i, cp := range ask {
		on := cmds[i].Val()
		off[cp], f.policy[cp] = !on, knownPolicy{on: on, until: now.Add(policyFor)}
	}
	return off, nil
}

// enable marks a campaign's progress hash as one with failover (the webhook's Observe
// reads it), with its triggers.
func (f *Failover) enable(ctx context.Context, pipe redis.Pipeliner, cp Campaign) {
	if cp.HasFailover() {
		pipe.HSet(ctx, f.keys(cp.ID)[0], "failover", strings.Join(cp.FallbackOn, ","))
	}
}

// fallbackEvent is the record of a fired fallback: one per (campaign, contact), whatever
// redelivery emits it.
func fallbackEvent(campaign string, contact uint32, fired Fired, to, sender string, at time.Time) events.Event {
	ev := events.New(events.Fallback, campaign, contact, at)
	ev.ID = events.ID(campaign, contact, events.Fallback, fired.From)
	ev.Channel, ev.FromChannel, ev.Reason, ev.ErrorCode, ev.SenderID = to, fired.From, fired.Reason, fired.Code, sender
	return ev
}

// FallbackProgress counts the outcomes of a campaign's fallback sends (their own progress
// keys, beside the campaign's: its Status counts first sends only).
type FallbackProgress struct {
	Sent    int64 `json:"sent"`
	Skipped int64 `json:"skipped"`
	Failed  int64 `json:"failed"`
	Done    int64 `json:"done"`
}

// FallbackProgress returns the outcomes of campaign id's fallback sends so far.
func (c *Campaigns) FallbackProgress(ctx context.Context, id string) (FallbackProgress, error) {
	m, err := c.rdb.HGetAll(ctx, c.key(id+StageSuffix)).Result()
	if err != nil {
		return FallbackProgress{}, fmt.Errorf("campaign %s fallbacks: %w", id, err)
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	return FallbackProgress{Sent: num(OutcomeSent), Skipped: num(OutcomeSkipped), Failed: num(OutcomeFailed), Done: num("done")}, nil
}

// SettleFallbacks is Settle for the statuses of fallback sends (Observe said
// ObservedFallback): a fallback's send whose worker died before recording it is settled
// under the fallback's progress keys, and its sent event is the fallback's (its
// channel as discriminator). Publish the events, then Finish the returned keys as sent.
func SettleFallbacks(ctx context.Context, t *Tracker, policy *throttle.Policy, sts []Settlement, now time.Time) ([]kafka.Message, []Key, error) {
	if len(sts) == 0 {
		return nil, nil, nil
	}
	staged := make([]Settlement, len(sts))
	for i, st := range sts {
		staged[i] = st
		staged[i].Key = stageKey(st.Campaign, st.Contact, 1)
	}
	msgs, keys, err := Settle(ctx, t, policy, staged, now)
	if err != nil {
		return nil, nil, err
	}
	for i, m := range msgs {
		ev, err := events.Unmarshal(m.Value)
		if err != nil {
			return nil, nil, err
		}
		ev.CampaignID = strings.TrimSuffix(ev.CampaignID, StageSuffix)
		ev.ID = events.ID(ev.CampaignID, ev.ContactID, ev.Kind, ev.Channel)
		b, _ := ev.Marshal()
		msgs[i].Value = b
	}
	return msgs, keys, nil
}

// sweepStaleFallbacks re-queues the fallback sends of a campaign with a channel policy
// that started before cutoff and never got an outcome (their worker died; no status
// settled them), as Scheduler.sweepStale does for first sends. Only when every fallback
// channel's provider settles sends by status (a send that did leave is settled long
// before the cutoff); for the others they stay in doubt.
func (s *Scheduler) sweepStaleFallbacks(ctx context.Context, cp Campaign, cutoff time.Time) error {
	if !cp.HasFailover() {
		return nil
	}
	for _, cs := range cp.Fallback {
		if !ProviderSettles(cs.Channel) {
			return nil
		}
	}
	stale, err := s.Tracker.StaleSends(ctx, cp.ID+StageSuffix, cutoff)
	if err != nil || len(stale) == 0 {
		return err
	}
	f := &Failover{rdb: s.Campaigns.rdb, prefix: s.Campaigns.prefix}
	fields := make([]string, len(stale))
	for i, c := range stale {
		fields[i] = strconv.FormatUint(uint64(c), 10)
	}
	recs, err := f.rdb.HMGet(ctx, f.keys(cp.ID)[1], fields...).Result()
	if err != nil {
		return fmt.Errorf("campaign %s fallbacks: %w", cp.ID, err)
	}
	var msgs []kafka.Message
	for i, c := range stale {
		s, _ := recs[i].(string)
		fired, ok := parseFired(s)
		if !ok {
			continue
		}
		j := Job{Campaign: cp.ID, Contact: c, Sender: "fallback:" + fired.From, Stage: 1, From: fired.From, Reason: fired.Reason, Code: fired.Code}
		msgs = append(msgs, kafka.Message{Key: []byte(j.Sender), Value: j.Marshal()})
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := s.Outbound.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("re-queue stale fallback sends of campaign %s: %w", cp.ID, err)
	}
	return nil
}
