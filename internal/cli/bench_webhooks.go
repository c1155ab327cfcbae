package cli

import (
	"encoding/csv"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
)

func benchWebhooksCommand() *cli.Command {
	return &cli.Command{
		Name:  "webhooks",
		Usage: "webhook ingestion in serve at increasing concurrency, against the loopback ceiling of the same POSTs",
		Description: "Starts a private Redis and embedded Kafka, seeds a campaign of --messages sends (most recorded as\n" +
			"sent, --in-doubt of them left in doubt for the webhooks to settle), and builds Meta-shaped signed\n" +
			"POSTs of one status each: sent and delivered of every message (2% failed instead), read of 60%.\n" +
			"For each --concurrency it posts them into a real serve (closed loop), then into a handler that only\n" +
			"reads the body and answers 200 (the ceiling: same client, bodies and concurrency), and reports\n" +
			"accepted POSTs/s, the ratio to the ceiling and p50/p99 latency; then it posts for --open-for at 80%\n" +
			"of the best rate found whatever the answers (open loop) and reports p50/p99 from when each POST was\n" +
			"due. Finally it checks that every event the accepted POSTs imply is in Kafka.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "messages", Value: 20000, Usage: "messages of the seeded campaign (about 2.6 status POSTs each)"},
			&cli.StringFlag{Name: "concurrency", Value: "8,32,64", Usage: "connections posting at once, one closed-loop step each"},
			&cli.IntFlag{Name: "posts", Usage: "POSTs per step (default: every status once)"},
			&cli.DurationFlag{Name: "open-for", Value: 5e9, Usage: "length of the open-loop run at 80% of capacity"},
			&cli.Float64Flag{Name: "in-doubt", Value: 0.05, Usage: "share of sends left in doubt, settled by their first status"},
			&cli.StringFlag{Name: "data-dir", Usage: "where the private Redis keeps its files (default: a temporary directory)"},
		},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			o := app.WebhookBenchOptions{Messages: c.Int("messages"), Posts: c.Int("posts"), OpenFor: c.Duration("open-for"), InDoubt: c.Float64("in-doubt")}
			switch {
			case o.Messages <= 0 || o.Messages > 10_000_000:
				return usage("bench webhooks: --messages %d: want 1 to 10,000,000", o.Messages)
			case o.Posts < 0:
				return usage("bench webhooks: --posts must not be negative")
			case o.OpenFor <= 0:
				return usage("bench webhooks: --open-for must be positive")
			case !(o.InDoubt > 0 && o.InDoubt <= 1):
				return usage("bench webhooks: --in-doubt %v: want (0, 1]", o.InDoubt)
			}
			for _, s := range strings.Split(c.String("concurrency"), ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n <= 0 || n > 4096 {
					return usage("bench webhooks: --concurrency %q: want connection counts from 1 to 4096, like 8,32,64", c.String("concurrency"))
				}
				o.Concurrency = append(o.Concurrency, n)
			}
			cfg, err := config(c)
			if err != nil {
				return err
			}
			dir := c.String("data-dir")
			if dir == "" {
				if dir, err = os.MkdirTemp("", "herald-webhooks-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			o.DataDir = dir
			var finish func()
			o.Progress, finish = stageProgress(c, "bench webhooks")
			res, err := app.BenchWebhooks(c.Context, cfg, o)
			finish()
			if err != nil {
				return err
			}
			switch format {
			case "json":
				return printJSON(c.App.Writer, res)
			case "csv":
				w := csv.NewWriter(c.App.Writer)
				_ = w.WriteAll(app.WebhookBenchCSV(res))
				return w.Error()
			}
			app.PrintWebhookBench(c.App.Writer, res)
			return nil
		},
	}
}
