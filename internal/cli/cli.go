// Package cli is Herald's command line: urfave/cli commands that turn flags and HERALD_*
// environment variables into an app.Config and call the app and domain packages. Exit
// codes: 0 success, 1 failure, 2 bad usage or bad input.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/console"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/api"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/jsonx"
	"github.com/herald-dev/herald/throttle"
)

// UsageError marks a failure caused by the user's input (exit code 2).
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usage(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

// Run runs the command line and returns the process exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Logs (from the roles' goroutines) and progress bars write stderr at once: a writer
	// that is not a file gets its writes one at a time.
	stdout, stderr = serialized(stdout), serialized(stderr)
	a := &cli.App{
		Name:                 "herald",
		Usage:                "high-throughput campaign and broadcast dispatcher (WhatsApp Cloud API first)",
		Version:              Version,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Flags:                globalFlags(),
		ExitErrHandler:       func(*cli.Context, error) {}, // we map errors to codes below
		Commands: []*cli.Command{
			demoCommand(), devCommand(), sandboxCommand(),
			serveCommand(), workerCommand(), schedulerCommand(), sinkCommand(), deliverCommand(), migrateCommand(),
			contactsCommand(), segmentsCommand(), consentCommand(), sendersCommand(), templatesCommand(), campaignsCommand(), schedulesCommand(), reportCommand(), benchCommand(), tagsCommand(),
			auditCommand(), trackCommand(), ledgerCommand(), keysCommand(), webhooksCommand(), telegramCommand(),
			journeysCommand(), eventsCommand(),
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return UsageError{err} },
		Before: func(c *cli.Context) error {
			p := c.String("cpu-profile")
			if p == "" {
				return nil
			}
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return err
			}
			stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
			return nil
		},
	}
	defer func() { stopProfile() }()
	err := a.RunContext(ctx, interspersed(a, args))
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "herald:", err)
	var ue UsageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "flag provided but not defined") || strings.Contains(err.Error(), "Required flag") {
		return 2
	}
	return 1
}

// stopProfile ends a --cpu-profile started by Run.
var stopProfile = func() {}

func globalFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "cpu-profile", Usage: "write a CPU profile (pprof) of this process to the file", EnvVars: []string{"HERALD_CPU_PROFILE"}},
		&cli.StringFlag{Name: "kafka-brokers", Usage: "Kafka bootstrap brokers, comma-separated", EnvVars: []string{"HERALD_KAFKA_BROKERS"}},
		&cli.StringFlag{Name: "redis-url", Usage: "Redis URL (redis://host:port/db)", EnvVars: []string{"HERALD_REDIS_URL"}},
		&cli.StringFlag{Name: "clickhouse-dsn", Usage: "ClickHouse DSN (clickhouse://host:9000/database)", EnvVars: []string{"HERALD_CLICKHOUSE_DSN"}},
		&cli.StringFlag{Name: "redis-prefix", Value: "herald:", Usage: "prefix of every Redis key", EnvVars: []string{"HERALD_REDIS_PREFIX"}},
		&cli.StringFlag{Name: "topic-prefix", Value: "herald.", Usage: "prefix of every Kafka topic", EnvVars: []string{"HERALD_TOPIC_PREFIX"}},
		&cli.StringFlag{Name: "whatsapp-api-url", Value: "https://graph.facebook.com", Usage: "WhatsApp Cloud API base URL (the sandbox's in dev)", EnvVars: []string{"HERALD_WHATSAPP_API_URL"}},
		&cli.StringFlag{Name: "whatsapp-api-version", Value: "v21.0", Usage: "Graph API version", EnvVars: []string{"HERALD_WHATSAPP_API_VERSION"}},
		&cli.StringFlag{Name: "whatsapp-app-secret", Usage: "Meta app secret: verifies webhook signatures", EnvVars: []string{"HERALD_WHATSAPP_APP_SECRET"}},
		&cli.StringFlag{Name: "whatsapp-verify-token", Usage: "webhook subscription verify token", EnvVars: []string{"HERALD_WHATSAPP_VERIFY_TOKEN"}},
		&cli.StringFlag{Name: "click-key", Usage: "secret that signs tracked links (same on serve and worker)", EnvVars: []string{"HERALD_CLICK_KEY"}},
		&cli.StringFlag{Name: "click-base-url", Usage: "public origin of herald serve for tracked links, e.g. https://t.example.com", EnvVars: []string{"HERALD_CLICK_BASE_URL"}},
		&cli.StringFlag{Name: "track-token", Usage: "bearer token of POST /track/conversion on serve (off when empty)", EnvVars: []string{"HERALD_TRACK_TOKEN"}},
		&cli.DurationFlag{Name: "claim-lease", Value: 20 * time.Second, Usage: "how long a job claimed by a worker that died before sending stays held", EnvVars: []string{"HERALD_CLAIM_LEASE"}},
		&cli.DurationFlag{Name: "stale-send-after", Value: 10 * time.Minute, Usage: "re-queue a send started this long ago that has neither an outcome nor a status webhook (its worker died before the provider got it)", EnvVars: []string{"HERALD_STALE_SEND_AFTER"}},
		&cli.DurationFlag{Name: "fanout-lease", Value: 30 * time.Second, Usage: "how long a campaign's fan-out whose process died (a launch killed half-way) waits before the scheduler finishes it from its checkpoint", EnvVars: []string{"HERALD_FANOUT_LEASE"}},
		&cli.StringFlag{Name: "sms-api-url", Usage: "the Twilio-style Messages API base URL", EnvVars: []string{"HERALD_SMS_API_URL"}},
		&cli.StringFlag{Name: "telegram-api-url", Usage: "the Telegram Bot API base URL (default https://api.telegram.org)", EnvVars: []string{"HERALD_TELEGRAM_API_URL"}},
		&cli.StringFlag{Name: "line-api-url", Value: "https://api.line.me", Usage: "the LINE Messaging API base URL (the sandbox's in dev)", EnvVars: []string{"HERALD_LINE_API_URL"}},
		&cli.StringFlag{Name: "public-url", Usage: "serve's public origin as providers reach it, e.g. https://herald.example.com (SMS status callbacks are signed over it; default HERALD_CLICK_BASE_URL)", EnvVars: []string{"HERALD_PUBLIC_URL"}},
		&cli.DurationFlag{Name: "undeliverable-for", Value: 30 * 24 * time.Hour, Usage: "how long a contact the provider cannot reach (WhatsApp 131026) is skipped as undeliverable on that channel", EnvVars: []string{"HERALD_UNDELIVERABLE_FOR"}},
		&cli.DurationFlag{Name: "breaker-window", Value: 10 * time.Second, Usage: "channel failover: the sliding window over which a sender's circuit breaker judges its error rate", EnvVars: []string{"HERALD_BREAKER_WINDOW"}},
		&cli.IntFlag{Name: "breaker-min-requests", Value: 20, Usage: "channel failover: requests in the window before a sender's breaker may open", EnvVars: []string{"HERALD_BREAKER_MIN_REQUESTS"}},
		&cli.Float64Flag{Name: "breaker-error-rate", Value: 0.5, Usage: "channel failover: share of errors (transport, timeouts, 5xx) that opens a sender's breaker", EnvVars: []string{"HERALD_BREAKER_ERROR_RATE"}},
		&cli.DurationFlag{Name: "breaker-open-for", Value: 30 * time.Second, Usage: "channel failover: how long an open breaker sends nothing before probing", EnvVars: []string{"HERALD_BREAKER_OPEN_FOR"}},
		&cli.IntFlag{Name: "breaker-probes", Value: 3, Usage: "channel failover: probe sends of a half-open breaker; that many successes close it", EnvVars: []string{"HERALD_BREAKER_PROBES"}},
		&cli.IntFlag{Name: "max-in-flight", Value: 1024, Usage: "a worker's concurrent provider requests, at most (it keeps twice each active sender's rate × latency, from 64 up to this)", EnvVars: []string{"HERALD_MAX_IN_FLIGHT"}},
		&cli.StringFlag{Name: "quiet-hours", Usage: "default quiet period in each recipient's local time, e.g. 21:00-08:00 (campaigns may set their own)", EnvVars: []string{"HERALD_QUIET_HOURS"}},
		&cli.StringFlag{Name: "allowed-days", Usage: "default days sends are allowed on, in the recipient's week, e.g. mon-sat", EnvVars: []string{"HERALD_ALLOWED_DAYS"}},
		&cli.StringFlag{Name: "frequency-caps", Usage: "per-contact caps by category, e.g. marketing:1/72h,marketing:3/168h", EnvVars: []string{"HERALD_FREQUENCY_CAPS"}},
		&cli.Int64Flag{Name: "api-max-import-bytes", Value: 256 << 20, Usage: "the largest file POST /v1/imports accepts (held in memory while it imports)", EnvVars: []string{"HERALD_API_MAX_IMPORT_BYTES"}},
		&cli.Float64Flag{Name: "api-rate", Value: 20, Usage: "requests per second each API key may make to the /v1 API, across every serve process (a key may have its own --rate)", EnvVars: []string{"HERALD_API_RATE"}},
		&cli.IntFlag{Name: "api-burst", Value: 40, Usage: "requests an API key may make at once before its rate applies", EnvVars: []string{"HERALD_API_BURST"}},
		&cli.DurationFlag{Name: "webhook-timeout", Value: 10 * time.Second, Usage: "deliver: one outbound webhook POST's time limit", EnvVars: []string{"HERALD_WEBHOOK_TIMEOUT"}},
		&cli.IntFlag{Name: "webhook-concurrency", Value: 8, Usage: "deliver: POSTs at once to one webhook subscription", EnvVars: []string{"HERALD_WEBHOOK_CONCURRENCY"}},
		&cli.IntFlag{Name: "webhook-max-in-flight", Value: 256, Usage: "deliver: POSTs at once in one process", EnvVars: []string{"HERALD_WEBHOOK_MAX_IN_FLIGHT"}},
		&cli.DurationFlag{Name: "webhook-min-backoff", Value: 5 * time.Second, Usage: "deliver: the wait after a webhook's first failed attempt (doubling, with jitter)", EnvVars: []string{"HERALD_WEBHOOK_MIN_BACKOFF"}},
		&cli.DurationFlag{Name: "webhook-max-backoff", Value: time.Hour, Usage: "deliver: the longest wait between a webhook's attempts (retries end 72 h after the event)", EnvVars: []string{"HERALD_WEBHOOK_MAX_BACKOFF"}},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"HERALD_LOG_LEVEL"}},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"HERALD_LOG_FORMAT"}},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table, json or csv (csv where a command has rows)", EnvVars: []string{"HERALD_OUTPUT"}},
	}, append(ledgerFlags(), remoteFlags()...)...)
}

