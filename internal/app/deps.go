package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/journeys"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/templates/links"
	"github.com/herald-dev/herald/throttle"
	"github.com/herald-dev/herald/webhooks"
)

// Deps holds the connections and components one process shares between its roles.
// Connections open lazily, so a command only dials the servers it uses.
type Deps struct {
	Cfg    Config
	Topics kafkax.Topics

	mu      sync.Mutex
	rdb     redis.UniversalClient
	ch      driver.Conn
	writers map[string]*kafka.Writer
	directs map[string]*kafkax.DirectWriter

	smsOnce sync.Once
	sms     *smsSenders
	smsErr  error

	emailOnce sync.Once
	email     *emailSenders
	emailErr  error

	tgOnce   sync.Once
	tg       *telegram.Channel
	tgErr    error
	lineOnce sync.Once
	line     *lineSenders
	lineErr  error
}

// NewDeps returns lazily-connecting dependencies for cfg.
func NewDeps(cfg Config) *Deps {
	cfg.Defaults()
	return &Deps{Cfg: cfg, Topics: kafkax.NewTopics(cfg.TopicPrefix), writers: map[string]*kafka.Writer{}}
}

// Redis returns the shared Redis client: a *redis.ClusterClient when HERALD_REDIS_URL
// names a Redis Cluster (redis+cluster://…), else a *redis.Client.
func (d *Deps) Redis() (redis.UniversalClient, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rdb != nil {
		return d.rdb, nil
	}
	rdb, err := newRedisClient(d.Cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	d.rdb = rdb
	return d.rdb, nil
}

// ClickHouse returns the shared ClickHouse connection.
func (d *Deps) ClickHouse(ctx context.Context) (driver.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch != nil {
		return d.ch, nil
	}
	opt, err := clickhouse.ParseDSN(d.Cfg.ClickHouseDSN)
	if err != nil {
		return nil, fmt.Errorf("HERALD_CLICKHOUSE_DSN: %w", err)
	}
	opt.DialTimeout = 5 * time.Second
	conn, err := clickhouse.Open(opt)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse at %s: %w", d.Cfg.ClickHouseDSN, err)
	}
	d.ch = conn
	return conn, nil
}

// Writer returns the shared writer of topic.
func (d *Deps) Writer(topic string) *kafka.Writer {
	d.mu.Lock()
	defer d.mu.Unlock()
	w, ok := d.writers[topic]
	if !ok {
		w = kafkax.NewWriter(d.Cfg.KafkaBrokers, topic)
		d.writers[topic] = w
	}
	return w
}

// GroupWriter returns the writer of a topic for callers that batch on their own (serve's
// group commit): each WriteMessages is one batch already, so it waits only
// GroupBatchTimeout for more before it is sent, not the shared writers' few ms.
func (d *Deps) GroupWriter(topic string) *kafka.Writer {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := "group\x00" + topic
	w, ok := d.writers[key]
	if !ok {
		w = kafkax.NewWriter(d.Cfg.KafkaBrokers, topic)
		w.BatchTimeout = GroupBatchTimeout
		d.writers[key] = w
	}
	return w
}

// GroupPublisher returns the direct writer of a topic for serve's group commit: each
// WriteMessages (one group) is produced at once, no batching timer, no handoff to the
// writer's goroutines (`herald bench webhooks`: see README, #16).
func (d *Deps) GroupPublisher(topic string) *kafkax.DirectWriter {
	d.mu.Lock()
	defer d.mu.Unlock()
	w, ok := d.directs[topic]
	if !ok {
		if d.directs == nil {
			d.directs = map[string]*kafkax.DirectWriter{}
		}
		w = kafkax.NewDirectWriter(d.Cfg.KafkaBrokers, topic)
		d.directs[topic] = w
	}
	return w
}

// GroupBatchTimeout is how long the group writers wait for more messages in a batch
// (measured with `herald bench webhooks`: 2 ms, the shared writers' wait, held serve to a
// third of the POSTs/s at 8 connections).
const GroupBatchTimeout = 200 * time.Microsecond

