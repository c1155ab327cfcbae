package cli

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/recurring"
)

const schedulesHelp = `A schedule runs a campaign again and again: each run is an ordinary campaign
(id <schedule>-<yyyymmddThhmm>) with its own audience snapshot, taken when it starts, and
its own funnel. The scheduler's leader (every worker runs a scheduler) starts each run
once, even with several processes, and runs an instant missed while none ran late once if
it is within --catch-up (default 1h), else records it as skipped.

Examples:
   # every Monday at 10:00 Berlin time, to VIPs not messaged by it in the last 7 days
   herald schedules create --id weekly-vip --cron '0 10 * * mon' --zone Europe/Berlin \
     --segment 'vip and not churned' --template weekly_offer --sender 1065403522 \
     --exclude-reached-within 7d

   # at 10:00 in each recipient's own time zone, on weekdays, 20 runs at most
   herald schedules create --local-time 10:00 --days mon-fri --max-runs 20 \
     --segment 'tier_a' --template daily_tip --sender 1065403522

   herald schedules runs weekly-vip          # each run's audience, sends and funnel`

func schedulesCommand() *cli.Command {
	idArg := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", usage("%s: give one schedule ID", c.Command.Name)
		}
		return c.Args().First(), nil
	}
	transition := func(do func(*recurring.Store, *cli.Context, string) (recurring.Schedule, error)) cli.ActionFunc {
		return func(c *cli.Context) error {
			id, err := idArg(c)
			if err != nil {
				return err
			}
			d, _, err := componentsFor(c, app.Needs{Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			store, err := d.Schedules()
			if err != nil {
				return err
			}
			sch, err := do(store, c, id)
			if err != nil {
				return err
			}
			return printSchedule(c, sch)
		}
	}
	return &cli.Command{
		Name:        "schedules",
		Usage:       "recurring campaigns: create, list, show, pause, resume, delete; their runs",
		Description: schedulesHelp,
		Subcommands: []*cli.Command{{
			Name:        "create",
			Usage:       "create a recurring campaign (active at once; --paused to start it later with resume)",
			Description: schedulesHelp,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "id", Usage: "the schedule's id: 1 to 40 of a-z, 0-9, _ and - (default s1, s2…); runs are <id>-<yyyymmddThhmm>"},
				&cli.StringFlag{Name: "cron", Usage: "when: a 5-field cron expression (minute hour day-of-month month day-of-week) or @daily, @weekly…, e.g. '0 10 * * mon-fri'"},
				&cli.StringFlag{Name: "zone", Usage: "the IANA time zone --cron is read in, e.g. Europe/Berlin or UTC (DST-exact: a skipped time runs when the clocks jump, a repeated one once)"},
				&cli.StringFlag{Name: "local-time", Usage: "instead of --cron: send at this time (HH:MM) in each recipient's own zone; the run starts when that time comes first on Earth"},
				&cli.StringFlag{Name: "days", Usage: "with --local-time: the recipients' days, e.g. mon-fri (default every day)"},
				&cli.StringFlag{Name: "exclude-reached-within", Usage: "leave out contacts a run of this schedule sent to within this long, e.g. 7d or 36h (needs ClickHouse)"},
				&cli.IntFlag{Name: "max-runs", Usage: "end the schedule after this many runs (0: no limit)"},
				&cli.StringFlag{Name: "until", Usage: "no run after this time: RFC 3339 (2027-03-31T18:00:00Z) or a date (UTC midnight)"},
				&cli.StringFlag{Name: "catch-up", Value: "1h", Usage: "an instant missed while no scheduler ran still runs if at most this late"},
				&cli.BoolFlag{Name: "paused", Usage: "create it paused (start it with `herald schedules resume ID`)"},
				&cli.StringFlag{Name: "segment", Required: true, Usage: "who: a segment expression, evaluated again at each run, e.g. 'vip and not churned'"},
				&cli.StringFlag{Name: "template", Required: true, Usage: "what: a template name"},
				&cli.StringFlag{Name: "fallback-template", Usage: "an approved WhatsApp template for contacts outside the 24h window (see campaigns create)"},
				&cli.StringSliceFlag{Name: "sender", Required: true, Usage: "from: sender id (repeatable)"},
				&cli.StringFlag{Name: "name", Usage: "a name for people (runs are named after it and their time)"},
				&cli.StringFlag{Name: "purpose", Value: "marketing", Usage: "consent purpose: marketing or utility"},
				&cli.StringFlag{Name: "channel", Usage: "whatsapp, email or sms (default: the senders' channel)"},
				&cli.BoolFlag{Name: "track-links", Usage: "turn URLs in the message into signed click-tracking links"},
				&cli.StringFlag{Name: "routing", Value: "round_robin", Usage: "round_robin, or country"},
				&cli.Float64Flag{Name: "holdout", Usage: "share of each run's audience kept out as a control group (0 to 0.5)"},
				&cli.StringFlag{Name: "quiet-hours", Usage: "no sends in this daily period of each recipient's local time, e.g. 21:00-08:00"},
				&cli.StringFlag{Name: "allowed-days", Usage: "send only on these days of the recipient's week, e.g. mon-fri"},
				&cli.Float64Flag{Name: "max-error-rate", Usage: "pause a run when this share of its sends fail (0: the worker's default; -1: never)"},
			},
			Action: func(c *cli.Context) error {
				sp := recurring.Spec{ID: c.String("id"), Name: c.String("name"), Cron: c.String("cron"), Zone: c.String("zone"),
					LocalTime: c.String("local-time"), Days: c.String("days"), MaxRuns: c.Int("max-runs"),
					Campaign: dispatcher.Campaign{Segment: c.String("segment"), Template: c.String("template"),
						FallbackTemplate: c.String("fallback-template"), Channel: c.String("channel"), Senders: c.StringSlice("sender"),
						Purpose: c.String("purpose"), TrackLinks: c.Bool("track-links"), MaxErrorRate: c.Float64("max-error-rate"),
						Routing: c.String("routing"), QuietHours: c.String("quiet-hours"), Holdout: c.Float64("holdout"),
						AllowedDays: c.String("allowed-days")}}
				for flag, dst := range map[string]*int64{"exclude-reached-within": &sp.ExcludeReachedWithinMS, "catch-up": &sp.CatchUpMS} {
					if v := c.String(flag); v != "" {
						dur, err := recurring.ParseDuration(v)
						if err != nil {
							return usage("--%s: %w", flag, err)
						}
						*dst = time.Duration(dur).Milliseconds()
					}
				}
				if v := c.String("until"); v != "" {
					t, err := parseWhen("--until", v)
					if err != nil {
						return err
					}
					sp.Until = t
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true, ClickHouse: sp.ExcludeReachedWithinMS > 0})
				if err != nil {
					return err
				}
				defer d.Close()
				sch, err := app.CreateSchedule(c.Context, d, comp, sp, c.Bool("paused"))
				if err != nil {
					return scheduleFlagError(err)
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, sch)
				}
				fmt.Fprintf(c.App.Writer, "schedule %s created (%s)", sch.ID, sch.State)
				if sch.State == recurring.Active {
					fmt.Fprintf(c.App.Writer, "; first run %s", sch.NextRunAt.Local().Format(time.RFC3339))
				}
				fmt.Fprintln(c.App.Writer)
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list schedules, newest first",
			Flags: []cli.Flag{&cli.Int64Flag{Name: "limit", Value: 100, Usage: "at most this many"}},
			Action: func(c *cli.Context) error {
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				d, _, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				store, err := d.Schedules()
				if err != nil {
					return err
				}
				list, err := store.List(c.Context, c.Int64("limit"))
				if err != nil {
					return err
				}
				if format == "json" {
					return printJSON(c.App.Writer, list)
				}
				header := []string{"id", "name", "when", "state", "runs", "next_run_at", "segment", "template"}
				rows := make([][]string, 0, len(list))
				for _, s := range list {
					rows = append(rows, []string{s.ID, s.Name, scheduleWhen(s.Spec), string(s.State), strconv.Itoa(s.Runs), fmtTime(s.NextRunAt), s.Campaign.Segment, s.Campaign.Template})
				}
				return printRows(c.App.Writer, format, header, rows)
			},
		}, {
			Name:      "show",
			Usage:     "show a schedule",
			ArgsUsage: "ID",
			Action: transition(func(s *recurring.Store, c *cli.Context, id string) (recurring.Schedule, error) {
				return s.Get(c.Context, id)
			}),
		}, {
			Name:      "pause",
			Usage:     "stop starting runs (a run under way goes on: pause its campaign with `herald campaigns pause`)",
			ArgsUsage: "ID",
			Action: transition(func(s *recurring.Store, c *cli.Context, id string) (recurring.Schedule, error) {
				return s.Pause(c.Context, id)
			}),
		}, {
			Name:      "resume",
			Usage:     "start runs again, from the next instant after now (instants passed while paused do not run)",
			ArgsUsage: "ID",
			Action: transition(func(s *recurring.Store, c *cli.Context, id string) (recurring.Schedule, error) {
				return s.Resume(c.Context, id)
			}),
		}, {
			Name:      "delete",
			Usage:     "delete a schedule and its run history (the runs' campaigns and funnels stay)",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				id, err := idArg(c)
				if err != nil {
					return err
				}
				d, _, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				store, err := d.Schedules()
				if err != nil {
					return err
				}
				if err := store.Delete(c.Context, id); err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, scheduleDeleted{ID: id, Deleted: true})
				}
				fmt.Fprintf(c.App.Writer, "schedule %s deleted\n", id)
				return nil
			},
		}, {
			Name:      "runs",
			Usage:     "a schedule's runs, newest first: launched (with sends and funnel) or skipped (with why)",
			ArgsUsage: "ID",
			Flags:     []cli.Flag{&cli.Int64Flag{Name: "limit", Value: 50, Usage: "at most this many"}},
			Action: func(c *cli.Context) error {
				id, err := idArg(c)
				if err != nil {
					return err
				}
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				runs, err := app.ScheduleRuns(c.Context, d, comp, id, c.Int64("limit"))
				if err != nil {
					return err
				}
				if format == "json" {
					return printJSON(c.App.Writer, runs)
				}
				header := []string{"run", "scheduled_at", "status", "reason", "audience", "excluded", "sent", "skipped", "failed", "delivered", "read"}
				rows := make([][]string, 0, len(runs))
				for _, r := range runs {
					steps := map[string]uint64{}
					for _, s := range r.Funnel {
						steps[s.Name] = s.Contacts
					}
					step := func(name string) string {
						if len(r.Funnel) == 0 {
							return ""
						}
						return strconv.FormatUint(steps[name], 10)
					}
					rows = append(rows, []string{r.ID, fmtTime(r.ScheduledAt), string(r.Status), r.Reason, strconv.FormatInt(r.Audience, 10),
						strconv.FormatInt(r.Excluded, 10), strconv.FormatInt(r.Sent, 10), strconv.FormatInt(r.Skip, 10), strconv.FormatInt(r.Failed, 10),
						step("delivered"), step("read")})
				}
				return printRows(c.App.Writer, format, header, rows)
			},
		}},
	}
}

