package dispatcher

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// DryRun is what a launch would do now: who would be sent, who skipped and why, per
// sender, and how long the senders' rates make it take.
type DryRun struct {
	Campaign  string            `json:"campaign_id"`
	Audience  uint64            `json:"audience"`
	Snapshot  bool              `json:"snapshot"` // the audience is the launch snapshot (else evaluated now)
	FreeForm  bool              `json:"free_form"`
	WouldSend uint64            `json:"would_send"`
	Skipped   map[string]uint64 `json:"skipped"`  // by reason code
	Deferred  map[string]uint64 `json:"deferred"` // would wait (quiet hours, tier…) by reason, then send
	Senders   []SenderPlan      `json:"senders"`
	ETA       time.Duration     `json:"-"` // the slowest sender's share at its rate; printed as eta_ms (json.go)
}

// SenderPlan is one sender's share of a dry run.
type SenderPlan struct {
	ID       string        `json:"sender_id"`
	Rate     float64       `json:"rate"`
	Contacts uint64        `json:"contacts"`
	Tier     int           `json:"tier,omitempty"` // daily unique recipients (0: unlimited)
	ETA      time.Duration `json:"-"`              // printed as eta_ms (json.go)
}

// eta is how long a sender needs for its contacts at its rate, when its daily tier lets
// only Tier new recipients through per rolling 24 h.
func (p SenderPlan) eta() time.Duration {
	n := float64(p.Contacts)
	var days time.Duration
	if p.Tier > 0 && p.Contacts > uint64(p.Tier) {
		full := (p.Contacts - 1) / uint64(p.Tier) // whole windows before the last one
		days = time.Duration(full) * 24 * time.Hour
		n = float64(p.Contacts - full*uint64(p.Tier))
	}
	return days + time.Duration(math.Ceil(n/p.Rate*1e3))*time.Millisecond
}

// DryRun evaluates the campaign's audience against the policy without sending or
// changing anything. It reads in batches (one pipelined round trip per batch).
func (c *Campaigns) DryRun(ctx context.Context, id string, tpls Templates, policy *throttle.Policy, senders *Senders) (DryRun, error) {
	cp, err := c.Get(ctx, id)
	if err != nil {
		return DryRun{}, err
	}
	dr := DryRun{Campaign: id, Skipped: map[string]uint64{}, Deferred: map[string]uint64{}}
	tpl, err := tpls.Get(ctx, cp.Template)
	if err != nil {
		return dr, fmt.Errorf("campaign %s: template %q: %w", id, cp.Template, err)
	}
	// Only WhatsApp text needs the 24h window (as the rendered message says: FreeForm).
	dr.FreeForm = tpl.Template().Kind == templates.KindText && tpl.Template().Channel == templates.ChannelWhatsApp
	audience, err := c.loadSnapshot(ctx, id)
	if err != nil {
		return dr, err
	}
	if audience != nil {
		dr.Snapshot = true
	} else if audience, err = c.segments.Evaluate(ctx, cp.Segment); err != nil {
		return dr, fmt.Errorf("campaign %s: segment %q: %w", id, cp.Segment, err)
	}
	dr.Audience = audience.GetCardinality()
	plans, phone, tier := map[string]*SenderPlan{}, map[string]string{}, map[string]int{}
	quiet, err := cp.Quiet()
	if err != nil {
		return dr, err
	}
	for _, sid := range cp.Senders {
		s, err := senders.Get(ctx, sid)
		if err != nil {
			return dr, err
		}
		plans[sid] = &SenderPlan{ID: sid, Rate: s.Rate, Tier: s.Tier}
		phone[sid], tier[sid] = s.PhoneNumberID, s.Tier
	}
	route, err := c.routerFor(ctx, cp, senders)
	if err != nil {
		return dr, err
	}
	it := audience.Iterator()
	batch := make([]throttle.Job, 0, 2000)
	sids := make([]string, 0, 2000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		ds, err := policy.Preview(ctx, batch)
		if err != nil {
			return err
		}
		for i, d := range ds {
			if d.Verdict == throttle.Skip {
				dr.Skipped[d.Reason]++
				continue
			}
			if d.Verdict == throttle.Defer {
				dr.Deferred[d.Reason]++
			}
			dr.WouldSend++
			plans[sids[i]].Contacts++
		}
		batch, sids = batch[:0], sids[:0]
		return nil
	}
	for it.HasNext() {
		contact := it.Next()
		if cp.InHoldout(contact) {
			dr.Skipped[ReasonHoldout]++
			continue
		}
		sid := route(contact)
		sids = append(sids, sid)
		batch = append(batch, throttle.Job{ContactID: contact, SenderID: phone[sid], Channel: cp.Channel, Purpose: cp.Purpose, FreeForm: dr.FreeForm,
			SenderTier: tier[sid], Quiet: quiet})
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return dr, err
			}
		}
	}
	if err := flush(); err != nil {
		return dr, err
	}
	for _, p := range plans {
		p.ETA = p.eta()
		dr.ETA = max(dr.ETA, p.ETA)
		dr.Senders = append(dr.Senders, *p)
	}
	sort.Slice(dr.Senders, func(i, j int) bool { return dr.Senders[i].ID < dr.Senders[j].ID })
	return dr, nil
}

// loadSnapshot returns the launch snapshot, or nil if the campaign was not launched.
func (c *Campaigns) loadSnapshot(ctx context.Context, id string) (*roaring.Bitmap, error) {
	raw, err := c.rdb.Get(ctx, c.key(id)+":audience").Bytes()
	if err == redis.Nil {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("campaign %s: load audience: %w", id, err)
	}
	bm := roaring.New()
	if _, err := bm.FromUnsafeBytes(raw); err != nil {
		return nil, fmt.Errorf("campaign %s: audience snapshot unreadable: %w", id, err)
	}
	return bm, nil
}
