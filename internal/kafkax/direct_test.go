package kafkax

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A DirectWriter puts each message where NewWriter's writer puts a message of the same
// key (a contact's events keep to one partition whichever role wrote them), every one
// of them exactly once, and fails (rather than hangs) once the broker is gone.
func TestDirectWriterPartitionsLikeWriter(t *testing.T) {
	k, ctx := embeddedWith(t, []string{"direct", "shared"}, 5)
	const n = 500
	var msgs []kafka.Message
	for i := range n {
		msgs = append(msgs, kafka.Message{Key: ContactKey(uint32(i * 7919)), Value: []byte(strconv.Itoa(i))})
	}
	dw := NewDirectWriter(k.Brokers, "direct")
	defer dw.Close()
	for lo := 0; lo < n; lo += 64 { // in groups, as serve writes
		if err := dw.WriteMessages(ctx, msgs[lo:min(lo+64, n)]...); err != nil {
			t.Fatal(err)
		}
	}
	w := NewWriter(k.Brokers, "shared")
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	where := func(topic string) map[string]int {
		t.Helper()
		got := map[string]int{}
		for p := range 5 {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
			last, err := r.ReadLag(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for range last {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := got[string(m.Value)]; dup {
					t.Errorf("%s: message %s twice", topic, m.Value)
				}
				got[string(m.Value)] = p
			}
			r.Close()
		}
		return got
	}
	direct, shared := where("direct"), where("shared")
	if len(direct) != n || len(shared) != n {
		t.Fatalf("%d messages written directly, %d by the writer, want %d each", len(direct), len(shared), n)
	}
	spread := map[int]bool{}
	for v, p := range direct {
		spread[p] = true
		if shared[v] != p {
			t.Errorf("message %s: partition %d directly, %d by the writer", v, p, shared[v])
		}
	}
	if len(spread) < 2 {
		t.Errorf("every message in one partition: %v", spread)
	}

	k.Close()
	short, cancelShort := context.WithTimeout(ctx, 10*time.Second)
	defer cancelShort()
	if err := dw.WriteMessages(short, msgs[:3]...); err == nil {
		t.Error("a write with the broker gone succeeded")
	} else {
		t.Logf("with the broker gone: %v", err)
	}
}

// One WriteMessages is one produce request per broker, whatever partitions it touches:
// every request is work for the broker and a round trip for serve's group commit.
func TestDirectWriterOneRequestPerBroker(t *testing.T) {
	k, ctx := embeddedWith(t, []string{"direct"}, 6)
	var mu sync.Mutex
	var requests, partitions int
	k.cluster.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		k.cluster.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		requests++
		for _, tp := range r.(*kmsg.ProduceRequest).Topics {
			partitions += len(tp.Partitions)
		}
		return nil, nil, false
	})
	dw := NewDirectWriter(k.Brokers, "direct")
	defer dw.Close()
	var msgs []kafka.Message
	for i := range 200 {
		msgs = append(msgs, kafka.Message{Key: ContactKey(uint32(i)), Value: []byte(strconv.Itoa(i))})
	}
	for round := 1; round <= 3; round++ {
		if err := dw.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got, parts := requests, partitions
		mu.Unlock()
		if got != round || parts != 6*round {
			t.Fatalf("after %d writes of 200 messages over 6 partitions: %d produce requests carrying %d partitions, want %d and %d", round, got, parts, round, 6*round)
		}
	}
	// Every message landed once.
	total := 0
	for p := range 6 {
		c, err := kafka.DialLeader(ctx, "tcp", k.Brokers[0], "direct", p)
		if err != nil {
			t.Fatal(err)
		}
		last, err := c.ReadLastOffset()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		total += int(last)
	}
	if total != 600 {
		t.Fatalf("%d records in the topic, want 600", total)
	}
}

// A group reader fetches what its options ask for (the sink's 64 KiB was once dropped,
// and every status became a fetch of its own for every consumer group).
func TestGroupReaderTakesItsFetchOptions(t *testing.T) {
	r := NewGroupReader([]string{"127.0.0.1:9"}, "g", "t", ReaderOptions{MinBytes: BatchedFetch, MaxWait: 500 * time.Millisecond})
	defer r.Close()
	if c := r.Config(); c.MinBytes != BatchedFetch || c.MaxWait != 500*time.Millisecond {
		t.Fatalf("reader config MinBytes %d MaxWait %v, want %d and 500ms", c.MinBytes, c.MaxWait, BatchedFetch)
	}
	d := NewGroupReader([]string{"127.0.0.1:9"}, "g", "t", ReaderOptions{})
	defer d.Close()
	if c := d.Config(); c.MinBytes != 1 || c.MaxWait != time.Second {
		t.Fatalf("default reader config MinBytes %d MaxWait %v, want 1 and 1s", c.MinBytes, c.MaxWait)
	}
}

// embeddedWith starts an embedded broker with topics of that many partitions; it stops
// with the test (or before, by k.Close), and ctx ends after a minute.
func embeddedWith(t *testing.T, topics []string, partitions int) (*Embedded, context.Context) {
	t.Helper()
	k, err := StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if err := EnsureTopics(ctx, k.Brokers, topics, partitions); err != nil {
		t.Fatal(err)
	}
	return k, ctx
}
