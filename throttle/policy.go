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
}

// Decision is the policy's answer for one job.
type Decision struct {
	Verdict    Verdict
	Reason     string    // for Skip and Defer
	Until      time.Time // for Defer
	ConsentRef string    // the ledger record an Allow relies on
}

// Policy evaluates jobs against consent, the 24h window and frequency caps.
type Policy struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
	caps   map[string][]Cap // by category
}

// WithCaps sets the frequency caps; jobs of categories without caps are not limited.
func (p *Policy) WithCaps(caps []Cap) *Policy {
	p.caps = map[string][]Cap{}
	for _, c := range caps {
		p.caps[c.Category] = append(p.caps[c.Category], c)
	}
	return p
}

// NewPolicy returns a policy reading state under prefix. now may be nil (time.Now).
func NewPolicy(rdb redis.UniversalClient, prefix string, now func() time.Time) *Policy {
	if now == nil {
		now = time.Now
	}
	return &Policy{rdb: rdb, prefix: prefix, now: now}
}

// Check decides every job in one pipelined round trip. An error means nothing may be
// sent: the caller must not treat a failed check as permission (fail closed).
func (p *Policy) Check(ctx context.Context, jobs []Job) ([]Decision, error) {
	out := make([]Decision, len(jobs))
	if len(jobs) == 0 {
		return out, nil
	}
	pipe := p.rdb.Pipeline()
	consent := make([]*redis.StringCmd, len(jobs))
	window := make([]*redis.StringCmd, len(jobs))
	for i, j := range jobs {
		id := strconv.FormatUint(uint64(j.ContactID), 10)
		consent[i] = pipe.HGet(ctx, p.prefix+"consent:"+j.Channel+":"+j.Purpose, id)
		if j.FreeForm {
			window[i] = pipe.HGet(ctx, p.windowKey(j.SenderID), id)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("policy check: %w", err)
	}
	now := p.now()
	for i, j := range jobs {
		st := parseState(consent[i].Val())
		switch {
		case !st.Granted && st.RecordID != "":
			out[i] = Decision{Verdict: Skip, Reason: ReasonOptedOut}
			continue
		case !st.Granted:
			out[i] = Decision{Verdict: Skip, Reason: ReasonNoConsent}
			continue
		}
		if j.FreeForm {
			ms, err := strconv.ParseInt(window[i].Val(), 10, 64)
			if err != nil || now.Sub(time.UnixMilli(ms)) >= Window {
				out[i] = Decision{Verdict: Skip, Reason: ReasonOutsideWindow}
				continue
			}
		}
		out[i] = Decision{Verdict: Allow, ConsentRef: st.RecordID}
	}
	return out, p.reserveCaps(ctx, jobs, out, now)
}

// reserveCaps takes a frequency-cap slot for every allowed job of a capped category, in
// one more round trip, and turns the jobs over their cap into skips.
func (p *Policy) reserveCaps(ctx context.Context, jobs []Job, out []Decision, now time.Time) error {
	if len(p.caps) == 0 {
		return nil
	}
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(jobs))
	for i, j := range jobs {
		caps := p.caps[j.Purpose]
		if out[i].Verdict != Allow || len(caps) == 0 {
			continue
		}
		args := []any{j.Campaign + ":" + strconv.FormatUint(uint64(j.ContactID), 10), now.UnixMilli()}
		for _, c := range caps {
			args = append(args, c.Max, c.Window.Milliseconds())
		}
		cmds[i] = capScript.Eval(ctx, pipe, []string{p.capKey(j.ContactID, j.Purpose)}, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("policy check: frequency caps: %w", err)
	}
	for i, c := range cmds {
		if c == nil {
			continue
		}
		if n, _ := c.Int(); n == 0 {
			out[i] = Decision{Verdict: Skip, Reason: ReasonFrequencyCap}
		}
	}
	return nil
}

// ReleaseCaps gives back the frequency-cap slots of jobs that were allowed but not sent
// (refused by the provider, parked, cancelled), so they do not count against the contact.
func (p *Policy) ReleaseCaps(ctx context.Context, jobs []Job) error {
	if len(p.caps) == 0 || len(jobs) == 0 {
		return nil
	}
	pipe := p.rdb.Pipeline()
	for _, j := range jobs {
		if len(p.caps[j.Purpose]) > 0 {
			pipe.ZRem(ctx, p.capKey(j.ContactID, j.Purpose), j.Campaign+":"+strconv.FormatUint(uint64(j.ContactID), 10))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("release frequency caps: %w", err)
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
	return readConsent(ctx, p.rdb, p.prefix+"consent:"+channel+":"+purpose, contacts)
}
