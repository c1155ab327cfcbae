package throttle

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reason codes of skipped jobs. They are bounded: safe as metric labels.
const (
	ReasonNoConsent     = "no_consent"     // never opted in for this channel and purpose
	ReasonOptedOut      = "opted_out"      // consent revoked
	ReasonOutsideWindow = "outside_window" // free-form text and no inbound message in the last 24h
)

// Window is the WhatsApp customer-service window.
const Window = 24 * time.Hour

// Verdict is what the policy says about one job.
type Verdict uint8

// Verdicts.
// The zero Verdict is undecided, never permission.
const (
	Allow Verdict = iota + 1
	Defer
	Skip
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Defer:
		return "defer"
	case Skip:
		return "skip"
	default:
		return "undecided"
	}
}

// Job is what the policy needs to know about one send.
type Job struct {
	Campaign  string // with ContactID, names the message for frequency caps
	ContactID uint32
	SenderID  string
	Channel   string
	Purpose   string
	FreeForm  bool // free-form text (needs an open 24h window), not an approved template
	// CapCategory is the frequency-cap category when it is not Purpose: journeys' sends
	// are "automated", so "automated:3/24h" caps them apart from campaigns.
	CapCategory string

	// The recipient's zone for quiet hours: TimeZone (IANA, from the profile) when valid,
	// else the zone of Phone's region (E.164), else of Country (ISO 3166 region), else
	// the policy's fallback zone.
	TimeZone string
	Phone    string
	Country  string
	// SenderTier is the sender's daily unique-recipient tier (250, 2000, 10000, 100000);
	// 0 is unlimited.
	SenderTier int
	// Quiet overrides the policy's quiet hours for this job (a campaign's own); nil: the
	// policy's; a zero QuietHours: none.
	Quiet *QuietHours
}

// Decision is the policy's answer for one job.
type Decision struct {
	Verdict    Verdict
	Reason     string    // for Skip and Defer
	Until      time.Time // for Defer
	ConsentRef string    // the ledger record an Allow relies on
}

// Policy evaluates jobs against consent, the 24h window, frequency caps, quiet hours,
// provider pushback, the pair rate and the sender's daily tier.
type Policy struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
	caps   map[string][]Cap // by category

	quiet        QuietHours
	fallback     *time.Location
	pair         time.Duration
	backoffMax   time.Duration
	backoffReset time.Duration
	// splitTier decides the daily tier in its own script on the sender's slot (a Redis
	// Cluster: see tiersplit.go) instead of inside the rules script.
	splitTier bool
}

// WithCaps sets the frequency caps; jobs of categories without caps are not limited.
func (p *Policy) WithCaps(caps []Cap) *Policy {
	p.caps = map[string][]Cap{}
	for _, c := range caps {
		p.caps[c.Category] = append(p.caps[c.Category], c)
	}
	return p
}

// NewPolicy returns a policy reading state under prefix. now may be nil (time.Now). It
// has no caps and no quiet hours, the default pair interval, the default 131056 back-off
// and UTC as the fallback zone until the With… methods say otherwise.
func NewPolicy(rdb redis.UniversalClient, prefix string, now func() time.Time) *Policy {
	if now == nil {
		now = time.Now
	}
	return &Policy{rdb: rdb, prefix: prefix, now: now, fallback: time.UTC, pair: DefaultPairInterval,
		backoffMax: DefaultBackoffMax, backoffReset: DefaultBackoffReset, splitTier: onCluster(rdb)}
}

// Check decides every job, in order: consent for the channel and purpose → suppression
// (undeliverable on the channel) → the 24h window (free-form text) → frequency caps →
// quiet hours → marketing hold → recipient back-off → pair rate → the sender's daily tier. An allowed job holds a reservation of
// its cap slot, pair slot and tier place (give them back with ReleaseCaps if it is not
// sent); a skipped or deferred job holds none. Two pipelined round trips per batch,
// whatever its size (on a Redis Cluster, one more when some job counts against a daily
// tier, and another when tier places must be given back: see tiersplit.go). An error means nothing may be sent: the caller must not treat a
// failed check as permission (fail closed).
func (p *Policy) Check(ctx context.Context, jobs []Job) ([]Decision, error) {
	return p.decide(ctx, jobs, true)
}

