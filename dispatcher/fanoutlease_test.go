package dispatcher

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/kafkax"
)

// hookPublisher passes writes on to a real writer and runs hook before each; an error
// from hook fails the write.
type hookPublisher struct {
	next   Publisher
	mu     sync.Mutex
	writes int
	hook   func(n int) error // n: writes so far
}

func (p *hookPublisher) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	n := p.writes
	p.writes++
	p.mu.Unlock()
	if err := p.hook(n); err != nil {
		return err
	}
	return p.next.WriteMessages(ctx, msgs...)
}

// A fan-out cut off by its process (here: Kafka refusing the third chunk) is finished by
// the scheduler's leader once its lease has run out, from its checkpoint: every contact
// gets exactly one message. While another process holds the lease, neither Launch nor
// the leader queue anything.
func TestCutOffFanoutIsFinishedByTheScheduler(t *testing.T) {
	r := newRig(t, 200)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	out := kafkax.NewWriter(r.brokers, r.topics.Outbound)
	defer out.Close()
	failing := NewCampaigns(CampaignsConfig{Redis: r.rdb, Prefix: r.prefix, Segments: r.contacts, Events: memPublisher{}, Chunk: 16,
		Outbound: &hookPublisher{next: out, hook: func(n int) error {
			if n >= 2 {
				return errors.New("kafka unavailable")
			}
			return nil
		}}})
	if _, err := failing.Launch(ctx, cp.ID, nil); err == nil {
		t.Fatal("a launch whose fan-out failed reported no error")
	}
	st, err := r.campaigns.Status(ctx, cp.ID)
	if err != nil || st.State != Running || st.FanoutDone || st.Queued != 32 {
		t.Fatalf("after the cut-off: %+v, %v; want running with 32 queued", st, err)
	}
	if n := r.rdb.Exists(ctx, r.campaigns.fanoutLeaseKey(cp.ID)).Val(); n != 0 {
		t.Fatal("a failed fan-out kept its lease")
	}
	// As if the launcher had died holding its lease.
	r.rdb.Set(ctx, r.campaigns.fanoutLeaseKey(cp.ID), "dead-launcher", 4*time.Second)
	if st, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil || st.Queued != 32 {
		t.Fatalf("a launch while another process holds the lease: %+v, %v; want nothing queued", st, err)
	}
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	time.Sleep(time.Second)
	if st, _ := r.campaigns.Status(ctx, cp.ID); st.Queued != 32 || st.FanoutDone {
		t.Fatalf("the scheduler took a fan-out over while its lease was held: %+v", st)
	}
	st = r.waitCompleted(t, cp.ID)
	if st.Sent != 200 || st.Queued != 200 {
		t.Fatalf("status %+v, want 200 sent", st)
	}
	time.Sleep(300 * time.Millisecond) // jobs queued twice around the checkpoint drain
	accepted, _ := ch.counts()
	r.assertOncePerContact(t, cp, accepted)
	if r.rdb.SIsMember(ctx, r.campaigns.fanoutsKey(), cp.ID).Val() {
		t.Error("a finished fan-out is still listed")
	}
}

// A fan-out that finds its lease taken by another process stops at its next checkpoint.
func TestFanoutStopsWhenItsLeaseIsTaken(t *testing.T) {
	r := newRig(t, 100)
	ctx := context.Background()
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	var c *Campaigns
	c = NewCampaigns(CampaignsConfig{Redis: r.rdb, Prefix: r.prefix, Segments: r.contacts, Events: memPublisher{}, Chunk: 16,
		Outbound: &hookPublisher{next: memPublisher{}, hook: func(n int) error {
			if n == 1 {
				r.rdb.Set(ctx, c.fanoutLeaseKey(cp.ID), "other", time.Minute)
			}
			return nil
		}}})
	_, err = c.Launch(ctx, cp.ID, nil)
	if !errors.Is(err, errFanoutTaken) {
		t.Fatalf("launch = %v, want the fan-out taken over", err)
	}
	if st, _ := c.Status(ctx, cp.ID); st.Queued != 32 || st.FanoutDone {
		t.Fatalf("status %+v: want the fan-out stopped after 2 chunks", st)
	}
	if v := r.rdb.Get(ctx, c.fanoutLeaseKey(cp.ID)).Val(); v != "other" {
		t.Fatalf("the lease holds %q: the stopped fan-out released another's lease", v)
	}
}
