package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/app"
)

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "reports computed in ClickHouse",
		Subcommands: []*cli.Command{{
			Name:  "funnel",
			Usage: "queued → sent → delivered → read for a campaign (distinct contacts)",
			Flags: []cli.Flag{&cli.StringFlag{Name: "campaign", Required: true, Usage: "campaign ID"}},
			Action: func(c *cli.Context) error {
				d, err := deps(c, app.Needs{ClickHouse: true})
				if err != nil {
					return err
				}
				defer d.Close()
				conn, err := d.ClickHouse(c.Context)
				if err != nil {
					return err
				}
				f, err := analytics.Funnel(c.Context, conn, c.String("campaign"))
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, f)
				}
				app.PrintFunnel(c.App.Writer, f)
				return nil
			},
		}},
	}
}
