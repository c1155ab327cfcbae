package cli

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	tgsandbox "github.com/herald-dev/herald/channels/telegram/sandbox"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/internal/app"
)

func dataDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "data-dir", Value: ".herald", Usage: "where the local Redis and ClickHouse keep their files, and the env file goes", EnvVars: []string{"HERALD_DATA_DIR"}}
}

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run every role in one process with a local Redis, ClickHouse, embedded Kafka and the WhatsApp sandbox",
		Description: "Installs redis-server and clickhouse-server from Debian packages when missing, starts private\n" +
			"instances on free loopback ports (data under --data-dir), embedded Kafka (kfake), the WhatsApp\n" +
			"Cloud API sandbox, and the serve, worker, sink and deliver roles. Prints the HERALD_* values other shells\n" +
			"need and writes them to DATA_DIR/env. Stops on Ctrl-C.",
		Flags: []cli.Flag{dataDirFlag(),
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "serve's listen address (webhooks, /metrics)", EnvVars: []string{"HERALD_LISTEN"}},
			&cli.Float64Flag{Name: "sandbox-throughput", Value: 80, Usage: "sandbox msg/s per phone number before 130429"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := config(c)
			if err != nil {
				return err
			}
			dev, err := app.StartDev(c.Context, cfg, app.DevOptions{DataDir: c.String("data-dir"), HTTPAddr: c.String("listen"), Out: c.App.Writer,
				Sandbox: sandbox.Config{Throughput: c.Float64("sandbox-throughput"), DelayScale: 0.2, ReadRate: 0.6}})
			if err != nil {
				return err
			}
			defer dev.Close()
			return dev.Run(c.Context)
		},
	}
}

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a real campaign end to end on a local stack and print its funnel",
		Description: "Starts what `herald dev` starts, imports a few thousand sample contacts (some without consent,\n" +
			"a few malformed rows), adds a template, a sender and a campaign, launches it with a live progress\n" +
			"bar, waits for the status webhooks and the ClickHouse sink, and prints the funnel next to the\n" +
			"sandbox's ground truth. Exits non-zero if they differ.",
		Flags: []cli.Flag{dataDirFlag(),
			&cli.IntFlag{Name: "contacts", Value: 3000, Usage: "sample contacts to generate"},
			&cli.Float64Flag{Name: "rate", Value: 80, Usage: "the demo sender's rate in msg/s (the sandbox, like Meta, refuses more than 80 per number with 130429)"},
			&cli.DurationFlag{Name: "outage", Value: time.Minute, Usage: "how long the WhatsApp sandbox is down during the failover campaign (WhatsApp, then SMS); 0 skips it"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := config(c)
			if err != nil {
				return err
			}
			if c.Int("contacts") < 1 || c.Float64("rate") <= 0 || c.Duration("outage") < 0 {
				return usage("--contacts and --rate must be positive, --outage 0 or more")
			}
			return app.Demo(c.Context, cfg, app.DemoOptions{DataDir: c.String("data-dir"), Contacts: c.Int("contacts"), Rate: c.Float64("rate"),
				Out: c.App.Writer, Err: c.App.ErrWriter, JSON: jsonOut(c), Outage: c.Duration("outage")})
		},
	}
}

