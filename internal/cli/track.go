package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/segments"
)

func trackCommand() *cli.Command {
	return &cli.Command{
		Name:  "track",
		Usage: "record outcomes that happen outside Herald",
		Subcommands: []*cli.Command{{
			Name:  "conversion",
			Usage: "record an order, attributed to the last campaign that sent to the contact within --window",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "phone", Required: true, Usage: "the contact's phone number (E.164)"},
				&cli.StringFlag{Name: "order-id", Required: true, Usage: "the order's id (tracking it twice counts once)"},
				&cli.Float64Flag{Name: "value", Required: true, Usage: "order value, e.g. 12.5"},
				&cli.StringFlag{Name: "currency", Required: true, Usage: "ISO 4217 code, e.g. THB"},
				&cli.StringFlag{Name: "at", Usage: "when the order was placed: RFC 3339 (default now)"},
				&cli.DurationFlag{Name: "window", Value: analytics.DefaultAttributionWindow, Usage: "attribution window"},
			},
			Action: func(c *cli.Context) error {
				req := server.ConversionRequest{Phone: c.String("phone"), OrderID: c.String("order-id"),
					Value: c.Float64("value"), Currency: c.String("currency")}
				if s := c.String("at"); s != "" {
					at, err := time.Parse(time.RFC3339, s)
					if err != nil {
						return usage("--at %q: want RFC 3339, e.g. 2025-03-10T09:00:00+07:00", s)
					}
					req.Time = at
				}
				if c.Duration("window") <= 0 {
					return usage("--window %s: want a positive duration, e.g. 168h", c.Duration("window"))
				}
				d, err := deps(c, app.Needs{Kafka: true, Redis: true, ClickHouse: true})
				if err != nil {
					return err
				}
				defer d.Close()
				comp, err := d.Components()
				if err != nil {
					return err
				}
				conn, err := d.ClickHouse(c.Context)
				if err != nil {
					return err
				}
				res, err := app.TrackConversion(c.Context, d, comp, conn, req, c.Duration("window"))
				if errors.Is(err, segments.ErrNotFound) || errors.Is(err, server.ErrBadConversion) {
					return usage("%w", err)
				}
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, res)
				}
				if res.Attributed {
					fmt.Fprintf(c.App.Writer, "conversion %s of contact %d attributed to campaign %s (sent %s)\n",
						req.OrderID, res.ContactID, res.Campaign, res.SentAt.Format(time.RFC3339))
				} else {
					fmt.Fprintf(c.App.Writer, "conversion %s of contact %d recorded without a campaign: none sent to it in the last %s\n",
						req.OrderID, res.ContactID, c.Duration("window"))
				}
				return nil
			},
		}},
	}
}
