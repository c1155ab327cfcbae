// Package kafkax holds Herald's Kafka plumbing: topic names, the embedded kfake broker for
// dev, demo and tests, topic creation, and writers/readers configured the way the design
// requires (RequireAll acks, a few-ms batch timeout, an explicit hash balancer, explicit
// commits). It knows nothing about what the messages mean.
package kafkax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Topics names every topic Herald uses. Tests give each run its own prefix so that a
// shared broker (HERALD_TEST_KAFKA) never mixes runs.
type Topics struct {
	Outbound string // key = sender id: one send job per (campaign, contact)
	Events   string // key = contact id: lifecycle events
	Consent  string // key = contact id: the consent ledger's source of truth
	Inbound  string // key = contact id: inbound messages
	DLQ      string // key = sender id: jobs that cannot be sent
	Audit    string // key = API key id: the /v1 API's audit records of mutating calls
}

// NewTopics returns the topic names under prefix ("herald." in production).
func NewTopics(prefix string) Topics {
	if prefix == "" {
		prefix = "herald."
	}
	return Topics{
		Outbound: prefix + "outbound",
		Events:   prefix + "events",
		Consent:  prefix + "consent",
		Inbound:  prefix + "inbound",
		DLQ:      prefix + "dlq",
		Audit:    prefix + "audit",
	}
}

// All lists the topics.
func (t Topics) All() []string {
	return []string{t.Outbound, t.Events, t.Consent, t.Inbound, t.DLQ, t.Audit}
}

// Embedded is an in-process Kafka (kfake): a real wire-protocol server held in memory.
type Embedded struct {
	cluster *kfake.Cluster
	Brokers []string
	closed  sync.Once
}

// StartEmbedded starts kfake on a loopback port (port 0 picks a free one).
func StartEmbedded(port int) (*Embedded, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation()}
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka: %w", err)
	}
	return &Embedded{cluster: c, Brokers: c.ListenAddrs()}, nil
}

// Close stops the embedded broker.
func (e *Embedded) Close() {
	if e != nil && e.cluster != nil {
		e.closed.Do(e.cluster.Close)
	}
}

// EnsureTopics creates the topics that do not exist yet; existing ones are left alone.
func EnsureTopics(ctx context.Context, brokers []string, topics []string, partitions int) error {
	if partitions <= 0 {
		partitions = 1
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: -1})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, terr)
		}
	}
	return nil
}

// Partitions returns how many partitions topic has.
func Partitions(ctx context.Context, brokers []string, topic string) (int, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return 0, fmt.Errorf("metadata %s: %w", topic, t.Error)
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("topic %s not found", topic)
}

// NewWriter returns a synchronous writer to topic: every WriteMessages call returns after
// all in-sync replicas have the batch. Keys are hashed to partitions.
func NewWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond,
		// kafka-go allocates BatchSize messages for every batch it opens (a batch per
		// partition every BatchTimeout): keep it near what one timeout gathers.
		BatchSize:              500,
		BatchBytes:             16 << 20,
		WriteTimeout:           30 * time.Second,
		AllowAutoTopicCreation: false,
	}
}

// ReaderOptions tune a consumer-group reader.
type ReaderOptions struct {
	SessionTimeout time.Duration // default 6s: a dead member's partitions move after this
	// RebalanceTimeout is how long the coordinator waits for members to rejoin in a
	// rebalance (default 3s; members notice a rebalance at their next heartbeat, every
	// SessionTimeout/6, and kafka-go rejoins without waiting for the application).
	// kafka-go gives up on a JoinGroup after 5s plus this. It must stay short: kfake
	// restarts its wait on every join, so a member that gives up and joins again restarts
	// it for everyone, and with several members and a long wait those restarts never
	// leave a quiet gap long enough for the rebalance to finish (seen as workers stuck in
	// JoinGroup for minutes after some were killed).
	RebalanceTimeout time.Duration
	// MaxWait is how long the broker holds a fetch that finds nothing new (default 1s).
	// A fetch returns as soon as a record arrives, so it costs no latency; short waits
	// only make every idle partition's loop ask again (and kfake answer) 10 times a second.
	MaxWait time.Duration
	// MinBytes is how much a fetch waits for (up to MaxWait) before it returns (default 1:
	// at once). Consumers that batch anyway (the sink) fetch fewer, larger batches with
	// more (BatchedFetch): every fetch is a request for the broker and a wakeup for the
	// reader, and during a campaign every status is a record.
	//
	// kafka-go gives the broker MaxWait less min(1 s, MaxWait/4) and stops reading at
	// MaxWait: a fetch that waits for MinBytes is answered that margin before the reader
	// gives up on the connection. A busy broker missed it at 250 ms (an "i/o timeout"
	// and a reconnect per fetch), and the in-process broker at 500 ms while a stack was
	// starting; at 1 s it has not.
	MinBytes int
	// Logger, when set, receives the reader's errors (failed joins, fetches, commits)
	// as warnings: kafka-go otherwise keeps them to itself and retries.
	Logger *slog.Logger
}

// BatchedFetch is the MinBytes of consumers that read in batches anyway and can wait
// a moment for them (the sink, the webhook deliverer): 64 KiB, a few hundred events. A
// fetch that finds less waits up to about three quarters of MaxWait.
const BatchedFetch = 64 << 10

// NewGroupReader returns a consumer-group reader that commits only when told
// (CommitMessages), starting from the earliest offset for a new group.
func NewGroupReader(brokers []string, group, topic string, o ReaderOptions) *kafka.Reader {
	if o.SessionTimeout == 0 {
		o.SessionTimeout = 6 * time.Second
	}
	if o.MaxWait == 0 {
		o.MaxWait = time.Second
	}
	if o.RebalanceTimeout == 0 {
		o.RebalanceTimeout = 3 * time.Second
	}
	if o.MinBytes <= 0 {
		o.MinBytes = 1
	}
	var errLog kafka.Logger
	if o.Logger != nil {
		errLog = kafka.LoggerFunc(func(msg string, args ...any) {
			o.Logger.Warn("kafka reader: "+fmt.Sprintf(msg, args...), "group", group, "topic", topic)
		})
	}
	return kafka.NewReader(kafka.ReaderConfig{
		ErrorLogger: errLog,
		Brokers:     brokers,
		GroupID:     group,
		Topic:       topic,
		MinBytes:    o.MinBytes,
		MaxBytes:    16 << 20,
		MaxWait:     o.MaxWait,
		// Past this the reader drops its connection and dials again: leave room for a
		// busy broker (a timeout costs a reconnect, a metadata lookup and a seek).
		ReadBatchTimeout:  o.MaxWait + 10*time.Second,
		SessionTimeout:    o.SessionTimeout,
		HeartbeatInterval: o.SessionTimeout / 6,
		RebalanceTimeout:  o.RebalanceTimeout,
		JoinGroupBackoff:  500 * time.Millisecond,
		CommitInterval:    0, // synchronous commits: committed means committed
		StartOffset:       kafka.FirstOffset,
		QueueCapacity:     1000,
	})
}

// ContactKey is the partition key for topics keyed by contact id.
func ContactKey(id uint32) []byte { return strconv.AppendUint(nil, uint64(id), 10) }

// Reachable reports whether a broker accepts TCP connections.
func Reachable(ctx context.Context, brokers []string) error {
	var d net.Dialer
	for _, b := range brokers {
		c, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("no kafka broker reachable at %v", brokers)
}