// scheduleDeleted is what `schedules delete -o json` prints.
type scheduleDeleted struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

func scheduleWhen(s recurring.Spec) string {
	if s.Cron != "" {
		return s.Cron + " " + s.Zone
	}
	w := s.LocalTime + " local"
	if s.Days != "" {
		w += " " + s.Days
	}
	return w
}

func printSchedule(c *cli.Context, s recurring.Schedule) error {
	if jsonOut(c) {
		return printJSON(c.App.Writer, s)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "schedule %s (%s): %s, %d runs\n", s.ID, s.Name, s.State, s.Runs)
	fmt.Fprintf(w, "  when      %s\n", scheduleWhen(s.Spec))
	if !s.NextRunAt.IsZero() && s.State == recurring.Active {
		fmt.Fprintf(w, "  next run  %s\n", s.NextRunAt.Local().Format(time.RFC3339))
	}
	if s.EndReason != "" {
		fmt.Fprintf(w, "  ended     %s\n", s.EndReason)
	}
	fmt.Fprintf(w, "  segment   %s\n  template  %s\n  senders   %s\n", s.Campaign.Segment, s.Campaign.Template, strings.Join(s.Campaign.Senders, ", "))
	if s.ExcludeReachedWithinMS > 0 {
		fmt.Fprintf(w, "  excludes  contacts reached within %s\n", recurring.Duration(s.ExcludeWindow()))
	}
	if s.MaxRuns > 0 {
		fmt.Fprintf(w, "  max runs  %d\n", s.MaxRuns)
	}
	if !s.Until.IsZero() {
		fmt.Fprintf(w, "  until     %s\n", s.Until.Local().Format(time.RFC3339))
	}
	return nil
}

// printRows prints a header and rows as a table or CSV.
func printRows(w io.Writer, format string, header []string, rows [][]string) error {
	if format == "csv" {
		cw := csv.NewWriter(w)
		cw.Write(header)
		cw.WriteAll(rows)
		return cw.Error()
	}
	upper := make([]string, len(header))
	for i, h := range header {
		upper[i] = strings.ToUpper(h)
	}
	table(w, upper, rows)
	return nil
}

// scheduleFlagError names the flag of a refused field: campaign/<field> is the campaign
// flag, the schedule's own fields theirs.
func scheduleFlagError(err error) error {
	var fe *app.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	name := strings.TrimPrefix(fe.Field, "campaign/")
	name = strings.TrimSuffix(name, "_ms")
	if name == "senders" {
		name = "sender"
	}
	return usage("--%s: %w", strings.ReplaceAll(name, "_", "-"), fe.Err)
}
