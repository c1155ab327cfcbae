package dispatcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/throttle"
)

// The batch path: a channel that sends one message to many recipients in one request
// (BatchChannel, LINE's multicast) gets the jobs of one campaign and sender whose
// messages are the same in batches, while every invariant stays per contact:
//
//   - each job is claimed, policy-checked and paced on its own: one governor slot per
//     message (the sender's Rate counts messages: what a provider's quota counts), and
//     one more slot per batch request from the sender's batch endpoint governor
//     ("<sender>/batch", at BatchRate requests per second), so neither the message pace
//     nor the endpoint's request limit is passed;
//   - before its request a batch is recorded in Redis — its members (address and
//     callback data) under the campaign, and each member's batch — and then every member
//     is marked sending, as a single send is;
//   - a job whose contact has a recorded batch (a redelivery after a crash, a stale
//     send queued again, a lost claim) is sent again only as that exact batch: the same
//     members in the same order, so the adapter derives the same idempotency key and the
//     provider answers "already accepted" (LINE's 409) when the first request got
//     through, or sends it once when it did not; either way each member is settled on
//     its own. A member recorded alone was pushed: it is sent again alone.
//   - each contact is settled with its own result: sent with its provider id, or its
//     own refusal.
//
// Recorded batches expire after batchRecordTTL (LINE keeps retry keys 24 h).

// BatchRater is implemented by a BatchChannel whose batch requests have their own rate
// limit (requests per second per sender), apart from the messages they carry.
type BatchRater interface {
	BatchRate() float64
}

const (
	batchRecordTTL = 25 * time.Hour
	batchLinger    = 20 * time.Millisecond // how long a batch waits to fill once started
	pushRef        = "push"                // a member recorded alone
)

// batchMember is one recipient of a recorded batch.
type batchMember struct {
	To string `json:"to"`
	CB string `json:"cb"`
}

func (t *Tracker) batchKeys(campaign, id string) (index, batch string) {
	base := t.prefix + "{cmp:" + campaign + "}"
	return base + ":batches", base + ":batch:" + id
}

