package cli

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/internal/app"
)

func benchE2ECommand() *cli.Command {
	return &cli.Command{
		Name:  "e2e",
		Usage: "the whole pipeline in one run, against the ceiling of the same machine (HTTP for WhatsApp, SMTP for email)",
		Description: "Starts private Redis and ClickHouse, embedded Kafka, serve and a scheduler in this process, and\n" +
			"the worker, the sink and the WhatsApp sandbox (`herald sandbox`: throughput limited to --rate per\n" +
			"number, like Meta; status webhooks of --statuses-per-post over --webhook-concurrency connections)\n" +
			"as processes of their own, then sends one campaign of --contacts opted-in contacts over --senders\n" +
			"senders with every policy check on, and waits until every event is in ClickHouse.\n\n" +
			"It reports messages/s (until the last send, and drained: until every event is in ClickHouse), CPU\n" +
			"seconds per 1,000 messages of each process (the simulator's apart from Herald's), the worker's peak\n" +
			"RSS, p50/p99 from launch\n" +
			"to the provider accepting the send, and in the same run the ceiling for the same HTTP work: the\n" +
			"raw requests/s a Go client gets from the sandbox alone, divided by the HTTP requests one message\n" +
			"cost in the pipeline (its send plus its share of webhook POSTs). ratio = messages/s ÷ ceiling.\n\n" +
			"--channel email sends --rounds email campaigns of --contacts each (default 20,000) over --senders\n" +
			"SMTP senders (default 4) of --connections pooled connections each into the SMTP sandbox (no\n" +
			"greylisting, refusals or limits), and alternates them with the ceiling for the same SMTP work:\n" +
			"go-mail alone (no Herald code) sending the same rendered messages over senders × connections\n" +
			"connections into the same sandbox (go-mail waits for each reply; Herald pipelines MAIL, RCPT and\n" +
			"DATA). Order: ceiling, Herald, ceiling, Herald … ceiling; each Herald\n" +
			"round is compared with the mean of the ceilings around it, and the ratio's median and spread are\n" +
			"reported. --output csv prints one row per round.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "channel", Value: "whatsapp", Usage: "whatsapp or email"},
			&cli.IntFlag{Name: "contacts", Value: 100_000, Usage: "audience size (email: per round, default 20,000)"},
			&cli.IntFlag{Name: "senders", Value: 20, Usage: "senders (phone numbers; email: SMTP senders, default 4) the campaign spreads over"},
			&cli.Float64Flag{Name: "rate", Value: 1000, Usage: "msg/s per sender (the WhatsApp sandbox refuses more with 130429; email default 10,000: not the limit)"},
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "email: Herald rounds, each between two ceiling rounds"},
			&cli.IntFlag{Name: "connections", Value: 4, Usage: "email: SMTP connections per sender (its pool_size), for Herald and the ceiling alike"},
			&cli.BoolFlag{Name: "in-process", Usage: "run the worker inside this process instead of its own"},
			&cli.BoolFlag{Name: "in-process-sandbox", Usage: "whatsapp: run the WhatsApp sandbox inside this process (as before #16) instead of its own `herald sandbox` process"},
			&cli.BoolFlag{Name: "in-process-sink", Usage: "whatsapp: run the sink inside this process instead of its own"},
			&cli.IntFlag{Name: "statuses-per-post", Value: 1, Usage: "whatsapp: most statuses in one webhook POST (1: as Meta mostly sends them; more: its occasional batching)"},
			&cli.IntFlag{Name: "webhook-concurrency", Value: sandbox.DefaultWebhookConcurrency, Usage: "whatsapp: the sandbox's webhook POSTs in flight at once"},
			&cli.IntFlag{Name: "process-cpus", Value: 1, Usage: "whatsapp: GOMAXPROCS of each process the bench starts (the sandbox, worker, sink; with --redis-cluster serve too), as each would run in a container of that many CPUs on a cluster (0: Go's default, every core for each)"},
			&cli.StringFlag{Name: "data-dir", Usage: "where the private servers keep their files (default: a temporary directory)"},
			&cli.StringFlag{Name: "campaign-cpu-profile", Usage: "write this process's CPU profile (pprof) from launch until every event is in ClickHouse to the file"},
			&cli.BoolFlag{Name: "timeline", Usage: "whatsapp: print a line a second to stderr from launch until every event is in ClickHouse: sends/s, webhook POSTs/s, statuses waiting to be posted, machine CPU busy"},
			&cli.StringFlag{Name: "process-cpu-profiles", Usage: "whatsapp: write the CPU profile (pprof) of the sandbox and sink processes to `DIR`/sandbox.pprof and DIR/sink.pprof"},
			&cli.StringFlag{Name: "worker-cpu-profile", Usage: "write the worker process's CPU profile (pprof) to the file (--cpu-profile profiles this one)"},
			&cli.BoolFlag{Name: "redis-cluster", Usage: "whatsapp: run the campaign twice, on today's layout and then on a Redis Cluster (--redis-nodes masters) with --serves, --workers and --sinks herald processes, and compare the drained rates"},
			&cli.IntFlag{Name: "redis-nodes", Value: 3, Usage: "--redis-cluster: Redis Cluster masters"},
			&cli.IntFlag{Name: "serves", Value: 2, Usage: "--redis-cluster: herald serve processes (the sandbox's webhooks go round-robin)"},
			&cli.IntFlag{Name: "workers", Value: 3, Usage: "--redis-cluster: herald worker processes"},
			&cli.IntFlag{Name: "sinks", Value: 2, Usage: "--redis-cluster: herald sink processes"},
		},
		Action: func(c *cli.Context) error {
			switch ch := c.String("channel"); ch {
			case "whatsapp":
				for _, f := range []string{"rounds", "connections"} {
					if c.IsSet(f) {
						return usage("bench e2e: --%s applies to --channel email", f)
					}
				}
			case "email":
				for _, f := range []string{"in-process-sandbox", "in-process-sink", "statuses-per-post", "webhook-concurrency", "process-cpus"} {
					if c.IsSet(f) {
						return usage("bench e2e: --%s applies to --channel whatsapp", f)
					}
				}
				return benchE2EEmail(c)
			default:
				return usage("bench e2e: --channel %q: want whatsapp or email (sms has no bench yet)", ch)
			}
			n, s, r := c.Int("contacts"), c.Int("senders"), c.Float64("rate")
			switch {
			case n <= 0 || n > 50_000_000:
				return usage("bench e2e: --contacts %d: want 1 to 50,000,000", n)
			case s <= 0 || s > 1000:
				return usage("bench e2e: --senders %d: want 1 to 1000", s)
			case !(r > 0 && r <= 10000):
				return usage("bench e2e: --rate %v: want (0, 10000] msg/s", r)
			case c.Int("statuses-per-post") < 1 || c.Int("statuses-per-post") > 1000:
				return usage("bench e2e: --statuses-per-post %d: want 1 to 1000", c.Int("statuses-per-post"))
			case c.Int("webhook-concurrency") < 1 || c.Int("webhook-concurrency") > 1024:
				return usage("bench e2e: --webhook-concurrency %d: want 1 to 1024", c.Int("webhook-concurrency"))
			case c.Int("process-cpus") < 0 || c.Int("process-cpus") > 1024:
				return usage("bench e2e: --process-cpus %d: want 0 to 1024", c.Int("process-cpus"))
			}
			cfg, err := config(c)
			if err != nil {
				return err
			}
			env, err := newBenchRun(c)
			if err != nil {
				return err
			}
			defer env.close()
			o := app.E2EOptions{DataDir: env.dir, Contacts: n, Senders: s, Rate: r,
				WorkerCmd: env.worker, CampaignProfile: env.profile, Progress: env.progress,
				StatusesPerPost: c.Int("statuses-per-post"), WebhookConcurrency: c.Int("webhook-concurrency"),
				ProcessCPUs: c.Int("process-cpus")}
			if c.Bool("timeline") {
				o.Timeline = c.App.ErrWriter
			}
			if !c.Bool("in-process-sandbox") {
				if o.SandboxCmd, err = benchRoleProcess(c, env.dir, "sandbox"); err != nil {
					env.finish()
					return err
				}
			}
			if !c.Bool("in-process-sink") {
				sink, err := benchRoleProcess(c, env.dir, "sink")
				if err != nil {
					env.finish()
					return err
				}
				o.SinkCmd = func(env []string) *exec.Cmd { return sink(nil, env) }
			}
			if c.Bool("redis-cluster") {
				return benchE2ECluster(c, cfg, o, env)
			}
			for _, f := range []string{"redis-nodes", "serves", "workers", "sinks"} {
				if c.IsSet(f) {
					env.finish()
					return usage("bench e2e: --%s applies to --redis-cluster", f)
				}
			}
			res, err := app.BenchE2E(c.Context, cfg, o)
			env.finish()
			if err != nil {
				return err
			}
			if jsonOut(c) {
				return printJSON(c.App.Writer, res)
			}
			app.PrintE2E(c.App.Writer, res)
			return nil
		},
	}
}

