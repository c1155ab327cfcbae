package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/kafkax"
)

func TestMain(m *testing.M) { Main(m) }

func TestServers(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := Redis(t)
	if err := rdb.Set(ctx, prefix+"k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := rdb.Get(ctx, prefix+"k").Val(); got != "v" {
		t.Fatalf("redis get = %q", got)
	}
	_, prefix2 := Redis(t)
	if prefix2 == prefix {
		t.Fatal("two tests got the same prefix")
	}

	conn, db := ClickHouse(t)
	var cur string
	if err := conn.QueryRow(ctx, "SELECT currentDatabase()").Scan(&cur); err != nil {
		t.Fatal(err)
	}
	if cur != db {
		t.Fatalf("current database = %q, want %q", cur, db)
	}

	brokers, topics := Kafka(t, 3)
	n, err := kafkax.Partitions(ctx, brokers, topics.Outbound)
	if err != nil || n != 3 {
		t.Fatalf("partitions = %d, %v", n, err)
	}
	w := kafkax.NewWriter(brokers, topics.Events)
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("1"), Value: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	r := kafkax.NewGroupReader(brokers, "g", topics.Events, kafkax.ReaderOptions{})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	m, err := r.FetchMessage(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Value) != "hello" {
		t.Fatalf("read %q", m.Value)
	}
	if err := r.CommitMessages(rctx, m); err != nil {
		t.Fatal(err)
	}
}
