package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
)

func TestTrackConversion(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	seedAudit(t, conn) // campaign "ok" sent to contact 1 at 2025-03-10T10:00Z
	rdb, prefix := testenv.Redis(t)
	if _, err := segments.NewStore(rdb, prefix).Upsert(context.Background(), []segments.Contact{{Phone: "+66812345678"}}); err != nil {
		t.Fatal(err)
	}
	brokers, topics := testenv.Kafka(t, 1)
	global := []string{"--clickhouse-dsn", testenv.ClickHouseDSN(t, db), "--redis-url", "redis://" + testenv.RedisAddr(t) + "/0",
		"--redis-prefix", prefix, "--kafka-brokers", strings.Join(brokers, ","),
		"--topic-prefix", strings.TrimSuffix(topics.Events, "events")}
	track := func(args ...string) (int, string, string) {
		return run(append(append(append([]string{}, global...), "track", "conversion"), args...)...)
	}
	code, out, errOut := track("--phone", "+66812345678", "--order-id", "A-1", "--value", "12.5", "--currency", "THB", "--at", "2025-03-11T10:00:00Z")
	if code != 0 || !strings.Contains(out, "attributed to campaign ok") {
		t.Fatalf("track: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = track("--phone", "+66812345678", "--order-id", "A-2", "--value", "12.5", "--currency", "THB", "--at", "2025-03-30T10:00:00Z")
	if code != 0 || !strings.Contains(out, "without a campaign") {
		t.Fatalf("track outside the window: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = track("--phone", "+66812345678", "--order-id", "A-3", "--value", "1", "--currency", "baht")
	if code != 2 || !strings.Contains(errOut, "currency") {
		t.Fatalf("track with a bad currency: exit %d, %s", code, errOut)
	}
}
