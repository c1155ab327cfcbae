package cli

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/app"
)

// reportAction opens ClickHouse, runs the report and prints it as a table (header and
// rows, with an optional note above), JSON (the report value) or CSV (header and rows).
func reportAction(run func(c *cli.Context, conn driver.Conn) (v any, note string, header []string, rows [][]string, err error)) cli.ActionFunc {
	return func(c *cli.Context) error {
		format, err := outputFormat(c)
		if err != nil {
			return err
		}
		d, conn, err := clickhouseFor(c, app.Needs{ClickHouse: true})
		if err != nil {
			return err
		}
		defer d.Close()
		v, note, header, rows, err := run(c, conn)
		if err != nil {
			return err
		}
		return printReport(c.App.Writer, format, v, note, header, rows)
	}
}

// clickhouseFor opens what the command needs and a ClickHouse connection.
func clickhouseFor(c *cli.Context, n app.Needs) (*app.Deps, driver.Conn, error) {
	d, err := deps(c, n)
	if err != nil {
		return nil, nil, err
	}
	conn, err := d.ClickHouse(c.Context)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, conn, nil
}

func printReport(w io.Writer, format string, v any, note string, header []string, rows [][]string) error {
	switch format {
	case "json":
		return printJSON(w, v)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write(header)
		cw.WriteAll(rows)
		return cw.Error()
	}
	if note != "" {
		fmt.Fprintln(w, note)
	}
	table(w, header, rows)
	return nil
}

func u64(n uint64) string    { return strconv.FormatUint(n, 10) }
func pct(f float64) string   { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }
func f4(f float64) string    { return strconv.FormatFloat(f, 'f', 4, 64) }
func day(t time.Time) string { return t.Format(time.DateOnly) }

// period reads --from and --to, defaulting to the days days before now.
func period(c *cli.Context, days int) (time.Time, time.Time, error) {
	to := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	from := to.AddDate(0, 0, -days)
	var err error
	if s := c.String("from"); s != "" {
		if from, err = parseWhen("--from", s); err != nil {
			return from, to, err
		}
	}
	if s := c.String("to"); s != "" {
		if to, err = parseWhen("--to", s); err != nil {
			return from, to, err
		}
	}
	if !from.Before(to) {
		return from, to, usage("--from %s is not before --to %s", day(from), day(to))
	}
	return from, to, nil
}