// benchE2EEmail runs `herald bench e2e --channel email`.
func benchE2EEmail(c *cli.Context) error {
	o := app.EmailE2EOptions{Contacts: 20_000, Senders: 4, Conns: c.Int("connections"), Rate: 10_000, Rounds: c.Int("rounds")}
	if c.IsSet("contacts") {
		o.Contacts = c.Int("contacts")
	}
	if c.IsSet("senders") {
		o.Senders = c.Int("senders")
	}
	if c.IsSet("rate") {
		o.Rate = c.Float64("rate")
	}
	switch {
	case o.Contacts <= 0 || o.Contacts > 10_000_000:
		return usage("bench e2e: --contacts %d: want 1 to 10,000,000 per round", o.Contacts)
	case o.Senders <= 0 || o.Senders > 100:
		return usage("bench e2e: --senders %d: want 1 to 100 for email", o.Senders)
	case o.Conns <= 0 || o.Conns > 100:
		return usage("bench e2e: --connections %d: want 1 to 100", o.Conns)
	case !(o.Rate > 0 && o.Rate <= 100_000):
		return usage("bench e2e: --rate %v: want (0, 100000] msg/s", o.Rate)
	case o.Rounds <= 0 || o.Rounds > 50:
		return usage("bench e2e: --rounds %d: want 1 to 50", o.Rounds)
	case int64(o.Contacts)*int64(o.Rounds) > 20_000_000:
		return usage("bench e2e: --contacts × --rounds is %d: want at most 20,000,000", int64(o.Contacts)*int64(o.Rounds))
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	cfg, err := config(c)
	if err != nil {
		return err
	}
	env, err := newBenchRun(c)
	if err != nil {
		return err
	}
	defer env.close()
	o.DataDir, o.WorkerCmd, o.CampaignProfile, o.Progress = env.dir, env.worker, env.profile, env.progress
	res, err := app.BenchE2EEmail(c.Context, cfg, o)
	env.finish()
	if err != nil {
		return err
	}
	switch format {
	case "json":
		return printJSON(c.App.Writer, res)
	case "csv":
		return app.WriteE2ERoundsCSV(c.App.Writer, res.Rounds)
	}
	app.PrintEmailE2E(c.App.Writer, res)
	return nil
}

// benchDataDir is --data-dir, or a temporary directory removed by cleanup.
// benchRun is what both e2e benches take from the flags besides their sizes: a data
// directory, the worker process (none with --in-process), the campaign's CPU profile
// (--campaign-cpu-profile) and the progress bar (finish ends it); close releases them.
type benchRun struct {
	dir      string
	worker   func(env []string) *exec.Cmd
	profile  io.Writer
	progress func(stage string, done, total int64)
	finish   func()
	closers  []func()
}

func newBenchRun(c *cli.Context) (*benchRun, error) {
	dir, cleanup, err := benchDataDir(c)
	if err != nil {
		return nil, err
	}
	b := &benchRun{dir: dir, closers: []func(){cleanup}}
	if !c.Bool("in-process") {
		if b.worker, err = benchWorkerProcess(c, dir); err != nil {
			b.close()
			return nil, err
		}
	}
	if p := c.String("campaign-cpu-profile"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.close()
			return nil, err
		}
		b.profile, b.closers = f, append(b.closers, func() { f.Close() })
	}
	b.progress, b.finish = stageProgress(c, "bench e2e")
	return b, nil
}

