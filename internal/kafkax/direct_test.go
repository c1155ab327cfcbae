package kafkax

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// A DirectWriter puts each message where NewWriter's writer puts a message of the same
// key (a contact's events keep to one partition whichever role wrote them), every one
// of them exactly once, and fails (rather than hangs) once the broker is gone.
func TestDirectWriterPartitionsLikeWriter(t *testing.T) {
	k, err := StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, k.Brokers, []string{"direct", "shared"}, 5); err != nil {
		t.Fatal(err)
	}
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
