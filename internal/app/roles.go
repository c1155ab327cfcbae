package app

import (
	"context"
	"errors"
	"fmt"
	"github.com/herald-dev/herald/throttle"
	"golang.org/x/sync/errgroup"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/email"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/journeys"
	"github.com/herald-dev/herald/webhooks"
)

// Migrate creates the Kafka topics and the ClickHouse database and schema. Idempotent.
func Migrate(ctx context.Context, d *Deps) ([]string, error) {
	if err := kafkax.EnsureTopics(ctx, d.Cfg.KafkaBrokers, d.Topics.All(), d.Cfg.Partitions); err != nil {
		return nil, err
	}
	if err := ensureDatabase(ctx, d.Cfg.ClickHouseDSN); err != nil {
		return nil, err
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	applied, err := analytics.Migrate(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("migrate clickhouse: %w", err)
	}
	return applied, nil
}

// ensureDatabase creates the DSN's database when it does not exist.
func ensureDatabase(ctx context.Context, dsn string) error {
	opt, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("HERALD_CLICKHOUSE_DSN: %w", err)
	}
	db := opt.Auth.Database
	if db == "" || db == "default" {
		return nil
	}
	if strings.ContainsAny(db, "`'\" ;") {
		return fmt.Errorf("clickhouse database name %q is not a plain identifier", db)
	}
	opt.Auth.Database = ""
	conn, err := clickhouse.Open(opt)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+db+"`"); err != nil {
		return fmt.Errorf("create clickhouse database %s: %w", db, err)
	}
	return nil
}

// ServeHandler builds the webhook server's handler.
func ServeHandler(d *Deps) (http.Handler, error) {
	s, err := newServer(d)
	if err != nil {
		return nil, err
	}
	return s.Handler(), nil
}

// newServer builds the webhook server.
func newServer(d *Deps) (*server.Server, error) {
	c, err := d.Components()
	if err != nil {
		return nil, err
	}
	rdb, _ := d.Redis()
	codec, _, err := d.Links()
	if err != nil {
		return nil, err
	}
	var track *server.TrackConfig
	if d.Cfg.TrackToken != "" {
		conn, err := d.ClickHouse(context.Background())
		if err != nil {
			return nil, fmt.Errorf("conversion tracking needs ClickHouse for attribution: %w", err)
		}
		track = &server.TrackConfig{Token: d.Cfg.TrackToken, Contacts: c.Contacts, Attribution: analytics.NewAttributor(conn, 0),
			Events: d.Writer(d.Topics.Events), Logger: d.Cfg.Logger}
	}
	var smsHooks *server.SMSConfig
	if smsCh, err := d.SMS(); err == nil {
		smsHooks = &server.SMSConfig{Channel: smsCh.ch, PublicURL: d.Cfg.publicURL(),
			Refresh: func(ctx context.Context) error { return smsCh.refresh(ctx, c.Senders) }}
	} else {
		d.Cfg.Logger.Warn("SMS webhooks off", "err", err)
	}
	tgHooks, err := telegramHooks(context.Background(), d, c)
	if err != nil {
		return nil, fmt.Errorf("telegram webhook: %w", err)
	}
	var lineHooks *server.LINEConfig
	if lineCh, err := d.LINE(); err == nil {
		lineHooks = &server.LINEConfig{Channel: lineCh.ch, Refresh: func(ctx context.Context) error { return lineCh.refresh(ctx, c.Senders) }}
	} else {
		d.Cfg.Logger.Warn("LINE webhooks off", "err", err)
	}
	var api http.Handler
	if d.Cfg.API != nil {
		if api, err = d.Cfg.API(d); err != nil {
			return nil, fmt.Errorf("/v1 API: %w", err)
		}
	}
	s := server.New(server.Config{
		API: api, Console: d.Cfg.consoleHandler(api), Clicks: codec, Track: track, SMS: smsHooks, Telegram: tgHooks, LINE: lineHooks,
		AppSecret: d.Cfg.AppSecret, VerifyToken: d.Cfg.VerifyToken,
		Events: d.GroupPublisher(d.Topics.Events), Inbound: d.GroupPublisher(d.Topics.Inbound),
		Tracker: c.Tracker, Policy: c.Policy, Ledger: c.Ledger, Reactor: c.Reactor, Contacts: c.Contacts,
		Failover: d.failover(c),
		Ready: func(ctx context.Context) error {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return kafkax.Reachable(ctx, d.Cfg.KafkaBrokers)
		},
		Logger: d.Cfg.Logger, Registry: d.Cfg.Registry,
	})
	return s, nil
}

// Serve runs the HTTP server (webhooks, metrics, health) on l until ctx is cancelled,
// and the SMTP receiver of email bounces and complaints when HERALD_BOUNCE_LISTEN is set.
func Serve(ctx context.Context, d *Deps, l net.Listener) error {
	s, err := newServer(d)
	if err != nil {
		return err
	}
	if d.Cfg.BounceListen == "" {
		return ServeHTTP(ctx, l, s.Handler())
	}
	key, err := d.MessageKey(ctx)
	if err != nil {
		return err
	}
	rcv, err := email.NewReceiver(email.ReceiverConfig{Addr: d.Cfg.BounceListen, Listener: d.Cfg.BounceListener, Handle: s.IngestReports, MessageKey: key, Logger: d.Cfg.Logger})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ServeHTTP(gctx, l, s.Handler()) })
	g.Go(func() error { return rcv.Run(gctx) })
	return g.Wait()
}