// Preview decides like Check but reserves nothing and changes nothing (a dry run). Jobs
// of one batch do not see each other: a preview of a full tier's worth of new contacts
// allows them all.
func (p *Policy) Preview(ctx context.Context, jobs []Job) ([]Decision, error) {
	return p.decide(ctx, jobs, false)
}

func (p *Policy) decide(ctx context.Context, jobs []Job, reserve bool) ([]Decision, error) {
	out := make([]Decision, len(jobs))
	if len(jobs) == 0 {
		return out, nil
	}
	now := p.now()
	if err := p.checkConsent(ctx, jobs, out, now); err != nil {
		return nil, err
	}
	if err := p.applyRules(ctx, jobs, out, now, reserve); err != nil {
		return nil, err
	}
	return out, nil
}

// checkConsent decides consent, suppression and the 24h window in one round trip: one
// HMGET per consent hash (channel and purpose), per channel's suppressions and per
// sender's window hash in the batch.
func (p *Policy) checkConsent(ctx context.Context, jobs []Job, out []Decision, now time.Time) error {
	type read struct {
		key    string
		fields []string
		cmd    *redis.SliceCmd
	}
	var reads []*read
	byKey := map[string]*read{}
	add := func(key, field string) int {
		r := byKey[key]
		if r == nil {
			r = &read{key: key}
			byKey[key] = r
			reads = append(reads, r)
		}
		r.fields = append(r.fields, field)
		return len(r.fields) - 1
	}
	type at struct {
		consent, suppress, window *read
		ci, si, wi                int // the job's field in each
	}
	pos := make([]at, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		id := strconv.FormatUint(uint64(j.ContactID), 10)
		key := consentBase(p.prefix, p.rdb) + j.Channel + ":" + j.Purpose
		pos[i].ci = add(key, id)
		pos[i].consent = byKey[key]
		key = p.suppressKey(j.Channel)
		pos[i].si = add(key, id)
		pos[i].suppress = byKey[key]
		if j.FreeForm {
			key = p.windowKey(j.SenderID)
			pos[i].wi = add(key, id)
			pos[i].window = byKey[key]
		}
	}
	pipe := p.rdb.Pipeline()
	for _, r := range reads {
		r.cmd = pipe.HMGet(ctx, r.key, r.fields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("policy check: %w", err)
	}
	for i := range jobs {
		s, _ := pos[i].consent.cmd.Val()[pos[i].ci].(string)
		st := parseState(s)
		switch {
		case !st.Granted && st.RecordID != "":
			out[i] = Decision{Verdict: Skip, Reason: ReasonOptedOut}
			continue
		case !st.Granted:
			out[i] = Decision{Verdict: Skip, Reason: ReasonNoConsent}
			continue
		}
		if v, ok := pos[i].suppress.cmd.Val()[pos[i].si].(string); ok {
			if sup := parseSuppression(v); sup.Active(now) {
				out[i] = Decision{Verdict: Skip, Reason: sup.Reason}
				continue
			}
		}
		if jobs[i].FreeForm {
			w, _ := pos[i].window.cmd.Val()[pos[i].wi].(string)
			ms, err := strconv.ParseInt(w, 10, 64)
			if err != nil || now.Sub(time.UnixMilli(ms)) >= Window {
				out[i] = Decision{Verdict: Skip, Reason: ReasonOutsideWindow}
				continue
			}
		}
		out[i] = Decision{Verdict: Allow, ConsentRef: st.RecordID}
	}
	return nil
}

func (p *Policy) windowKey(sender string) string { return p.prefix + "window:" + sender }

// RecordInbound notes that contacts wrote to sender at the given times, opening (or
// extending) their 24h windows. Older timestamps never move a window back.
func (p *Policy) RecordInbound(ctx context.Context, sender string, contacts []uint32, at []time.Time) error {
	if len(contacts) == 0 {
		return nil
	}
	pipe := p.rdb.Pipeline()
	for i, c := range contacts {
		recordInboundScript.Eval(ctx, pipe, []string{p.windowKey(sender)}, strconv.FormatUint(uint64(c), 10), at[i].UnixMilli())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record inbound: %w", err)
	}
	return nil
}

var recordInboundScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
`)

// Consent returns contacts' consent state for channel and purpose (one round trip).
func (p *Policy) Consent(ctx context.Context, channel, purpose string, contacts []uint32) ([]State, error) {
	return readConsent(ctx, p.rdb, consentBase(p.prefix, p.rdb)+channel+":"+purpose, contacts)
}