// batchID names a batch by its members (sorted by callback data).
func batchID(members []batchMember) string {
	h := sha256.New()
	for _, m := range members {
		h.Write([]byte(m.CB))
		h.Write([]byte{0})
		h.Write([]byte(m.To))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// recordBatch records a batch of campaign before its request: its members under id
// (pushRef for a member sent alone) and each member's batch.
func (t *Tracker) recordBatch(ctx context.Context, campaign, id string, members []batchMember) error {
	index, key := t.batchKeys(campaign, id)
	pipe := t.rdb.TxPipeline()
	args := make([]any, 0, 2*len(members))
	for _, m := range members {
		_, c, ok := ParseCallbackData(m.CB)
		if !ok {
			return fmt.Errorf("record batch: bad callback data %q", m.CB)
		}
		args = append(args, strconv.FormatUint(uint64(c), 10), id)
	}
	if id != pushRef {
		b, _ := json.Marshal(members)
		pipe.Set(ctx, key, b, batchRecordTTL)
	}
	pipe.HSet(ctx, index, args...)
	pipe.Expire(ctx, index, batchRecordTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record batch of campaign %s: %w", campaign, err)
	}
	return nil
}

// recordedBatches returns, per item, the batch its contact was recorded in ("" for
// none, pushRef for alone) and the members of each batch named.
func (t *Tracker) recordedBatches(ctx context.Context, items []*item) ([]string, map[string][]batchMember, error) {
	refs := make([]string, len(items))
	byCampaign := map[string][]int{}
	for i, it := range items {
		byCampaign[it.job.Campaign] = append(byCampaign[it.job.Campaign], i)
	}
	members := map[string][]batchMember{}
	for campaign, idx := range byCampaign {
		index, _ := t.batchKeys(campaign, "")
		fields := make([]string, len(idx))
		for j, i := range idx {
			fields[j] = strconv.FormatUint(uint64(items[i].job.Contact), 10)
		}
		vals, err := t.rdb.HMGet(ctx, index, fields...).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("recorded batches of campaign %s: %w", campaign, err)
		}
		for j, v := range vals {
			s, _ := v.(string)
			refs[idx[j]] = s
			if s == "" || s == pushRef || members[s] != nil {
				continue
			}
			_, key := t.batchKeys(campaign, s)
			b, err := t.rdb.Get(ctx, key).Bytes()
			if errors.Is(err, redis.Nil) {
				// Expired with the provider's own memory of its key: a new send.
				refs[idx[j]] = ""
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("recorded batch %s of campaign %s: %w", s, campaign, err)
			}
			var ms []batchMember
			if err := json.Unmarshal(b, &ms); err != nil {
				return nil, nil, fmt.Errorf("recorded batch %s of campaign %s: %w", s, campaign, err)
			}
			members[s] = ms
		}
	}
	return refs, members, nil
}

// batchGroup is the jobs a batch request will carry.
type batchGroup struct {
	items    []*item
	recorded string        // the recorded batch they are sent again as ("" for a new one)
	members  []batchMember // the recorded batch's members
	first    time.Time
}

// batcher gathers one sender lane's started jobs into batch groups and hands full or
// lingering groups to the send goroutines.
type batcher struct {
	w      *Worker
	ctx    context.Context
	bc     BatchChannel
	sends  *sync.WaitGroup
	max    int
	mu     sync.Mutex
	groups map[string]*batchGroup
	refs   map[*item]string
	recs   map[string][]batchMember
	stop   chan struct{}
	done   chan struct{}
}

// paceBatchLane is paceLane for a batch channel: the jobs are paced one slot each, and
// gathered into batches as they start.
func (w *Worker) paceBatchLane(ctx context.Context, list []*item, bc BatchChannel, sends *sync.WaitGroup) error {
	refs, recs, err := w.cfg.Tracker.recordedBatches(ctx, list)
	if err != nil {
		return err
	}
	b := &batcher{w: w, ctx: ctx, bc: bc, sends: sends, max: max(1, bc.MaxBatch()), groups: map[string]*batchGroup{},
		refs: make(map[*item]string, len(list)), recs: recs, stop: make(chan struct{}), done: make(chan struct{})}
	for i, it := range list {
		b.refs[it] = refs[i]
	}
	go b.linger()
	err = w.paceLane(ctx, list, b.add)
	close(b.stop)
	<-b.done
	b.flush(func(*batchGroup) bool { return true })
	return err
}

func (b *batcher) add(it *item) error {
	key := "new\x00" + it.job.Campaign + "\x00" + b.bc.BatchKey(b.w.message(it))
	ref := b.refs[it]
	if ref != "" {
		key = "rec\x00" + it.job.Campaign + "\x00" + ref
	}
	b.mu.Lock()
	g := b.groups[key]
	if g == nil {
		g = &batchGroup{first: time.Now()}
		if ref != "" && ref != pushRef {
			g.recorded, g.members = ref, b.recs[ref]
		} else if ref == pushRef {
			g.recorded = pushRef
		}
		b.groups[key] = g
	}
	g.items = append(g.items, it)
	full := len(g.items) >= b.max || ref == pushRef || (g.recorded != "" && len(g.items) >= len(g.members))
	if full {
		delete(b.groups, key)
	}
	b.mu.Unlock()
	if full {
		b.submit(g)
	}
	return nil
}

// linger flushes groups that have waited batchLinger, until stopped.
func (b *batcher) linger() {
	defer close(b.done)
	t := time.NewTicker(batchLinger / 2)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			cut := time.Now().Add(-batchLinger)
			b.flush(func(g *batchGroup) bool { return g.first.Before(cut) })
		}
	}
}

func (b *batcher) flush(due func(*batchGroup) bool) {
	var out []*batchGroup
	b.mu.Lock()
	for k, g := range b.groups {
		if due(g) {
			out = append(out, g)
			delete(b.groups, k)
		}
	}
	b.mu.Unlock()
	for _, g := range out {
		b.submit(g)
	}
}

// submit hands a group to the send goroutines; a cancelled lane leaves its jobs unsent.
func (b *batcher) submit(g *batchGroup) {
	b.sends.Add(1)
	select {
	case b.w.sendQ <- sendTask{ctx: b.ctx, batch: g, bc: b.bc, done: b.sends}:
	case <-b.ctx.Done():
		b.sends.Done()
		for _, it := range g.items {
			it.providerID = ""
		}
	}
}

