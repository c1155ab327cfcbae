package app

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

// kafkaOutageEnv sets how long the broker stays away in TestKafkaOutageDuringWebhookStorm
// (a Go duration; default 30 s).
const kafkaOutageEnv = "HERALD_FAULT_KAFKA_DOWN"

// restartableKafka is a kfake broker that keeps its log on disk, so it can be stopped
// and started again on the same port with every topic, record and committed offset it
// had: an outage, not a broker that lost its data.
type restartableKafka struct {
	t    *testing.T
	port int
	dir  string
	c    *kfake.Cluster
}

func newRestartableKafka(t *testing.T) *restartableKafka {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	k := &restartableKafka{t: t, port: port, dir: t.TempDir()}
	k.start()
	t.Cleanup(k.stop)
	return k
}

func (k *restartableKafka) start() {
	k.t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.Ports(k.port), kfake.DataDir(k.dir))
	if err != nil {
		k.t.Fatalf("start kafka on port %d: %v", k.port, err)
	}
	k.c = c
}

func (k *restartableKafka) stop() {
	if k.c != nil {
		k.c.Close()
		k.c = nil
	}
}

func (k *restartableKafka) brokers() []string { return []string{fmt.Sprintf("127.0.0.1:%d", k.port)} }

// A Kafka outage (HERALD_FAULT_KAFKA_DOWN, default 30 s) in the middle of a webhook
// storm: a campaign's status webhooks arrive one status per POST over 32 connections
// when the broker goes away. Serve answers 503 (it cannot make the events durable), the
// sandbox keeps posting and retries with a growing, bounded backoff as Meta does, and
// once the broker is back every status lands in ClickHouse: the funnel equals the
// sandbox's record, and no (contact, kind) has two events in any report.
func TestKafkaOutageDuringWebhookStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("keeps Kafka away for 30 s")
	}
	down := 30 * time.Second
	if v, err := time.ParseDuration(os.Getenv(kafkaOutageEnv)); err == nil && v > 0 {
		down = v
	}
	k := newRestartableKafka(t)
	const n = 3000
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, PairInterval: -1, Templates: welcomeSandbox, Seed: 11,
		// Real-time delays: reads arrive 2-34 s after the send, so the storm outlasts the campaign.
		DelayScale: 1, ReadRate: 0.6, UndeliverableRate: 0.03, DuplicateRate: 0.1,
		StatusesPerPost: 1, WebhookConcurrency: 32,
		// Meta retries with decreasing frequency; bounded here so the test ends soon after.
		RetryBase: 500 * time.Millisecond, RetryMax: 4 * time.Second},
		func(c *Config, _ *Stack) { c.KafkaBrokers = k.brokers() })
	comp := seedAudience(t, ctx, s.Deps, n, e2eTemplate)
	cp := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome"}, 1000, "106540352240021", "106540352240022")
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 3*time.Minute)
	assertOnceEach(t, s, cp.ID, n, st)

	// The storm is on: some statuses accepted, most still to come.
	before := s.Sandbox.Stats()
	if before.Pending == 0 {
		t.Fatalf("every webhook was delivered before the outage: %+v", before)
	}
	k.stop()
	outage := time.Now()
	t.Logf("kafka down for %s with %d statuses pending (%d POSTs so far)", down, before.Pending, before.WebhookPosts)
	// While it is away the sandbox keeps posting and is refused (503), over and over.
	var during sandbox.Stats
	for time.Since(outage) < down {
		during = s.Sandbox.Stats()
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if during.WebhookFailed == before.WebhookFailed || during.WebhookRetried == before.WebhookRetried {
		t.Fatalf("no POST refused and retried during the outage: before %+v, during %+v", before, during)
	}
	t.Logf("during the outage: %d POSTs refused, %d retried", during.WebhookFailed-before.WebhookFailed, during.WebhookRetried-before.WebhookRetried)
	k.start()

	waitSettled(t, ctx, s, cp.ID, 3*time.Minute)
	after := s.Sandbox.Stats()
	if after.WebhookPosts <= during.WebhookPosts || after.Pending != 0 {
		t.Fatalf("after the outage: %+v", after)
	}
	// None twice: each message's statuses are one event per kind, however often its
	// webhooks were posted (duplicates, retries after a 503, a writer's own retry).
	conn, err := s.Deps.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var twice uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM (
    SELECT contact_id, kind, uniqExact(event_id) AS n FROM events WHERE campaign_id = ? GROUP BY contact_id, kind HAVING n > 1)`, cp.ID).Scan(&twice); err != nil {
		t.Fatal(err)
	}
	if twice != 0 {
		t.Errorf("%d (contact, kind) pairs have more than one event", twice)
	}
	// Per kind, one event for each status the sandbox emitted (duplicates excluded).
	truth := SandboxTruth(s.Sandbox.Records(), cp.ID)
	rows, err := conn.Query(ctx, `SELECT kind, count() FROM (SELECT DISTINCT contact_id, kind FROM events WHERE campaign_id = ?) GROUP BY kind`, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for rows.Next() {
		var kind string
		var c uint64
		if err := rows.Scan(&kind, &c); err != nil {
			t.Fatal(err)
		}
		got[kind] = c
	}
	rows.Close()
	t.Logf("contacts per kind in ClickHouse %v; sandbox statuses %v, truth %+v", got, after.Statuses, truth)
	for kind, c := range map[string]int64{"queued": n, "sent": after.Statuses["sent"], "delivered": after.Statuses["delivered"],
		"read": after.Statuses["read"], "failed": after.Statuses["failed"]} {
		if got[kind] != uint64(c) {
			t.Errorf("%s: %d contacts in ClickHouse, the sandbox emitted %d", kind, got[kind], c)
		}
	}
}
