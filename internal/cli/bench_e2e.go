package cli

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
)

func benchE2ECommand() *cli.Command {
	return &cli.Command{
		Name:  "e2e",
		Usage: "the whole pipeline in one run, against the HTTP ceiling of the same machine",
		Description: "Starts private Redis and ClickHouse, embedded Kafka, the WhatsApp sandbox (throughput limited\n" +
			"to --rate per number, like Meta), serve, sink and a scheduler in this process and the worker as\n" +
			"its own process, then sends one campaign of --contacts opted-in contacts over --senders senders\n" +
			"with every policy check on, and waits until every event is in ClickHouse.\n\n" +
			"It reports messages/s, CPU seconds per 1,000 messages, the worker's peak RSS, p50/p99 from launch\n" +
			"to the provider accepting the send, and in the same run the ceiling for the same HTTP work: the\n" +
			"raw requests/s a Go client gets from the sandbox alone, divided by the HTTP requests one message\n" +
			"cost in the pipeline (its send plus its share of webhook POSTs). ratio = messages/s ÷ ceiling.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "contacts", Value: 100_000, Usage: "audience size"},
			&cli.IntFlag{Name: "senders", Value: 20, Usage: "senders (phone numbers) the campaign spreads over"},
			&cli.Float64Flag{Name: "rate", Value: 1000, Usage: "msg/s per sender (the sandbox refuses more with 130429)"},
			&cli.BoolFlag{Name: "in-process", Usage: "run the worker inside this process instead of its own"},
			&cli.StringFlag{Name: "data-dir", Usage: "where the private servers keep their files (default: a temporary directory)"},
			&cli.StringFlag{Name: "campaign-cpu-profile", Usage: "write this process's CPU profile (pprof) from launch until every event is in ClickHouse to the file"},
			&cli.StringFlag{Name: "worker-cpu-profile", Usage: "write the worker process's CPU profile (pprof) to the file (--cpu-profile profiles this one)"},
		},
		Action: func(c *cli.Context) error {
			n, s, r := c.Int("contacts"), c.Int("senders"), c.Float64("rate")
			switch {
			case n <= 0 || n > 50_000_000:
				return usage("bench e2e: --contacts %d: want 1 to 50,000,000", n)
			case s <= 0 || s > 1000:
				return usage("bench e2e: --senders %d: want 1 to 1000", s)
			case !(r > 0 && r <= 10000):
				return usage("bench e2e: --rate %v: want (0, 10000] msg/s", r)
			}
			cfg, err := config(c)
			if err != nil {
				return err
			}
			dir := c.String("data-dir")
			if dir == "" {
				if dir, err = os.MkdirTemp("", "herald-e2e-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			o := app.E2EOptions{DataDir: dir, Contacts: n, Senders: s, Rate: r}
			if !c.Bool("in-process") {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				logPath := filepath.Join(dir, "worker.log")
				o.WorkerCmd = func(env []string) *exec.Cmd {
					args := []string{"worker"}
					if p := c.String("worker-cpu-profile"); p != "" {
						args = append([]string{"--cpu-profile", p}, args...)
					}
					cmd := exec.Command(exe, args...)
					cmd.Env = env
					if f, err := os.Create(logPath); err == nil {
						cmd.Stdout, cmd.Stderr = f, f
					}
					return cmd
				}
			}
			if p := c.String("campaign-cpu-profile"); p != "" {
				f, err := os.Create(p)
				if err != nil {
					return err
				}
				defer f.Close()
				o.CampaignProfile = f
			}
			var finish func()
			o.Progress, finish = stageProgress(c, "bench e2e")
			res, err := app.BenchE2E(c.Context, cfg, o)
			finish()
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
