package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/journeys"
)

var journeyHeader = []string{"id", "name", "state", "version", "entry_event", "steps", "updated_at"}

func journeyRow(in journeys.Info) []string {
	return []string{in.ID, in.Name, in.State, strconv.Itoa(in.Version), in.EntryOn, strconv.Itoa(in.Steps), in.Updated.Format(time.RFC3339)}
}

func printJourney(c *cli.Context, in journeys.Info, source bool) error {
	if !source {
		in.Source = ""
	}
	if jsonOut(c) {
		return printJSON(c.App.Writer, in)
	}
	table(c.App.Writer, journeyHeader, [][]string{journeyRow(in)})
	if source {
		fmt.Fprintf(c.App.Writer, "\n%s", in.Source)
	}
	return nil
}

func readJourneyFile(c *cli.Context, verb string) ([]byte, error) {
	if c.NArg() != 1 {
		return nil, usage("journeys %s: give one FILE", verb)
	}
	src, err := os.ReadFile(c.Args().First())
	if err != nil {
		return nil, usage("%w", err)
	}
	return src, nil
}

// journeyFileErr names the file before each line of a definition error.
func journeyFileErr(c *cli.Context, err error) error {
	if es, ok := err.(journeys.Errors); ok {
		var b strings.Builder
		for i, e := range es {
			if i > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "%s:%d: %s", c.Args().First(), e.Line, e.Msg)
		}
		return usage("%s", b.String())
	}
	return err
}

func journeysCommand() *cli.Command {
	state := func(name, usageText, to string) *cli.Command {
		return &cli.Command{Name: name, Usage: usageText, ArgsUsage: "ID", Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage("journeys %s: give one journey ID", name)
			}
			d, err := deps(c, app.Needs{Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			in, err := app.SetJourneyState(c.Context, d, c.Args().First(), to)
			if err != nil {
				return err
			}
			return printJourney(c, in, false)
		}}
	}
	return &cli.Command{
		Name:  "journeys",
		Usage: "automated journeys: entry by event or segment, waits, sends through the throttle, exits",
		Subcommands: []*cli.Command{{
			Name:      "validate",
			Usage:     "check a journey definition (YAML) against its templates and senders; errors name the line",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				src, err := readJourneyFile(c, "validate")
				if err != nil {
					return err
				}
				if _, err := journeys.Parse(src); err != nil {
					return journeyFileErr(c, err)
				}
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				def, err := app.ValidateJourney(c.Context, d, src)
				if err != nil {
					return journeyFileErr(c, err)
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, map[string]any{"id": def.ID, "valid": true, "steps": len(def.Steps)})
				}
				fmt.Fprintf(c.App.Writer, "journey %s is valid (%d steps)\n", def.ID, len(def.Steps))
				return nil
			},
		}, {
			Name:      "add",
			Usage:     "validate and save a journey (a new version of an existing one)",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				src, err := readJourneyFile(c, "add")
				if err != nil {
					return err
				}
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				in, err := app.AddJourney(c.Context, d, src)
				if err != nil {
					return journeyFileErr(c, err)
				}
				return printJourney(c, in, false)
			},
		}, {
			Name:  "list",
			Usage: "list journeys",
			Action: func(c *cli.Context) error {
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				list, err := app.ListJourneys(c.Context, d)
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, list)
				}
				var rows [][]string
				for _, in := range list {
					rows = append(rows, journeyRow(in))
				}
				table(c.App.Writer, journeyHeader, rows)
				return nil
			},
		}, {
			Name:      "show",
			Usage:     "a journey's state and latest definition",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("journeys show: give one journey ID")
				}
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				in, err := app.ShowJourney(c.Context, d, c.Args().First())
				if err != nil {
					return err
				}
				return printJourney(c, in, true)
			},
		},
			state("pause", "stop entries and steps (contacts stay where they are)", journeys.Paused),
			state("resume", "resume a paused journey", journeys.Active),
			state("archive", "end a journey: nobody enters, contacts leave as their timers fire", journeys.Archived),
		},
	}
}

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "custom events (what your systems report contacts did; journeys are entered by them)",
		Subcommands: []*cli.Command{{
			Name:      "send",
			Usage:     "publish a custom event: herald events send --phone +66... order_placed order_id=A-1 total=990",
			ArgsUsage: "NAME [KEY=VALUE...]",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "id", Usage: "the event's id: the same id is one event however often it is sent"},
				&cli.UintFlag{Name: "contact", Usage: "contact id"},
				&cli.StringFlag{Name: "phone", Usage: "contact phone (E.164)"},
				&cli.StringFlag{Name: "email", Usage: "contact email"},
				&cli.TimestampFlag{Name: "time", Layout: time.RFC3339, Usage: "when it happened (default now)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 {
					return usage("events send: give the event NAME")
				}
				ce := app.CustomEvent{ID: c.String("id"), Name: c.Args().First(), ContactID: uint32(c.Uint("contact")), Phone: c.String("phone"), Email: c.String("email")}
				if t := c.Timestamp("time"); t != nil {
					ce.Time = *t
				}
				for _, kv := range c.Args().Tail() {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return usage("events send: property %q: want KEY=VALUE", kv)
					}
					if ce.Properties == nil {
						ce.Properties = map[string]string{}
					}
					ce.Properties[k] = v
				}
				d, err := deps(c, app.Needs{Redis: true, Kafka: true})
				if err != nil {
					return err
				}
				defer d.Close()
				sent, err := app.SendEvent(c.Context, d, ce)
				if err != nil {
					if fe, ok := err.(*app.FieldError); ok {
						return usage("%v", fe)
					}
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, sent)
				}
				fmt.Fprintf(c.App.Writer, "event %s (%s) for contact %d\n", sent.ID, sent.Name, sent.ContactID)
				return nil
			},
		}},
	}
}

func reportJourneyCommand() *cli.Command {
	return &cli.Command{
		Name:      "journey",
		Usage:     "a journey's funnel: entered, reached and sent per step, converted, exits by reason, time in journey",
		ArgsUsage: "ID",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage("report journey: give one journey ID")
			}
			d, err := deps(c, app.Needs{Redis: true, ClickHouse: true})
			if err != nil {
				return err
			}
			defer d.Close()
			rep, err := app.ReportJourney(c.Context, d, c.Args().First())
			if err != nil {
				return err
			}
			if jsonOut(c) {
				return printJSON(c.App.Writer, rep)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "journey %s: entered %d, converted %d, average time in journey %s\n", rep.Journey, rep.Entered, rep.Converted,
				(time.Duration(rep.AvgSecondsIn * float64(time.Second))).Round(time.Second))
			if rep.Triggered != nil {
				fmt.Fprintf(w, "triggering events (name and property filters of its entry): %d\n", *rep.Triggered)
			}
			var rows [][]string
			for _, s := range rep.Steps {
				rows = append(rows, []string{s.Step, strconv.FormatUint(s.Reached, 10), strconv.FormatUint(s.Sent, 10)})
			}
			table(w, []string{"step", "reached", "sent"}, rows)
			rows = nil
			for reason, n := range rep.Exits {
				rows = append(rows, []string{reason, strconv.FormatUint(n, 10)})
			}
			table(w, []string{"exit_reason", "contacts"}, rows)
			return nil
		},
	}
}