func sandboxCommand() *cli.Command {
	return &cli.Command{
		Name:  "sandbox",
		Usage: "run the WhatsApp Cloud API sandbox alone",
		Description: "Serves POST /{version}/{phone-number-id}/messages like the Cloud API (bearer token, JSON and\n" +
			"error shapes, throughput, pair rate, 24h window, unknown templates), and posts signed status\n" +
			"webhooks to --webhook-url. GET /_sandbox/records and /_sandbox/stats show what it accepted.\n" +
			"--outage-at and --outage-for take the send endpoint down for a while (refuse: Meta's 503, code 2; stall: requests\n" +
			"hang until the client gives up); POST /_sandbox/outage {\"mode\",\"at\",\"for\",\"code\",\"stall_max\"} plans one\n" +
			"at run time, GET shows it, DELETE ends it. Nothing sent during an outage is recorded.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9080", Usage: "listen address", EnvVars: []string{"HERALD_SANDBOX_LISTEN"}},
			&cli.StringFlag{Name: "token", Value: app.DevSandboxToken, Usage: "accepted bearer token", EnvVars: []string{"HERALD_SANDBOX_TOKEN"}},
			&cli.StringFlag{Name: "webhook-url", Usage: "where status webhooks are posted (Herald's /webhooks/whatsapp)", EnvVars: []string{"HERALD_SANDBOX_WEBHOOK_URL"}},
			&cli.Float64Flag{Name: "throughput", Value: 80, Usage: "msg/s per phone number before 130429"},
			&cli.Float64Flag{Name: "undeliverable", Value: 0.02, Usage: "share of recipients not on WhatsApp (131026)"},
			&cli.Float64Flag{Name: "read-rate", Value: 0.6, Usage: "share of delivered messages that are read"},
			&cli.Float64Flag{Name: "delay-scale", Value: 1, Usage: "scales the realistic status delays (0.05: twenty times faster)"},
			&cli.IntFlag{Name: "statuses-per-post", Value: 1, Usage: "most statuses in one webhook POST (1: as Meta mostly sends them)"},
			&cli.IntFlag{Name: "webhook-concurrency", Value: sandbox.DefaultWebhookConcurrency, Usage: "webhook POSTs in flight at once"},
			&cli.Int64Flag{Name: "seed", Usage: "seeds status delays, duplicates and reordering (0: fixed default)"},
			&cli.StringSliceFlag{Name: "template", Usage: "an approved template, name:language (repeatable)"},
			&cli.DurationFlag{Name: "outage-at", Usage: "start an outage of the send endpoint this long after start (with --outage-for or --outage-mode)", EnvVars: []string{"HERALD_SANDBOX_OUTAGE_AT"}},
			&cli.DurationFlag{Name: "outage-for", Usage: "how long the outage lasts (0: until DELETE /_sandbox/outage)", EnvVars: []string{"HERALD_SANDBOX_OUTAGE_FOR"}},
			&cli.StringFlag{Name: "outage-mode", Usage: "refuse (Meta's outage error at once) or stall (hold requests until the client gives up, at most --outage-stall-max); default refuse when --outage-at or --outage-for is set", EnvVars: []string{"HERALD_SANDBOX_OUTAGE_MODE"}},
			&cli.IntFlag{Name: "outage-code", Value: 2, Usage: "the Graph error code refused with: 2 (HTTP 503), 131016, 131000 (500), 133004 (503) or 1 (400)", EnvVars: []string{"HERALD_SANDBOX_OUTAGE_CODE"}},
			&cli.DurationFlag{Name: "outage-stall-max", Value: sandbox.DefaultStallMax, Usage: "stall: the longest a request is held before it is refused", EnvVars: []string{"HERALD_SANDBOX_OUTAGE_STALL_MAX"}},
			&cli.StringFlag{Name: "telegram-listen", Usage: "also serve the Telegram Bot API sandbox here (bot token " + app.DevTelegramToken + "; POST /bot<token>/sendMessage…)", EnvVars: []string{"HERALD_SANDBOX_TELEGRAM_LISTEN"}},
		},
		// One sandbox per channel beside WhatsApp's: herald sandbox line.
		Subcommands: []*cli.Command{lineSandboxCommand()},
		Action: func(c *cli.Context) error {
			cfg, err := config(c)
			if err != nil {
				return err
			}
			sc := sandbox.Config{Token: c.String("token"), AppSecret: cfg.AppSecret, WebhookURL: c.String("webhook-url"),
				Throughput: c.Float64("throughput"), UndeliverableRate: c.Float64("undeliverable"), ReadRate: c.Float64("read-rate"), DelayScale: c.Float64("delay-scale"),
				StatusesPerPost: c.Int("statuses-per-post"), WebhookConcurrency: c.Int("webhook-concurrency"), Seed: c.Int64("seed")}
			if sc.Outage, err = outagePlan(c); err != nil {
				return err
			}
			for _, t := range c.StringSlice("template") {
				name, lang, ok := cutColon(t)
				if !ok {
					return usage("--template %q: want name:language, e.g. spring_sale:en_US", t)
				}
				sc.Templates = append(sc.Templates, sandbox.ApprovedTemplate{Name: name, Language: lang, Category: "MARKETING"})
			}
			l, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return err
			}
			sb := sandbox.New(sc, cfg.Logger)
			fmt.Fprintf(c.App.Writer, "WhatsApp sandbox on http://%s (token %q)\n", l.Addr(), sc.Token)
			g, ctx := errgroup.WithContext(c.Context)
			g.Go(func() error { return sb.Run(ctx) })
			g.Go(func() error { return app.ServeHTTP(ctx, l, sb.Handler()) })
			if addr := c.String("telegram-listen"); addr != "" {
				tl, err := net.Listen("tcp", addr)
				if err != nil {
					return err
				}
				tg := tgsandbox.New(tgsandbox.Config{Bots: map[string]string{app.DevTelegramToken: app.DevTelegramBot}})
				fmt.Fprintf(c.App.Writer, "Telegram Bot API sandbox on http://%s (bot token %q)\n", tl.Addr(), app.DevTelegramToken)
				g.Go(func() error { return app.ServeHTTP(ctx, tl, tg.Handler()) })
			}
			return g.Wait()
		},
	}
}