// message is the message a job sends.
func (w *Worker) message(it *item) Message {
	return Message{To: Address(it.cp.Channel, it.contact), Rendered: it.rendered, Unsubscribe: it.unsubscribe,
		CallbackData: CallbackDataVariant(it.job.Campaign, it.job.Contact, it.rendered.Variant)}
}

// sendBatch records, marks and sends one batch group, and settles each of its jobs.
func (w *Worker) sendBatch(ctx context.Context, bc BatchChannel, g *batchGroup) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	items := g.items
	campaign := items[0].job.Campaign
	s := items[0].sender
	now := time.Now()
	notSent := func(live []*item, err error) {
		for _, it := range live {
			it.providerID, it.deferUntil = "", time.Now().Add(time.Second)
		}
		w.log.Warn("batch send not started", "err", err, "jobs", len(live))
	}
	members, id := g.members, g.recorded
	if id != pushRef && (id != "" || len(items) > 1) {
		// One slot of the batch endpoint's own request limit, before anything is marked.
		if r, ok := bc.(BatchRater); ok && r.BatchRate() > 0 {
			if err := w.batchSlot(sctx, s.ID, r.BatchRate()); err != nil {
				notSent(items, err)
				return
			}
		}
	}
	if id == "" {
		members = make([]batchMember, len(items))
		for i, it := range items {
			m := w.message(it)
			members[i] = batchMember{To: m.To, CB: m.CallbackData}
		}
		slices.SortFunc(members, func(a, b batchMember) int { return strings.Compare(a.CB, b.CB) })
		id = pushRef
		if len(members) > 1 {
			id = batchID(members)
		}
		// Recorded before anything is marked: whoever sends a member again sends this.
		if err := w.cfg.Tracker.recordBatch(sctx, campaign, id, members); err != nil {
			notSent(items, err)
			return
		}
	}
	keys := make([]Key, len(items))
	proofs := make([]SendProof, len(items))
	for i, it := range items {
		it.startedAt = now
		keys[i] = it.key()
		proofs[i] = SendProof{Channel: it.cp.Channel, Purpose: it.cp.Purpose, ConsentRef: it.decision.ConsentRef, Template: it.template(), FreeForm: it.rendered.FreeForm}
	}
	oks, err := w.cfg.Tracker.MarkSending(sctx, keys, proofs)
	if err != nil {
		notSent(items, err)
		return
	}
	var live []*item
	for i, it := range items {
		if !oks[i] {
			it.providerID, it.drop, it.claimed = "", true, false
			w.m.jobs.WithLabelValues("lost_claim").Inc()
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return
	}
	start := time.Now()
	if id == pushRef {
		it := live[0]
		pid, err := bc.Send(sctx, s, w.message(it))
		w.observeSend(s, start)
		w.settleSend(it, pid, err)
		return
	}
	rendered := live[0].rendered
	ms := make([]Message, len(members))
	for i, m := range members {
		ms[i] = Message{To: m.To, CallbackData: m.CB, Rendered: rendered}
	}
	res := bc.SendBatch(sctx, s, ms)
	w.observeSend(s, start)
	byKey := make(map[Key]BatchResult, len(members))
	for i, m := range members {
		if c, id, ok := ParseCallbackData(m.CB); ok && i < len(res) {
			byKey[Key{c, id}] = res[i]
		}
	}
	for _, it := range live {
		r, ok := byKey[Key{it.job.Campaign, it.job.Contact}]
		if !ok {
			r.Err = &SendError{Retryable: true, Action: ActionTransport, Err: errors.New("the batch channel returned no result for this message")}
		}
		w.settleSend(it, r.ProviderID, r.Err)
	}
}

// batchSlot waits for one request slot of sender's batch endpoint.
func (w *Worker) batchSlot(ctx context.Context, sender string, rate float64) error {
	lim := throttle.Limits{Rate: rate}
	for {
		r, err := w.cfg.Governor.ReserveWithin(ctx, sender+"/batch", lim, 1, w.cfg.Horizon)
		if err != nil {
			return err
		}
		if r.N > 0 {
			if !waitUntil(ctx, r.At(0)) {
				return ctx.Err()
			}
			return nil
		}
		at := r.Next
		if at.IsZero() || !at.After(time.Now()) {
			at = time.Now().Add(time.Duration(float64(time.Second) / rate))
		}
		if !waitUntil(ctx, at) {
			return ctx.Err()
		}
	}
}