// ServeHTTP serves h on l and shuts down gracefully (bounded) when ctx ends.
func ServeHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// Worker runs a send worker until ctx is cancelled.
func Worker(ctx context.Context, d *Deps) error {
	c, err := d.Components()
	if err != nil {
		return err
	}
	_, tracker, err := d.Links()
	if err != nil {
		return err
	}
	channels, err := d.Channels()
	if err != nil {
		return err
	}
	rdb, err := d.Redis()
	if err != nil {
		return err
	}
	w := dispatcher.NewWorker(dispatcher.WorkerConfig{
		Brokers: d.Cfg.KafkaBrokers, Topics: d.Topics,
		Campaigns: c.Campaigns, Tracker: c.Tracker, Senders: c.Senders,
		Contacts: c.Contacts, Templates: templatesCache(c), Policy: c.Policy, Governor: c.Governor,
		Channels: channels, Links: tracker,
		Events: d.Writer(d.Topics.Events), Delayed: c.Delayed, DLQ: d.Writer(d.Topics.DLQ),
		Pushback: pushback{c.Policy, c.Governor}, Ledger: c.Ledger, Reactor: c.Reactor, MaxInFlight: d.Cfg.MaxInFlight,
		Failover: d.failover(c), Breaker: d.breaker(),
		Logger: d.Cfg.Logger, Registerer: d.Cfg.Registry,
		Journeys: journeys.NewExits(rdb, d.Cfg.Prefix),
	})
	// Every worker also runs the journey engine (timers and triggers; any number may run).
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(ctx) })
	if !d.Cfg.NoJourneys {
		g.Go(func() error { return Journeys(ctx, d) })
	}
	if d.Cfg.NoScheduler {
		return g.Wait()
	}
	// Every worker also runs a scheduler: one of them leads and moves due delayed jobs.
	g.Go(func() error { return Scheduler(ctx, d) })
	return g.Wait()
}

// Scheduler moves due delayed jobs (deferrals, retries) back to herald.outbound until
// ctx is cancelled. Several may run: one leads at a time.
func Scheduler(ctx context.Context, d *Deps) error {
	c, err := d.Components()
	if err != nil {
		return err
	}
	rdb, err := d.Redis()
	if err != nil {
		return err
	}
	s := &dispatcher.Scheduler{Delayed: c.Delayed, Outbound: d.Writer(d.Topics.Outbound), Redis: rdb, Prefix: d.Cfg.Prefix, Logger: d.Cfg.Logger,
		Campaigns: c.Campaigns, Tracker: c.Tracker, StaleAfter: d.Cfg.StaleSendAfter, Now: d.Cfg.Now}
	if d.Cfg.Registry != nil {
		s.RegisterMetrics(d.Cfg.Registry)
	}
	if d.Cfg.LedgerKey != nil {
		cp, err := d.Checkpointer()
		if err != nil {
			return err
		}
		// The leader asks whether a checkpoint is due (the last stored one is
		// LedgerCheckpointEvery old) a few times per interval, at most once a minute.
		every := min(max(d.Cfg.LedgerCheckpointEvery/10, time.Second), time.Minute)
		s.Jobs = append(s.Jobs, dispatcher.LeaderJob{Name: "ledger checkpoint", Every: every, Run: func(ctx context.Context) error {
			_, _, err := cp.Tick(ctx)
			return err
		}})
	}
	// Recurring campaigns: the leader fires due schedule instants (each claimed once,
	// whatever process fires it).
	firer, err := Firer(d, c)
	if err != nil {
		return err
	}
	if !d.Cfg.NoRecurring {
		s.Jobs = append(s.Jobs, dispatcher.LeaderJob{Name: "recurring campaigns", Every: ScheduleTick, Run: func(ctx context.Context) error {
			_, err := firer.Tick(ctx)
			return err
		}})
	}
	return s.Run(ctx)
}

// Sink runs the ClickHouse event sink until ctx is cancelled.
func Sink(ctx context.Context, d *Deps) error {
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		return err
	}
	s := analytics.NewSink(analytics.SinkConfig{Brokers: d.Cfg.KafkaBrokers, Topics: d.Topics, Conn: conn,
		Logger: d.Cfg.Logger, Registerer: d.Cfg.Registry})
	return s.Run(ctx)
}

// Deliver runs the outbound webhook deliverer until ctx is cancelled: it consumes
// herald.events (group herald-webhooks) and POSTs signed events to subscriptions. Run
// as many as you like: they share the partitions and the due deliveries.
func Deliver(ctx context.Context, d *Deps) error {
	c, err := d.Components()
	if err != nil {
		return err
	}
	w := d.Cfg.Webhooks
	dl, err := webhooks.New(webhooks.Config{Brokers: d.Cfg.KafkaBrokers, Topic: d.Topics.Events, Store: c.Webhooks,
		Timeout: w.Timeout, Concurrency: w.Concurrency, MaxInFlight: w.MaxInFlight, MinBackoff: w.MinBackoff, MaxBackoff: w.MaxBackoff,
		Logger: d.Cfg.Logger, Registerer: d.Cfg.Registry})
	if err != nil {
		return err
	}
	return dl.Run(ctx)
}

// MetricsHandler serves /metrics from reg and a /healthz, for roles without the serve HTTP.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// pushback hands provider refusals to the throttle: recipients to the policy (131056
// backs off, 131049 holds marketing), senders to the governor (130429 slows, 131048 holds).
type pushback struct {
	policy   *throttle.Policy
	governor *throttle.Governor
}

func (p pushback) Recipient(ctx context.Context, sender string, contact uint32, sig throttle.Signal, at time.Time) error {
	return p.policy.Pushback(ctx, sender, contact, sig, at)
}

func (p pushback) Sender(ctx context.Context, sender string, sig throttle.Signal) error {
	return p.governor.Pushback(ctx, sender, sig)
}