func cutColon(s string) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return s[:i], s[i+1:], i > 0 && i < len(s)-1
		}
	}
	return "", "", false
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve provider webhooks, /metrics, /healthz and /readyz",
		Flags: []cli.Flag{&cli.StringFlag{Name: "listen", Value: ":8080", Usage: "listen address", EnvVars: []string{"HERALD_LISTEN"}}},
		Action: func(c *cli.Context) error {
			d, err := deps(c, app.Needs{Kafka: true, Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			if d.Cfg.AppSecret == "" {
				return usage("serve needs the Meta app secret to verify webhooks: set --whatsapp-app-secret or HERALD_WHATSAPP_APP_SECRET")
			}
			l, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return err
			}
			d.Cfg.Logger.Info("serving", "addr", l.Addr().String())
			return app.Serve(c.Context, d, l)
		},
	}
}

func metricsFlag() cli.Flag {
	return &cli.StringFlag{Name: "metrics-listen", Usage: "serve /metrics and /healthz on this address (e.g. :9100)", EnvVars: []string{"HERALD_METRICS_LISTEN"}}
}

// withMetrics runs role, and /metrics beside it when --metrics-listen is set.
func withMetrics(c *cli.Context, d *app.Deps, role func(context.Context, *app.Deps) error) error {
	addr := c.String("metrics-listen")
	if addr == "" {
		return role(c.Context, d)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return usage("--metrics-listen: %w", err)
	}
	g, ctx := errgroup.WithContext(c.Context)
	g.Go(func() error { return app.ServeHTTP(ctx, l, app.MetricsHandler(d.Cfg.Registry)) })
	g.Go(func() error {
		err := role(ctx, d)
		l.Close()
		return err
	})
	return g.Wait()
}

func workerCommand() *cli.Command {
	return &cli.Command{
		Name:  "worker",
		Usage: "consume herald.outbound and send (run as many as you like: they share the work)",
		Description: "Each worker also runs the scheduler (due deferred jobs and retries back to herald.outbound);\n" +
			"one scheduler leads at a time. Use --no-scheduler when you run `herald scheduler` separately.\n" +
			"Each worker also runs the journey engine (timers and triggers; they share the work); --no-journeys leaves it out.",
		Flags: []cli.Flag{metricsFlag(),
			&cli.BoolFlag{Name: "no-scheduler", Usage: "do not run the delayed-job scheduler in this process", EnvVars: []string{"HERALD_NO_SCHEDULER"}},
			&cli.BoolFlag{Name: "no-journeys", Usage: "do not run the journey engine in this process", EnvVars: []string{"HERALD_NO_JOURNEYS"}}},
		Action: func(c *cli.Context) error {
			d, err := deps(c, app.Needs{Kafka: true, Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			d.Cfg.NoScheduler = c.Bool("no-scheduler")
			d.Cfg.NoJourneys = c.Bool("no-journeys")
			return withMetrics(c, d, app.Worker)
		},
	}
}

func schedulerCommand() *cli.Command {
	return &cli.Command{
		Name:  "scheduler",
		Usage: "move due deferred jobs and retries back to herald.outbound (one leads; run two for failover)",
		Flags: []cli.Flag{metricsFlag()},
		Action: func(c *cli.Context) error {
			d, err := deps(c, app.Needs{Kafka: true, Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			return withMetrics(c, d, app.Scheduler)
		},
	}
}

func sinkCommand() *cli.Command {
	return &cli.Command{
		Name:  "sink",
		Usage: "consume herald.events, herald.consent and herald.inbound into ClickHouse in batches",
		Flags: []cli.Flag{metricsFlag()},
		Action: func(c *cli.Context) error {
			d, err := deps(c, app.Needs{Kafka: true, ClickHouse: true})
			if err != nil {
				return err
			}
			defer d.Close()
			return withMetrics(c, d, app.Sink)
		},
	}
}

func deliverCommand() *cli.Command {
	return &cli.Command{
		Name:  "deliver",
		Usage: "consume herald.events and POST signed outbound webhooks to subscriptions, retrying for 72 h (run as many as you like)",
		Flags: []cli.Flag{metricsFlag()},
		Action: func(c *cli.Context) error {
			d, err := deps(c, app.Needs{Kafka: true, Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			return withMetrics(c, d, app.Deliver)
		},
	}
}

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "create the Kafka topics and the ClickHouse schema (idempotent)",
		Flags: []cli.Flag{&cli.IntFlag{Name: "partitions", Value: 12, Usage: "partitions of new topics"}},
		Action: func(c *cli.Context) error {
			d, err := deps(c, app.Needs{Kafka: true, ClickHouse: true})
			if err != nil {
				return err
			}
			defer d.Close()
			d.Cfg.Partitions = c.Int("partitions")
			applied, err := app.Migrate(c.Context, d)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				return printJSON(c.App.Writer, migrateResult{Topics: d.Topics.All(), Applied: applied})
			}
			fmt.Fprintf(c.App.Writer, "topics ready: %v\nclickhouse migrations applied: %d %v\n", d.Topics.All(), len(applied), applied)
			return nil
		},
	}
}

// migrateResult is the JSON output of migrate: the topics made sure of and the
// ClickHouse migrations this run applied.
type migrateResult struct {
	Topics  []string `json:"topics"`
	Applied []string `json:"applied"`
}