// Close flushes the Kafka writers and closes connections.
func (d *Deps) Close() error {
	if d.email != nil {
		_ = d.email.ch.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, w := range d.directs {
		_ = w.Close()
	}
	for _, w := range d.writers {
		errs = append(errs, w.Close())
	}
	if d.ch != nil {
		errs = append(errs, d.ch.Close())
	}
	if d.rdb != nil {
		errs = append(errs, d.rdb.Close())
	}
	return errors.Join(errs...)
}

// Components are the domain objects built on the connections.
type Components struct {
	Contacts  *segments.Store
	Templates *templates.Store
	Senders   *dispatcher.Senders
	Campaigns *dispatcher.Campaigns
	Tracker   *dispatcher.Tracker
	Ledger    *throttle.Ledger
	Policy    *throttle.Policy
	Governor  *throttle.Governor
	Delayed   *dispatcher.Delayed
	Reactor   *dispatcher.Reactor // carries out provider refusals (workers' and failed statuses')
	Keys      *apikeys.Store      // the /v1 API's keys
	Webhooks  *webhooks.Store     // outbound webhook subscriptions and deliveries
}

// Components builds the domain objects (Redis must be configured).
func (d *Deps) Components() (*Components, error) {
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	p := d.Cfg.Prefix
	contacts := segments.NewStore(rdb, p)
	var out, evs *kafka.Writer
	var ledger *throttle.Ledger
	if len(d.Cfg.KafkaBrokers) > 0 {
		out, evs = d.Writer(d.Topics.Outbound), d.Writer(d.Topics.Events)
		ledger = throttle.NewLedger(rdb, p, d.Writer(d.Topics.Consent))
		contacts.OnTagChange(tagEvents(evs, journeys.NewStore(rdb, p).WatchedTags, d.Cfg.Logger, time.Now))
	}
	cc := dispatcher.CampaignsConfig{Redis: rdb, Prefix: p, Segments: contacts, FanoutLease: d.Cfg.FanoutLease, Chunk: d.Cfg.FanoutChunk}
	if out != nil {
		cc.Outbound, cc.Events = out, evs
	}
	tracker := dispatcher.NewTracker(rdb, p)
	if d.Cfg.ClaimLease > 0 {
		tracker.WithLease(d.Cfg.ClaimLease)
	}
	c := &Components{
		Contacts:  contacts,
		Templates: templates.NewStore(rdb, p),
		Senders:   dispatcher.NewSenders(rdb, p),
		Campaigns: dispatcher.NewCampaigns(cc),
		Tracker:   tracker,
		Ledger:    ledger,
		Policy:    throttle.NewPolicy(rdb, p, d.Cfg.Now).WithCaps(d.Cfg.FrequencyCaps).WithQuietHours(d.Cfg.QuietHours),
		Governor:  throttle.NewGovernor(rdb, p),
		Delayed:   dispatcher.NewDelayed(rdb, p),
		Keys:      apikeys.NewStore(rdb, p),
		Webhooks:  webhooks.NewStore(rdb, p),
	}
	rc := dispatcher.ReactorConfig{Ledger: ledger, Policy: c.Policy, Campaigns: c.Campaigns, Contacts: contacts,
		Pushback: pushback{c.Policy, c.Governor}, UndeliverableFor: d.Cfg.UndeliverableFor, Logger: d.Cfg.Logger}
	if evs != nil {
		rc.Events = evs
	}
	c.Reactor = dispatcher.NewReactor(rc)
	return c, nil
}

// WhatsAppClient returns a Cloud API client for the configured base URL. Its pool keeps
// as many idle connections as a worker may have requests in flight (MaxInFlight; the
// worker sizes those from its senders' rate × latency), so connections are reused, not
// dialled again after every burst.
func (d *Deps) WhatsAppClient() *graph.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	idle := max(d.Cfg.MaxInFlight, 256)
	tr.MaxIdleConns = idle
	tr.MaxIdleConnsPerHost = idle
	tr.IdleConnTimeout = 90 * time.Second
	return graph.NewClient(graph.ClientConfig{BaseURL: d.Cfg.WhatsAppURL, APIVersion: d.Cfg.APIVersion,
		HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}})
}

// Links returns the click-tracking codec and tracker, or nils when no key is configured.
func (d *Deps) Links() (*links.Codec, *links.Tracker, error) {
	if d.Cfg.ClickKey == "" {
		return nil, nil, nil
	}
	codec, err := links.NewCodec([]byte(d.Cfg.ClickKey))
	if err != nil {
		return nil, nil, fmt.Errorf("HERALD_CLICK_KEY: %w", err)
	}
	if d.Cfg.ClickBaseURL == "" {
		return nil, nil, errors.New("HERALD_CLICK_BASE_URL is required with HERALD_CLICK_KEY: the public origin of herald serve")
	}
	return codec, &links.Tracker{Codec: codec, Base: strings.TrimSuffix(d.Cfg.ClickBaseURL, "/")}, nil
}

// Checkpointer returns the consent ledger's checkpointer: heads from Redis, checkpoints
// stored in ClickHouse (connected at the first checkpoint), signed with Cfg.LedgerKey.
func (d *Deps) Checkpointer() (*throttle.Checkpointer, error) {
	if d.Cfg.LedgerKey == nil {
		return nil, errors.New("no ledger signing key: set --ledger-signing-key or HERALD_LEDGER_SIGNING_KEY (`herald ledger keygen` makes one)")
	}
	if d.Cfg.ClickHouseDSN == "" {
		return nil, errors.New("ledger checkpoints are stored in ClickHouse: set --clickhouse-dsn or HERALD_CLICKHOUSE_DSN where HERALD_LEDGER_SIGNING_KEY is set")
	}
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	return throttle.NewCheckpointer(throttle.CheckpointerConfig{Redis: rdb, Prefix: d.Cfg.Prefix, Store: checkpointStore{d},
		Key: d.Cfg.LedgerKey, Every: d.Cfg.LedgerCheckpointEvery, Logger: d.Cfg.Logger}), nil
}

// checkpointStore is analytics.CheckpointStore on the shared ClickHouse connection,
// opened when first used (so a scheduler starts while ClickHouse is away).
type checkpointStore struct{ d *Deps }

func (s checkpointStore) store(ctx context.Context) (*analytics.CheckpointStore, error) {
	conn, err := s.d.ClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	return analytics.NewCheckpointStore(conn), nil
}

func (s checkpointStore) LastCheckpoint(ctx context.Context) (throttle.Checkpoint, bool, error) {
	st, err := s.store(ctx)
	if err != nil {
		return throttle.Checkpoint{}, false, err
	}
	return st.LastCheckpoint(ctx)
}

func (s checkpointStore) SaveHeads(ctx context.Context, cp throttle.Checkpoint, heads []throttle.CheckpointHead) error {
	st, err := s.store(ctx)
	if err != nil {
		return err
	}
	return st.SaveHeads(ctx, cp, heads)
}

func (s checkpointStore) SaveCheckpoint(ctx context.Context, cp throttle.Checkpoint) error {
	st, err := s.store(ctx)
	if err != nil {
		return err
	}
	return st.SaveCheckpoint(ctx, cp)
}