func (b *benchRun) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

func benchDataDir(c *cli.Context) (dir string, cleanup func(), err error) {
	if dir = c.String("data-dir"); dir != "" {
		return dir, func() {}, nil
	}
	if dir, err = os.MkdirTemp("", "herald-e2e-"); err != nil {
		return "", nil, err
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}

// benchWorkerProcess returns how to start the worker as its own process (this binary's
// `worker`), logging to dir/worker.log.
func benchWorkerProcess(c *cli.Context, dir string) (func(env []string) *exec.Cmd, error) {
	args := []string{"worker"}
	if p := c.String("worker-cpu-profile"); p != "" {
		args = append([]string{"--cpu-profile", p}, args...)
	}
	proto, err := benchWorkerCommand(c.Context, args...)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "worker.log")
	return func(env []string) *exec.Cmd {
		cmd := exec.Command(proto.Path, proto.Args[1:]...)
		cmd.Env = append(slices.Clip(proto.Env), env...)
		if f, err := os.Create(logPath); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
		return cmd
	}, nil
}

// benchRoleProcess returns how to start a process of this binary for a role of the
// bench (args: the subcommand and its flags; nil runs `role`), logging to dir/role.log.
func benchRoleProcess(c *cli.Context, dir, role string) (func(args, env []string) *exec.Cmd, error) {
	proto, err := benchWorkerCommand(c.Context)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, role+".log")
	return func(args, env []string) *exec.Cmd {
		if args == nil {
			args = []string{role}
		}
		if d := c.String("process-cpu-profiles"); d != "" {
			args = append([]string{"--cpu-profile", filepath.Join(d, role+".pprof")}, args...)
		}
		cmd := exec.Command(proto.Path, append(slices.Clip(proto.Args[1:]), args...)...)
		cmd.Env = append(slices.Clip(proto.Env), env...)
		if f, err := os.Create(logPath); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
		return cmd
	}, nil
}

