package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func msg(part int, off int64) kafka.Message {
	return kafka.Message{Topic: "t", Partition: part, Offset: off}
}

// Offsets are committed only up to the contiguous prefix of finished jobs, whatever
// order the lanes finish in.
func TestOffsetsCommitTheFinishedPrefix(t *testing.T) {
	o := newOffsets()
	for _, off := range []int64{10, 11, 12, 14} { // 13 is a gap in the log (compaction)
		o.add(msg(0, off))
	}
	o.add(msg(1, 5))
	o.finish([]kafka.Message{msg(0, 11), msg(0, 12)})
	if c := o.committable(); len(c) != 0 {
		t.Fatalf("committed %v while offset 10 is unfinished", c)
	}
	o.finish([]kafka.Message{msg(0, 10)})
	c := o.committable()
	if len(c) != 1 || c[0].Partition != 0 || c[0].Offset != 12 {
		t.Fatalf("committable %v, want partition 0 offset 12", c)
	}
	if c := o.committable(); len(c) != 0 {
		t.Fatalf("committed twice: %v", c)
	}
	o.finish([]kafka.Message{msg(0, 14), msg(1, 5)})
	got := map[int]int64{}
	for _, m := range o.committable() {
		got[m.Partition] = m.Offset
	}
	if got[0] != 14 || got[1] != 5 {
		t.Fatalf("committable %v, want 0:14 1:5", got)
	}
	// The reader restarts a partition from its committed offset after a rebalance: the
	// tracker starts over instead of waiting for offsets it will never see finished.
	o.add(msg(0, 20))
	o.add(msg(0, 15))
	o.finish([]kafka.Message{msg(0, 15)})
	if c := o.committable(); len(c) != 1 || c[0].Offset != 15 {
		t.Fatalf("after a restart: %v, want offset 15", c)
	}
}

// A sender held back by its rate does not delay another sender's jobs in the same
// partitions: the fast sender's campaign completes while the slow one is still sending.
func TestNoHeadOfLineBlockingBetweenSenders(t *testing.T) {
	r := newRig(t, 200)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.senders.Put(ctx, Sender{ID: "slow", Channel: "whatsapp", PhoneNumberID: "slow", Token: "t", Rate: 5}); err != nil {
		t.Fatal(err)
	}
	r.tune = func(c *WorkerConfig) { c.Horizon = 500 * time.Millisecond }
	ch := newFakeChannel()
	r.startWorker(t, ctx, r.rdb, ch)
	slow, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"slow"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{slow.ID, fast.ID} {
		if _, err := r.campaigns.Launch(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	r.waitCompleted(t, fast.ID)
	st, err := r.campaigns.Status(ctx, slow.ID)
	if err != nil {
		t.Fatal(err)
	}
	// 200 jobs at 5 msg/s take 40 s; the fast campaign finished long before.
	if st.State == Completed || st.Sent >= 200 {
		t.Fatalf("the slow sender's campaign is already done (%+v): the test shows nothing", st)
	}
	accepted, _ := ch.counts()
	for _, id := range r.ids {
		if n := accepted[CallbackData(fast.ID, id)]; n != 1 {
			t.Fatalf("contact %d got %d messages of the fast campaign", id, n)
		}
	}
}