// config builds the app configuration from the global flags.
func config(c *cli.Context) (app.Config, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return app.Config{}, usage("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	var h slog.Handler
	ho := &slog.HandlerOptions{Level: lvl}
	switch c.String("log-format") {
	case "json":
		h = slog.NewJSONHandler(c.App.ErrWriter, ho)
	case "text":
		h = slog.NewTextHandler(c.App.ErrWriter, ho)
	default:
		return app.Config{}, usage("--log-format %q: want text or json", c.String("log-format"))
	}
	switch c.String("output") {
	case "table", "json", "csv":
	default:
		return app.Config{}, usage("--output %q: want table, json or csv", c.String("output"))
	}
	var brokers []string
	for _, b := range strings.Split(c.String("kafka-brokers"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	caps, err := throttle.ParseCaps(c.String("frequency-caps"))
	if err != nil {
		return app.Config{}, usage("--frequency-caps: %w", err)
	}
	quiet, err := throttle.ParseQuietHours(c.String("quiet-hours"))
	if err != nil {
		return app.Config{}, usage("--quiet-hours: %w", err)
	}
	if quiet.Days, err = throttle.ParseDays(c.String("allowed-days")); err != nil {
		return app.Config{}, usage("--allowed-days: %w", err)
	}
	cfg := app.Config{
		FrequencyCaps: caps, QuietHours: quiet, ClickKey: c.String("click-key"), ClickBaseURL: c.String("click-base-url"), TrackToken: c.String("track-token"),
		KafkaBrokers: brokers, RedisURL: c.String("redis-url"), ClickHouseDSN: c.String("clickhouse-dsn"),
		Prefix: c.String("redis-prefix"), TopicPrefix: c.String("topic-prefix"),
		WhatsAppURL: c.String("whatsapp-api-url"), APIVersion: c.String("whatsapp-api-version"),
		AppSecret: c.String("whatsapp-app-secret"), VerifyToken: c.String("whatsapp-verify-token"),
		ClaimLease: c.Duration("claim-lease"), StaleSendAfter: c.Duration("stale-send-after"), MaxInFlight: c.Int("max-in-flight"),
		FanoutLease: c.Duration("fanout-lease"), UndeliverableFor: c.Duration("undeliverable-for"),
		Breaker: dispatcher.BreakerConfig{Window: c.Duration("breaker-window"), MinRequests: c.Int("breaker-min-requests"),
			ErrorRate: c.Float64("breaker-error-rate"), OpenFor: c.Duration("breaker-open-for"), Probes: c.Int("breaker-probes")},
		SMSAPIURL: c.String("sms-api-url"), PublicURL: c.String("public-url"), TelegramAPIURL: c.String("telegram-api-url"), LINEAPIURL: c.String("line-api-url"),
		API: api.Handler, Console: console.Handler(), APIRate: c.Float64("api-rate"), APIBurst: c.Int("api-burst"), APIMaxImportBytes: c.Int64("api-max-import-bytes"),
		Webhooks: app.WebhookConfig{Timeout: c.Duration("webhook-timeout"), Concurrency: c.Int("webhook-concurrency"),
			MaxInFlight: c.Int("webhook-max-in-flight"), MinBackoff: c.Duration("webhook-min-backoff"), MaxBackoff: c.Duration("webhook-max-backoff")},
		Logger: slog.New(h),
	}
	if err := ledgerConfig(c, &cfg); err != nil {
		return app.Config{}, err
	}
	cfg.Defaults()
	return cfg, nil
}

// deps validates the configuration for what the command needs and opens dependencies.
func deps(c *cli.Context, n app.Needs) (*app.Deps, error) {
	cfg, err := config(c)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(n); err != nil {
		return nil, usage("%w", err)
	}
	return app.NewDeps(cfg), nil
}

func jsonOut(c *cli.Context) bool { return c.String("output") == "json" }

// printJSON prints a command's result as indented JSON, in the conventions the
// README's "JSON output" section documents: snake_case keys, times in RFC 3339 and
// UTC, durations in milliseconds (eta_ms), lists as [] and maps as {}, never null
// (jsonx.Output). Every type a command prints is listed in jsonOutputs
// (jsonshape_test.go), whose tests hold its json tags to these conventions: a
// command that prints a new type adds it there.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(jsonx.Output(v))
}

// table prints rows with aligned columns.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func openFile(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, usage("%w", err)
	}
	return f, nil
}

// serialized returns w, or for a writer other than an *os.File (whose writes the kernel
// orders), one that lets one Write through at a time.
func serialized(w io.Writer) io.Writer {
	if _, ok := w.(*os.File); ok || w == nil {
		return w
	}
	return &lockedWriter{w: w}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