func periodFlags(days int) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "from", Usage: fmt.Sprintf("start, inclusive: RFC 3339 or YYYY-MM-DD, UTC (default %d days ago)", days)},
		&cli.StringFlag{Name: "to", Usage: "end, exclusive: RFC 3339 or YYYY-MM-DD, UTC (default: tomorrow)"},
	}
}

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "reports computed in ClickHouse (--output table, json or csv)",
		Subcommands: []*cli.Command{reportJourneyCommand(), reportChannelsCommand(), {
			Name:  "funnel",
			Usage: "queued → sent → delivered → read for a campaign (distinct contacts); with --by, also clicked, replied, converted per group",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "campaign", Required: true, Usage: "campaign ID"},
				&cli.StringFlag{Name: "by", Usage: "split by variant, sender, country or channel"},
			},
			Action: func(c *cli.Context) error {
				by := c.String("by")
				switch by {
				case "", "variant", "sender", "country", "channel":
				default:
					return usage("--by %q: want variant, sender, country or channel", by)
				}
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				rc := remote(c)
				var conn driver.Conn
				if rc == nil {
					d, cn, err := clickhouseFor(c, app.Needs{ClickHouse: true})
					if err != nil {
						return err
					}
					defer d.Close()
					conn = cn
				}
				if by != "" {
					var r analytics.FunnelByReport
					if rc != nil {
						r, err = rc.FunnelBy(c.Context, c.String("campaign"), by)
						err = remoteErr(err)
					} else {
						r, err = analytics.FunnelBy(c.Context, conn, c.String("campaign"), by)
					}
					if err != nil {
						return err
					}
					var rows [][]string
					for _, g := range r.Groups {
						for _, s := range g.Steps {
							rows = append(rows, []string{g.Key, s.Name, u64(s.Contacts), pct(s.OfPrevious), pct(s.OfFirst)})
						}
					}
					return printReport(c.App.Writer, format, r, "", []string{by, "step", "contacts", "of_previous", "of_first"}, rows)
				}
				var f analytics.FunnelReport
				if rc != nil {
					f, err = rc.Funnel(c.Context, c.String("campaign"))
					err = remoteErr(err)
				} else {
					f, err = analytics.Funnel(c.Context, conn, c.String("campaign"))
				}
				if err != nil {
					return err
				}
				switch format {
				case "table":
					app.PrintFunnel(c.App.Writer, f)
					return printChannelLines(c, rc, conn, f.Campaign)
				case "json":
					return printJSON(c.App.Writer, f)
				}
				var rows [][]string
				for _, s := range f.Steps {
					rows = append(rows, []string{"step", s.Name, u64(s.Contacts), f4(s.OfPrevious), f4(s.OfFirst)})
				}
				for _, s := range f.Skipped {
					rows = append(rows, []string{"skipped", s.Reason, u64(s.Contacts), "", ""})
				}
				for _, s := range f.Failed {
					rows = append(rows, []string{"failed", strconv.Itoa(int(s.Code)), u64(s.Contacts), "", ""})
				}
				return printReport(c.App.Writer, format, f, "", []string{"kind", "name", "contacts", "of_previous", "of_first"}, rows)
			},
		}, {
			Name: "retention",
			Usage: "cohort retention: contacts by the week (Monday, UTC) of their first message, or with --by campaign by the campaign " +
				"that reached them, and the share engaged (read, clicked, replied, converted) each week after",
			Flags: append(periodFlags(84), &cli.IntFlag{Name: "weeks", Value: 8, Usage: "weeks after the first one to show"},
				&cli.StringFlag{Name: "by", Value: "week", Usage: "week (of the first message) or campaign (first sent in the period)"},
				&cli.StringSliceFlag{Name: "campaign", Usage: "with --by campaign: only this campaign (repeatable; much faster than every campaign of a busy period)"}),
			Action: reportAction(func(c *cli.Context, conn driver.Conn) (any, string, []string, [][]string, error) {
				from, to, err := period(c, 84)
				if err != nil {
					return nil, "", nil, nil, err
				}
				if c.Int("weeks") < 1 || c.Int("weeks") > 104 {
					return nil, "", nil, nil, usage("--weeks %d: want 1 to 104", c.Int("weeks"))
				}
				switch c.String("by") {
				case "week":
					if len(c.StringSlice("campaign")) > 0 {
						return nil, "", nil, nil, usage("--campaign needs --by campaign")
					}
				case "campaign":
					r, err := app.CampaignRetentionReport(c.Context, conn, app.ReportParams{From: from, To: to, Weeks: c.Int("weeks"), Campaigns: c.StringSlice("campaign")})
					if err != nil {
						return nil, "", nil, nil, err
					}
					header := []string{"campaign", "week", "contacts"}
					for k := range r.Weeks {
						header = append(header, "week_"+strconv.Itoa(k))
					}
					var rows [][]string
					for _, co := range r.Cohorts {
						row := []string{co.Campaign, co.Week, u64(co.Contacts)}
						for _, x := range co.Retained {
							row = append(row, pct(x))
						}
						rows = append(rows, row)
					}
					return r, "", header, rows, nil
				default:
					return nil, "", nil, nil, usage("--by %q: want week or campaign", c.String("by"))
				}
				r, err := app.RetentionReport(c.Context, conn, app.ReportParams{From: from, To: to, Weeks: c.Int("weeks")})
				if err != nil {
					return nil, "", nil, nil, err
				}
				header := []string{"cohort", "contacts"}
				for k := range r.Weeks {
					header = append(header, "week_"+strconv.Itoa(k))
				}
				var rows [][]string
				for _, co := range r.Cohorts {
					row := []string{co.Week, u64(co.Contacts)}
					for _, x := range co.Retained {
						row = append(row, pct(x))
					}
					rows = append(rows, row)
				}
				return r, "", header, rows, nil
			}),
		}, {
			Name:  "ab",
			Usage: "A/B comparison of a campaign's variants at a step, with a two-proportion z-test against the control",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "campaign", Required: true, Usage: "campaign ID"},
				&cli.StringFlag{Name: "step", Value: "read", Usage: "delivered, read, clicked, replied or converted"},
				&cli.StringFlag{Name: "control", Usage: "control variant (default: the first by name)"},
			},
			Action: reportAction(func(c *cli.Context, conn driver.Conn) (any, string, []string, [][]string, error) {
				switch c.String("step") {
				case "delivered", "read", "clicked", "replied", "converted":
				default:
					return nil, "", nil, nil, usage("--step %q: want delivered, read, clicked, replied or converted", c.String("step"))
				}
				r, err := app.ABReport(c.Context, conn, app.ReportParams{Campaign: c.String("campaign"), Step: c.String("step"), Control: c.String("control")})
				if err != nil {
					return nil, "", nil, nil, err
				}
				var rows [][]string
				for _, v := range r.Variants {
					z, p := f4(v.Z), f4(v.PValue)
					if v.Variant == r.Control {
						z, p = "control", ""
					}
					rows = append(rows, []string{v.Variant, u64(v.Sent), u64(v.Converted), pct(v.Rate), pct(v.Lift), z, p})
				}
				note := fmt.Sprintf("campaign %s, step %s, control %s (p < 0.05: the difference is significant)", r.Campaign, r.Step, r.Control)
				return r, note, []string{"variant", "sent", r.Step, "rate", "lift", "z", "p_value"}, rows, nil
			}),
		}, {
			Name: "lift",
			Usage: "a campaign against its holdout group (contacts skipped as holdout): the share that converted within a window " +
				"after the send or hold-out, the difference with a two-proportion z-test, and revenue per currency",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "campaign", Required: true, Usage: "campaign ID"},
				&cli.DurationFlag{Name: "window", Value: analytics.DefaultLiftWindow, Usage: "how long after the send a conversion counts"},
			},
			Action: reportAction(func(c *cli.Context, conn driver.Conn) (any, string, []string, [][]string, error) {
				if c.Duration("window") <= 0 {
					return nil, "", nil, nil, usage("--window %s: want a positive duration such as 168h", c.Duration("window"))
				}
				r, err := app.LiftReport(c.Context, conn, app.ReportParams{Campaign: c.String("campaign"), Window: c.Duration("window")})
				if err != nil {
					return nil, "", nil, nil, err
				}
				var rows [][]string
				for _, g := range []struct {
					name string
					g    analytics.LiftGroup
				}{{"treated", r.Treated}, {"holdout", r.Holdout}} {
					revenue := ""
					for i, a := range g.g.Revenue {
						if i > 0 {
							revenue += " "
						}
						revenue += fmt.Sprintf("%s %.2f (%d orders)", a.Currency, a.Value, a.Orders)
					}
					rows = append(rows, []string{g.name, u64(g.g.Contacts), u64(g.g.Converted), pct(g.g.Rate), revenue})
				}
				note := fmt.Sprintf("campaign %s, conversions within %s: lift %+.1f points", r.Campaign, c.Duration("window"), 100*r.Lift)
				if r.Holdout.Contacts == 0 {
					note += " (no holdout group: nothing to compare with)"
				} else {
					note += fmt.Sprintf(" (%+.1f%%), z %s, p %s (p < 0.05: the difference is significant)", 100*r.RelativeLift, f4(r.Z), f4(r.PValue))
				}
				return r, note, []string{"group", "contacts", "converted", "rate", "revenue"}, rows, nil
			}),
		}, {
			Name:  "heatmap",
			Usage: "messages sent and read share by weekday and hour in the recipients' local time (contacts without a known zone: UTC)",
			Flags: []cli.Flag{&cli.StringFlag{Name: "campaign", Usage: "campaign ID (default: all)"}},
			Action: reportAction(func(c *cli.Context, conn driver.Conn) (any, string, []string, [][]string, error) {
				r, err := app.HeatmapReport(c.Context, conn, app.ReportParams{Campaign: c.String("campaign")})
				if err != nil {
					return nil, "", nil, nil, err
				}
				var rows [][]string
				for _, x := range r.Cells {
					rows = append(rows, []string{x.Weekday, fmt.Sprintf("%02d", x.Hour), u64(x.Sent), u64(x.Read), pct(x.Rate)})
				}
				note := "local time of each recipient (contacts.tz)"
				if r.UTCMessages > 0 {
					note += fmt.Sprintf("; %d messages to contacts without a known time zone are in UTC", r.UTCMessages)
				}
				return r, note, []string{"weekday", "hour", "sent", "read", "read_rate"}, rows, nil
			}),
		}, {
			Name:  "senders",
			Usage: "per-sender health: delivery, failures by error code, opt-outs",
			Flags: periodFlags(7),
			Action: reportAction(func(c *cli.Context, conn driver.Conn) (any, string, []string, [][]string, error) {
				from, to, err := period(c, 7)
				if err != nil {
					return nil, "", nil, nil, err
				}
				r, err := app.SendersReport(c.Context, conn, app.ReportParams{From: from, To: to})
				if err != nil {
					return nil, "", nil, nil, err
				}
				var rows [][]string
				for _, h := range r {
					codes := ""
					for i, e := range h.Errors {
						if i > 0 {
							codes += " "
						}
						codes += fmt.Sprintf("%d×%d", e.Code, e.Contacts)
					}
					rows = append(rows, []string{h.Sender, u64(h.Sent), pct(h.DeliveryRate), u64(h.Read), u64(h.Failed), pct(h.FailureRate),
						u64(h.OptedOut), pct(h.OptOutRate), codes})
				}
				note := fmt.Sprintf("%s to %s (UTC)", from.Format(time.RFC3339), to.Format(time.RFC3339))
				return r, note, []string{"sender", "sent", "delivered", "read", "failed", "failure_rate", "opted_out", "opt_out_rate", "errors"}, rows, nil
			}),
		}, {
			Name:  "anomalies",
			Usage: "days whose sent, failed or opted-out volume lies outside 2σ of the days before",
			Flags: append(periodFlags(7), &cli.IntFlag{Name: "history", Value: 14, Usage: "days of history each day is compared with"},
				&cli.BoolFlag{Name: "all", Usage: "list every day, not only anomalies"}),
			Action: reportAction(func(c *cli.Context, conn driver.Conn) (any, string, []string, [][]string, error) {
				from, to, err := period(c, 7)
				if err != nil {
					return nil, "", nil, nil, err
				}
				if c.Int("history") < 3 {
					return nil, "", nil, nil, usage("--history %d: want at least 3 days", c.Int("history"))
				}
				r, err := app.AnomaliesReport(c.Context, conn, app.ReportParams{From: from, To: to, History: c.Int("history")})
				if err != nil {
					return nil, "", nil, nil, err
				}
				var rows [][]string
				n := 0
				for _, d := range r.Days {
					if d.Anomaly {
						n++
					}
					if d.Anomaly || c.Bool("all") {
						rows = append(rows, []string{d.Day, d.Kind, u64(d.Count), strconv.FormatFloat(d.Mean, 'f', 1, 64),
							strconv.FormatFloat(d.Sigma, 'f', 1, 64), strconv.FormatBool(d.Anomaly)})
					}
				}
				note := fmt.Sprintf("%d anomalies from %s to %s against %d days of history", n, day(from), day(to), r.History)
				return r, note, []string{"day", "kind", "count", "mean", "sigma", "anomaly"}, rows, nil
			}),
		}},
	}
}
