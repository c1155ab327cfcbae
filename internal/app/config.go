// Package app wires Herald's parts into the roles the binary runs (serve, worker, sink,
// sandbox, dev, demo) and holds the use cases the CLI and the /v1 API share (import,
// erase, campaign and schedule creation, consent changes and state, contact upserts,
// following a campaign): each takes typed input, returns a typed result and refuses input with a
// *FieldError naming the field, so the CLI names the flag and the API points at the
// JSON. It turns a typed Config into connections and components; the rules themselves
// stay in the domain packages.
package app

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/throttle"
)

// Config is everything a role needs to reach the outside world. The CLI fills it from
// flags and HERALD_* environment variables.
type Config struct {
	KafkaBrokers  []string // HERALD_KAFKA_BROKERS
	RedisURL      string   // HERALD_REDIS_URL, redis://host:port/db, or redis+cluster://host1:port1,host2:port2,…/ (see parseRedisURL)
	ClickHouseDSN string   // HERALD_CLICKHOUSE_DSN, clickhouse://host:9000/db
	Prefix        string   // HERALD_REDIS_PREFIX: every Redis key starts with it
	TopicPrefix   string   // HERALD_TOPIC_PREFIX: topic names are prefix + outbound, events, ...
	Partitions    int      // partitions per topic when migrate creates them

	FrequencyCaps []throttle.Cap // HERALD_FREQUENCY_CAPS, e.g. marketing:1/72h,marketing:3/168h
	NoScheduler   bool           // worker: do not run the delayed-job scheduler in this process
	NoRecurring   bool           // scheduler: fire no recurring campaigns in this process (a fault test runs firers apart)
	NoJourneys    bool           // worker: do not run the journey engine in this process
	// JourneyClock is the journey engine's clock (nil: time.Now); tests inject one.
	JourneyClock   func() time.Time
	QuietHours     throttle.QuietHours // HERALD_QUIET_HOURS, HERALD_ALLOWED_DAYS: the default for campaigns without their own
	ClaimLease     time.Duration       // HERALD_CLAIM_LEASE: a dead worker's unsent claim is held this long (default 20s)
	StaleSendAfter time.Duration       // HERALD_STALE_SEND_AFTER: re-queue sends in doubt this long (default 10m)
	FanoutLease    time.Duration       // HERALD_FANOUT_LEASE: a fan-out whose process died is finished by the scheduler after this (default 30s)
	FanoutChunk    int                 // jobs per fan-out write and checkpoint (default 5000)
	// HERALD_UNDELIVERABLE_FOR: a contact the provider cannot reach (131026) is skipped on
	// that channel this long (default 30 days)
	UndeliverableFor time.Duration
	MaxInFlight      int // HERALD_MAX_IN_FLIGHT: a worker's provider requests at once, at most (default 1024)
	// Breaker tunes the per-sender circuit breakers of channel failover
	// (HERALD_BREAKER_WINDOW, _MIN_REQUESTS, _ERROR_RATE, _OPEN_FOR, _PROBES); zero: defaults.
	Breaker dispatcher.BreakerConfig

	HTTPAddr    string // serve: listen address
	AppSecret   string // HERALD_WHATSAPP_APP_SECRET: webhook signatures
	VerifyToken string // HERALD_WHATSAPP_VERIFY_TOKEN: webhook subscription challenge
	WhatsAppURL string // HERALD_WHATSAPP_API_URL: Cloud API base (the sandbox in dev)
	SMSAPIURL   string // HERALD_SMS_API_URL: the Twilio-style Messages API base (the sandbox in dev)
	// HERALD_TELEGRAM_API_URL: the Telegram Bot API base (the sandbox in dev; default
	// https://api.telegram.org)
	TelegramAPIURL string
	LINEAPIURL     string // HERALD_LINE_API_URL: the LINE Messaging API base (the sandbox in dev)
	// HERALD_BOUNCE_LISTEN: serve's SMTP listener for email bounces (DSN) and complaints
	// (ARF): point the MX of the senders' return-path domain at it ("": off)
	BounceListen string
	// BounceListener, when set, is the listener of BounceListen, already open: the dev
	// stack holds its port from the start instead of freeing it for serve to listen on.
	BounceListener net.Listener
	// EmailMaxRetryAfter caps how long a greylisted or full-mailbox email waits before
	// its retry (0: the code table's, up to 30 min); dev and the demo set seconds
	EmailMaxRetryAfter time.Duration
	PublicURL          string // HERALD_PUBLIC_URL: serve's public origin as providers reach it (SMS status callbacks; default HERALD_CLICK_BASE_URL)
	APIVersion         string // Graph API version, e.g. v21.0

	ClickKey     string // HERALD_CLICK_KEY: signs tracked links (same on serve and worker; ≥ 16 bytes)
	ClickBaseURL string // HERALD_CLICK_BASE_URL: public origin of serve, e.g. https://t.example.com
	TrackToken   string // HERALD_TRACK_TOKEN: bearer token of POST /track/conversion (off when empty)

	// LedgerKey (HERALD_LEDGER_SIGNING_KEY) signs the consent ledger's checkpoints, which
	// the scheduler's leader takes every LedgerCheckpointEvery (HERALD_LEDGER_CHECKPOINT_EVERY,
	// default 1h) into ClickHouse; no checkpoints without it.
	LedgerKey             ed25519.PrivateKey
	LedgerCheckpointEvery time.Duration

	// API builds the /v1 HTTP API that serve mounts (the CLI sets internal/api's
	// constructor; nil: serve has no API). A function, because the API is built on these
	// Deps and calls this package's use cases.
	API func(*Deps) (http.Handler, error)
	// APIRate and APIBurst (HERALD_API_RATE, HERALD_API_BURST) limit each API key's
	// requests per second, across every serve process (a key may have its own rate).
	APIRate  float64
	APIBurst int
	// APIMaxImportBytes (HERALD_API_MAX_IMPORT_BYTES) is the largest file POST /v1/imports
	// accepts; 0: 256 MiB.
	APIMaxImportBytes int64
	// Console is the web console serve mounts at /console/ (the CLI sets package
	// console's handler; nil: none). It talks to the API only, so it needs API too.
	Console http.Handler

	// Webhooks tunes the outbound webhook deliverer (herald deliver, and dev).
	Webhooks WebhookConfig

	Logger   *slog.Logger
	Registry *prometheus.Registry

	// Now is the clock of the policy, the scheduler and recurring campaigns (nil:
	// time.Now); tests inject one to move time by hand.
	Now func() time.Time
}