// benchE2ECluster runs `herald bench e2e --redis-cluster`: today's layout, then the
// cluster layout, each herald process of it this executable (`serve`, `worker`,
// `sink`) logging to the data directory.
func benchE2ECluster(c *cli.Context, cfg app.Config, o app.E2EOptions, env *benchRun) error {
	l := app.E2ELayout{RedisNodes: c.Int("redis-nodes"), Serves: c.Int("serves"), Workers: c.Int("workers"), Sinks: c.Int("sinks")}
	switch {
	case l.RedisNodes < 1 || l.RedisNodes > 16:
		env.finish()
		return usage("bench e2e: --redis-nodes %d: want 1 to 16", l.RedisNodes)
	case l.Serves < 1 || l.Serves > 16 || l.Workers < 1 || l.Workers > 16 || l.Sinks < 1 || l.Sinks > 16:
		env.finish()
		return usage("bench e2e: --serves, --workers and --sinks: want 1 to 16 each")
	}
	var protoErr error
	l.Cmd = func(role string, i int, envv []string) *exec.Cmd {
		proto, err := benchWorkerCommand(c.Context, role)
		if err != nil {
			protoErr = err
			return exec.Command("false")
		}
		cmd := exec.Command(proto.Path, proto.Args[1:]...)
		cmd.Env = append(slices.Clip(proto.Env), envv...)
		if f, err := os.Create(filepath.Join(o.DataDir, fmt.Sprintf("%s-%d.log", role, i))); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
		return cmd
	}
	res, err := app.BenchE2ECluster(c.Context, cfg, o, l)
	env.finish()
	if err == nil {
		err = protoErr
	}
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c.App.Writer, res)
	}
	app.PrintE2ECluster(c.App.Writer, res)
	return nil
}
