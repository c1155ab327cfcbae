package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/localstack"
	"github.com/herald-dev/herald/segments"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "benchmark scenarios against private local servers",
		Subcommands: []*cli.Command{benchThrottleCommand(), benchThrottleWorkerCommand(), {
			Name:  "segments",
			Usage: "contacts import, segment evaluation, member streaming and Redis memory at scale",
			Description: "Starts a private redis-server (installed when missing) in a temporary directory, generates\n" +
				"--contacts contacts (profile, identity, 10 tags) directly into it and measures: Redis memory per\n" +
				"contact, the raw write rate (pipelined bucket HSETs), CSV import rows/s (--import-rows rows), a 5-term expression\n" +
				"over all contacts, streaming the members, and the slowest Redis commands of each phase.",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "contacts", Value: 10_000_000, Usage: "contacts generated into Redis"},
				&cli.IntFlag{Name: "import-rows", Usage: "rows of the CSV import (default: min(contacts, 1,000,000))"},
				&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the generated data"},
			},
			Action: func(c *cli.Context) error {
				if n := c.Int("contacts"); n <= 0 || n > 100_000_000 {
					return usage("bench segments: --contacts %d: want 1 to 100,000,000", n)
				}
				if c.Int("import-rows") < 0 {
					return usage("bench segments: --import-rows must not be negative")
				}
				cfg, err := config(c)
				if err != nil {
					return err
				}
				return benchSegments(c, cfg)
			},
		}, benchE2ECommand(), benchWebhooksCommand()},
	}
}

func benchSegments(c *cli.Context, cfg app.Config) error {
	ctx := c.Context
	srv, dir, stop, err := benchRedis(c, cfg)
	if err != nil {
		return err
	}
	defer stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 8, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer rdb.Close()

	bc := segments.BenchConfig{Redis: rdb, Prefix: "herald:", Contacts: c.Int("contacts"), ImportRows: c.Int("import-rows"),
		Dir: dir, Seed: c.Uint64("seed")}
	var finish func()
	bc.Progress, finish = stageProgress(c, "bench segments")
	res, err := segments.RunBench(ctx, bc)
	finish()
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c.App.Writer, res)
	}
	printBench(c, res)
	return nil
}

func printBench(c *cli.Context, r segments.BenchResult) {
	ms := func(ms float64) string { return fmt.Sprintf("%.1f ms", ms) }
	rows := [][]string{
		{"contacts generated", fmt.Sprintf("%d", r.Contacts), fmt.Sprintf("profile + identity + %d tags each, in %.1f s", segments.BenchTags, r.GenerateMS/1000)},
		{"raw pipelined HSET (baseline)", fmt.Sprintf("%.0f contacts/s", r.RawHSETPerSec), "multi-field HSETs of profile records and identities into their buckets, no reads"},
		{"Redis memory per contact", fmt.Sprintf("%.0f B", r.MemoryPerContact), fmt.Sprintf("used_memory +%.1f MiB", float64(r.MemoryBytes)/(1<<20))},
		{"CSV import", fmt.Sprintf("%.0f rows/s", r.ImportRowsPerSec), fmt.Sprintf("%d rows (%.1f MiB) in %.1f s, %.2f× raw HSET", r.ImportRows, float64(r.ImportBytes)/(1<<20), r.ImportMS/1000, r.ImportVsRawHSET)},
		{"import CPU per row", fmt.Sprintf("%.1f µs", 1000*(r.ImportHeraldCPUMS+r.ImportRedisCPUMS)), fmt.Sprintf("herald %.1f µs + redis-server %.1f µs: %.0f rows/s if 2 cores were ours alone", 1000*r.ImportHeraldCPUMS, 1000*r.ImportRedisCPUMS, r.ImportCPUBound2Cores)},
		{"evaluate (median)", fmt.Sprintf("%.1f ms", r.EvalMedianMS), fmt.Sprintf("%s → %d members; slowest of %d runs %.1f ms", r.Expr, r.EvalMembers, r.EvalRuns, r.EvalMaxMS)},
		{"stream members", fmt.Sprintf("%.1fM ids/s", r.StreamIDsPerSec/1e6), fmt.Sprintf("%d ids through Snapshot.Next in id order", r.StreamIDs)},
	}
	for _, phase := range []string{"generate", "import", "evaluate"} {
		v, note := "none", fmt.Sprintf("nothing above %s in SLOWLOG", ms(r.SlowLogThresholdMS))
		if s, ok := r.Slowest[phase]; ok {
			v, note = ms(s.TookMS), s.Command
		}
		rows = append(rows, []string{"slowest command: " + phase, v, note})
	}
	if len(r.Latency) == 0 {
		rows = append(rows, []string{"latency spikes", "none", "LATENCY LATEST: no event above " + ms(r.LatencyThresholdMS)})
	}
	for k, d := range r.Latency {
		rows = append(rows, []string{"latency spike " + k, ms(d), "LATENCY LATEST worst"})
	}
	table(c.App.Writer, []string{"MEASURE", "VALUE", "DETAIL"}, rows)
}

// stageProgress reports a benchmark's stages: a progress bar per stage on a terminal,
// a line per stage otherwise. Call finish when the work is over.
func stageProgress(c *cli.Context, name string) (progress func(stage string, done, total int64), finish func()) {
	var bar *progressbar.ProgressBar
	stage := ""
	finish = func() {
		if bar != nil {
			_ = bar.Finish()
		}
	}
	if !app.IsTerminal(c.App.ErrWriter) {
		return func(s string, _, _ int64) {
			if s != stage {
				stage = s
				fmt.Fprintf(c.App.ErrWriter, "%s: %s…\n", name, s)
			}
		}, finish
	}
	return func(s string, done, total int64) {
		if s != stage {
			finish()
			stage = s
			bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(c.App.ErrWriter), progressbar.OptionSetDescription(s),
				progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		}
		_ = bar.Set64(done)
	}, finish
}

// benchRedis installs redis-server when missing and starts a private one in a temporary
// directory; stop stops it and removes the directory.
func benchRedis(c *cli.Context, cfg app.Config) (srv *localstack.Server, dir string, stop func(), err error) {
	if err := localstack.EnsureInstalled(c.Context, cfg.Logger); err != nil {
		return nil, "", nil, err
	}
	if dir, err = os.MkdirTemp("", "herald-bench-"); err != nil {
		return nil, "", nil, err
	}
	if srv, err = localstack.StartRedis(c.Context, dir); err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return srv, dir, func() { _ = srv.Stop(); os.RemoveAll(dir) }, nil
}