// WebhookConfig tunes the outbound webhook deliverer; zero values take the webhooks
// package's defaults.
type WebhookConfig struct {
	Timeout     time.Duration // HERALD_WEBHOOK_TIMEOUT: one POST's limit (10s)
	Concurrency int           // HERALD_WEBHOOK_CONCURRENCY: POSTs at once per subscription (8)
	MaxInFlight int           // HERALD_WEBHOOK_MAX_IN_FLIGHT: POSTs at once per process (256)
	MinBackoff  time.Duration // HERALD_WEBHOOK_MIN_BACKOFF: the wait after a first failure (5s), doubling
	MaxBackoff  time.Duration // HERALD_WEBHOOK_MAX_BACKOFF: the longest wait between attempts (1h)
}

// Defaults fills what is unset.
func (c *Config) Defaults() {
	if c.Prefix == "" {
		c.Prefix = "herald:"
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.LedgerCheckpointEvery <= 0 {
		c.LedgerCheckpointEvery = time.Hour
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "herald."
	}
	if c.Partitions <= 0 {
		c.Partitions = 12
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8080"
	}
	if c.WhatsAppURL == "" {
		c.WhatsAppURL = "https://graph.facebook.com"
	}
	if c.APIVersion == "" {
		c.APIVersion = "v21.0"
	}
	if c.APIRate <= 0 {
		c.APIRate = 20
	}
	if c.APIBurst <= 0 {
		c.APIBurst = 40
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
		c.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
}

// Needs names the servers a command uses, so Validate only asks for those.
type Needs struct{ Kafka, Redis, ClickHouse bool }

// Validate reports missing or malformed settings, naming the flag and variable to set.
func (c Config) Validate(n Needs) error {
	var errs []error
	if n.Kafka && len(c.KafkaBrokers) == 0 {
		errs = append(errs, errors.New("no Kafka brokers: set --kafka-brokers or HERALD_KAFKA_BROKERS (herald dev prints them)"))
	}
	if n.Redis {
		if c.RedisURL == "" {
			errs = append(errs, errors.New("no Redis: set --redis-url or HERALD_REDIS_URL"))
		} else if _, _, err := parseRedisURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("HERALD_REDIS_URL %q: %w", c.RedisURL, err))
		}
	}
	if n.ClickHouse {
		if c.ClickHouseDSN == "" {
			errs = append(errs, errors.New("no ClickHouse: set --clickhouse-dsn or HERALD_CLICKHOUSE_DSN"))
		} else if !strings.HasPrefix(c.ClickHouseDSN, "clickhouse://") && !strings.HasPrefix(c.ClickHouseDSN, "tcp://") {
			errs = append(errs, fmt.Errorf("HERALD_CLICKHOUSE_DSN %q: want clickhouse://host:9000/database", c.ClickHouseDSN))
		}
	}
	if strings.ContainsAny(c.Prefix, " \n") {
		errs = append(errs, fmt.Errorf("redis prefix %q must not contain spaces", c.Prefix))
	}
	return errors.Join(errs...)
}

// consoleHandler is the console to mount: none without the API it talks to.
func (c Config) consoleHandler(api http.Handler) http.Handler {
	if api == nil {
		return nil
	}
	return c.Console
}
