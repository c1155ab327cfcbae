package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/webhooks"
)

// replayResult is what webhooks replay prints (as POST /v1/webhooks/{id}/replay answers).
type replayResult struct {
	Replayed int `json:"replayed"`
}

func webhooksCommand() *cli.Command {
	return &cli.Command{
		Name:  "webhooks",
		Usage: "outbound webhooks: subscribe a URL to events (the signing secret is shown once), list, delete, replay, read the delivery log",
		Description: "`herald deliver` (and dev) POSTs each matching event of herald.events to the URL as JSON, signed with\n" +
			"Herald-Webhook-Signature: v1=<hex HMAC-SHA256(secret, timestamp + \".\" + body)>, and retries with backoff\n" +
			"for 72 h until the receiver answers 2xx. Delivery is at least once: dedupe by Herald-Webhook-Id.",
		Subcommands: []*cli.Command{{
			Name:  "create",
			Usage: "subscribe a URL; prints the signing secret this once",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "url", Required: true, Usage: "the receiver, an absolute http or https URL"},
				&cli.StringFlag{Name: "kinds", Required: true, Usage: "comma-separated: sent, delivered, read, clicked, replied, converted, opted_out, failed (or all)"},
				&cli.StringFlag{Name: "campaigns", Usage: "only events of these campaigns, comma-separated (default: every campaign, and events of none such as opt-outs)"},
				&cli.StringFlag{Name: "description", Usage: "what the subscription is for"},
			},
			Action: func(c *cli.Context) error {
				spec := webhooks.Spec{URL: c.String("url"), Description: c.String("description")}
				if strings.TrimSpace(c.String("kinds")) == "all" {
					spec.Kinds = webhooks.Kinds
				} else {
					for _, k := range splitList(c.String("kinds")) {
						spec.Kinds = append(spec.Kinds, events.Kind(k))
					}
				}
				spec.Campaigns = splitList(c.String("campaigns"))
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				sub, err := comp.Webhooks.Create(c.Context, spec)
				var fe *webhooks.FieldError
				if errors.As(err, &fe) {
					return usage("--%s: %s", strings.SplitN(fe.Field, "/", 2)[0], fe.Reason)
				}
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, sub)
				}
				fmt.Fprintf(c.App.Writer, "Webhook %s created: %s gets %s.\nIts signing secret, shown only this once:\n\n%s\n",
					sub.ID, sub.URL, kindList(sub.Kinds), sub.Secret)
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list subscriptions (never their secrets)",
			Action: func(c *cli.Context) error {
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				list, err := comp.Webhooks.List(c.Context)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, s := range list {
					rows = append(rows, []string{s.ID, s.URL, kindList(s.Kinds), strings.Join(s.Campaigns, ","), strconv.FormatBool(s.Active), when(s.Created)})
				}
				return printReport(c.App.Writer, format, list, "", []string{"ID", "URL", "KINDS", "CAMPAIGNS", "ACTIVE", "CREATED"}, rows)
			},
		}, {
			Name:      "delete",
			Usage:     "delete a subscription with its pending deliveries and log",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("webhooks delete: give one subscription ID")
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				err = comp.Webhooks.Delete(c.Context, c.Args().First())
				if errors.Is(err, webhooks.ErrNotFound) {
					return usage("webhooks delete %s: %w", c.Args().First(), err)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "webhook %s deleted\n", c.Args().First())
				return nil
			},
		}, {
			Name:      "replay",
			Usage:     "send deliveries again under their ids: --id (repeatable) or --from/--to (creation times, RFC 3339)",
			ArgsUsage: "ID",
			Flags: []cli.Flag{
				&cli.StringSliceFlag{Name: "id", Usage: "a delivery id (repeatable)"},
				&cli.TimestampFlag{Name: "from", Layout: time.RFC3339, Usage: "deliveries created at or after this time"},
				&cli.TimestampFlag{Name: "to", Layout: time.RFC3339, Usage: "deliveries created at or before this time"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("webhooks replay: give one subscription ID")
				}
				r := webhooks.ReplaySpec{DeliveryIDs: c.StringSlice("id")}
				if t := c.Timestamp("from"); t != nil {
					r.From = *t
				}
				if t := c.Timestamp("to"); t != nil {
					r.To = *t
				}
				if len(r.DeliveryIDs) == 0 && r.From.IsZero() && r.To.IsZero() {
					return usage("webhooks replay: name deliveries with --id, or a range with --from/--to")
				}
				if len(r.DeliveryIDs) > 0 && (!r.From.IsZero() || !r.To.IsZero()) {
					return usage("webhooks replay: give --id or --from/--to, not both")
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				n, err := comp.Webhooks.Replay(c.Context, c.Args().First(), r)
				if errors.Is(err, webhooks.ErrNotFound) {
					return usage("webhooks replay %s: %w", c.Args().First(), err)
				}
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, replayResult{n})
				}
				fmt.Fprintf(c.App.Writer, "%d deliveries due again\n", n)
				return nil
			},
		}, {
			Name:      "deliveries",
			Usage:     "a subscription's delivery log, newest first: attempts, last status code and latency, next retry",
			ArgsUsage: "ID",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "state", Usage: "pending, delivered or failed"},
				&cli.IntFlag{Name: "limit", Value: 50, Usage: "at most this many"},
			},
			Action: func(c *cli.Context) error {
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				if c.NArg() != 1 {
					return usage("webhooks deliveries: give one subscription ID")
				}
				switch c.String("state") {
				case "", webhooks.StatePending, webhooks.StateDelivered, webhooks.StateFailed:
				default:
					return usage("--state %q: want pending, delivered or failed", c.String("state"))
				}
				if c.Int("limit") < 1 {
					return usage("--limit: want at least 1")
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				list, _, _, err := comp.Webhooks.Deliveries(c.Context, c.Args().First(), webhooks.DeliveryFilter{State: c.String("state")}, 0, "", c.Int("limit"))
				if errors.Is(err, webhooks.ErrNotFound) {
					return usage("webhooks deliveries %s: %w", c.Args().First(), err)
				}
				if err != nil {
					return err
				}
				var rows [][]string
				for _, x := range list {
					status := ""
					if x.StatusCode != 0 {
						status = strconv.Itoa(x.StatusCode)
					}
					rows = append(rows, []string{x.ID, string(x.Kind), x.State, strconv.Itoa(x.Attempts), status, x.Error,
						strconv.FormatFloat(x.LatencyMS, 'f', 1, 64), when(x.Created), when(x.NextAttempt)})
				}
				return printReport(c.App.Writer, format, list, "", []string{"ID", "KIND", "STATE", "ATTEMPTS", "STATUS", "ERROR", "LATENCY MS", "CREATED", "NEXT ATTEMPT"}, rows)
			},
		}},
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func kindList(ks []events.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}
