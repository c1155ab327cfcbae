package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
)

func contactsCommand() *cli.Command {
	return &cli.Command{
		Name:  "contacts",
		Usage: "import and inspect contacts",
		Subcommands: []*cli.Command{{
			Name:      "import",
			Usage:     "import contacts from a CSV file (columns: phone, name, tags, opted_in, ...)",
			ArgsUsage: "FILE (or - for stdin)",
			Description: "Streams the file (any size), normalizes phones to E.164, upserts contacts by phone, adds tags,\n" +
				"and records opted_in values in the consent ledger (herald.consent). Bad rows are reported with\n" +
				"their line numbers and never stop the rest. Re-importing the same file changes nothing.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "default-region", Usage: "region for numbers without +country code (e.g. TH, US)"},
				&cli.StringFlag{Name: "purpose", Value: "marketing", Usage: "consent purpose the opted_in column grants"},
				&cli.StringSliceFlag{Name: "tag", Usage: "tag added to every imported contact (repeatable)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("contacts import: give one FILE (or - for stdin)")
				}
				d, err := deps(c, app.Needs{Kafka: true, Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				f, err := openFile(c.Args().First())
				if err != nil {
					return err
				}
				defer f.Close()
				var size int64 = -1
				if st, err := os.Stat(c.Args().First()); err == nil {
					size = st.Size()
				}
				var bar *progressbar.ProgressBar
				opts := app.ImportOptions{DefaultRegion: c.String("default-region"), Purpose: c.String("purpose"), AddTags: c.StringSlice("tag"), Source: filepath.Base(c.Args().First())}
				if app.IsTerminal(c.App.ErrWriter) {
					bar = progressbar.NewOptions64(size, progressbar.OptionSetWriter(c.App.ErrWriter), progressbar.OptionShowBytes(true),
						progressbar.OptionSetDescription("importing"), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
					opts.Progress = func(rows, bytes int64) { _ = bar.Set64(bytes) }
				}
				rep, err := app.ImportContacts(c.Context, d, f, opts)
				if bar != nil {
					_ = bar.Finish()
				}
				if err != nil {
					return err
				}
				return printImport(c, rep)
			},
		}},
	}
}

func printImport(c *cli.Context, rep segments.ImportReport) error {
	if jsonOut(c) {
		return printJSON(c.App.Writer, rep)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "rows read %d, created %d, updated %d, unchanged %d, rejected %d\n", rep.Read, rep.Created, rep.Updated, rep.Unchanged, rep.Rejected)
	for _, r := range rep.Rejects {
		fmt.Fprintf(w, "  line %d: %s", r.Line, r.Reason)
		if r.Value != "" {
			fmt.Fprintf(w, " (%q)", r.Value)
		}
		fmt.Fprintln(w)
	}
	if int64(len(rep.Rejects)) < rep.Rejected {
		fmt.Fprintf(w, "  ... and %d more rejected rows\n", rep.Rejected-int64(len(rep.Rejects)))
	}
	return nil
}

func segmentsCommand() *cli.Command {
	return &cli.Command{
		Name:  "segments",
		Usage: "evaluate segment expressions",
		Subcommands: []*cli.Command{{
			Name:      "count",
			Usage:     "count the contacts an expression selects, e.g. 'vip and (country:TH or country:ID) and not churned'",
			ArgsUsage: "EXPR",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("segments count: give one EXPR (quote it)")
				}
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				comp, err := d.Components()
				if err != nil {
					return err
				}
				if _, err := segments.Parse(c.Args().First()); err != nil {
					return usage("%w", err)
				}
				n, err := comp.Contacts.Count(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, map[string]any{"expression": c.Args().First(), "contacts": n})
				}
				fmt.Fprintln(c.App.Writer, n)
				return nil
			},
		}},
	}
}

func sendersCommand() *cli.Command {
	return &cli.Command{
		Name:  "senders",
		Usage: "manage sender accounts (WhatsApp phone numbers)",
		Subcommands: []*cli.Command{{
			Name:  "add",
			Usage: "add or update a WhatsApp sender",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "phone-number-id", Required: true, Usage: "the Cloud API phone-number id"},
				&cli.StringFlag{Name: "id", Usage: "Herald's id for the sender (default: the phone-number id)"},
				&cli.StringFlag{Name: "token", Usage: "Cloud API access token", EnvVars: []string{"HERALD_WHATSAPP_TOKEN"}},
				&cli.Float64Flag{Name: "rate", Value: 80, Usage: "messages per second (Cloud API default 80)"},
				&cli.StringFlag{Name: "name", Usage: "display name"},
			},
			Action: func(c *cli.Context) error {
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				comp, err := d.Components()
				if err != nil {
					return err
				}
				s := dispatcher.Sender{ID: c.String("id"), Channel: "whatsapp", PhoneNumberID: c.String("phone-number-id"), Token: c.String("token"), Rate: c.Float64("rate"), Name: c.String("name")}
				if s.ID == "" {
					s.ID = s.PhoneNumberID
				}
				if err := s.Validate(); err != nil {
					return usage("%w", err)
				}
				if err := comp.Senders.Put(c.Context, s); err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, s)
				}
				fmt.Fprintf(c.App.Writer, "sender %s saved (phone-number id %s, %v msg/s)\n", s.ID, s.PhoneNumberID, s.Rate)
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list senders",
			Action: func(c *cli.Context) error {
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				comp, err := d.Components()
				if err != nil {
					return err
				}
				list, err := comp.Senders.List(c.Context)
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, list)
				}
				var rows [][]string
				for _, s := range list {
					rows = append(rows, []string{s.ID, s.Channel, s.PhoneNumberID, strconv.FormatFloat(s.Rate, 'f', -1, 64), s.Name})
				}
				table(c.App.Writer, []string{"ID", "CHANNEL", "PHONE-NUMBER-ID", "RATE", "NAME"}, rows)
				return nil
			},
		}},
	}
}

func templatesCommand() *cli.Command {
	return &cli.Command{
		Name:  "templates",
		Usage: "manage message templates",
		Subcommands: []*cli.Command{{
			Name:      "add",
			Usage:     "validate and save a template from a YAML file (a new version if it changed)",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("templates add: give one FILE")
				}
				src, err := os.ReadFile(c.Args().First())
				if err != nil {
					return usage("%w", err)
				}
				t, err := templates.ParseFile(src, filepath.Base(c.Args().First()))
				if err != nil {
					return usage("%w", err)
				}
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				comp, err := d.Components()
				if err != nil {
					return err
				}
				v, err := comp.Templates.Save(c.Context, t, src)
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, map[string]any{"name": t.Name, "version": v})
				}
				fmt.Fprintf(c.App.Writer, "template %s saved (version %d)\n", t.Name, v)
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list templates",
			Action: func(c *cli.Context) error {
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				comp, err := d.Components()
				if err != nil {
					return err
				}
				list, err := comp.Templates.List(c.Context)
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, list)
				}
				var rows [][]string
				for _, s := range list {
					rows = append(rows, templateRow(s))
				}
				table(c.App.Writer, templateHeader, rows)
				return nil
			},
		}},
	}
}

func campaignsCommand() *cli.Command {
	idArg := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", usage("%s: give one campaign ID", c.Command.Name)
		}
		return c.Args().First(), nil
	}
	return &cli.Command{
		Name:  "campaigns",
		Usage: "create, launch and follow campaigns",
		Subcommands: []*cli.Command{{
			Name:  "create",
			Usage: "create a draft campaign",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "segment", Required: true, Usage: "who: a segment expression, e.g. 'vip and not churned'"},
				&cli.StringFlag{Name: "template", Required: true, Usage: "what: a template name"},
				&cli.StringSliceFlag{Name: "sender", Required: true, Usage: "from: sender id (repeatable: contacts are spread over them)"},
				&cli.StringFlag{Name: "name", Usage: "a name for people"},
				&cli.StringFlag{Name: "purpose", Value: "marketing", Usage: "consent purpose: marketing or utility"},
			},
			Action: func(c *cli.Context) error {
				d, comp, err := components(c)
				if err != nil {
					return err
				}
				defer d.Close()
				if _, err := segments.Parse(c.String("segment")); err != nil {
					return usage("--segment: %w", err)
				}
				if _, err := comp.Templates.Get(c.Context, c.String("template")); err != nil {
					return usage("--template %q: %w (add it with `herald templates add FILE`)", c.String("template"), err)
				}
				cp, err := comp.Campaigns.Create(c.Context, dispatcher.Campaign{Name: c.String("name"), Segment: c.String("segment"),
					Template: c.String("template"), Senders: c.StringSlice("sender"), Purpose: c.String("purpose")}, comp.Senders)
				if err != nil {
					return usage("%w", err)
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, cp)
				}
				fmt.Fprintf(c.App.Writer, "campaign %s created (draft); launch it with: herald campaigns launch %s\n", cp.ID, cp.ID)
				return nil
			},
		}, {
			Name:      "launch",
			Usage:     "snapshot the audience and queue one job per contact (launching twice is a no-op)",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				id, err := idArg(c)
				if err != nil {
					return err
				}
				d, comp, err := components(c)
				if err != nil {
					return err
				}
				defer d.Close()
				st, err := comp.Campaigns.Launch(c.Context, id, nil)
				if err != nil {
					return err
				}
				return printStatus(c, st)
			},
		}, {
			Name:      "status",
			Usage:     "show a campaign's state and progress",
			ArgsUsage: "ID",
			Flags:     []cli.Flag{&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "follow with a live progress bar until it completes"}},
			Action: func(c *cli.Context) error {
				id, err := idArg(c)
				if err != nil {
					return err
				}
				d, comp, err := components(c)
				if err != nil {
					return err
				}
				defer d.Close()
				if c.Bool("watch") {
					if err := app.WatchCampaign(c.Context, comp.Campaigns, id, c.App.ErrWriter); err != nil {
						return err
					}
				}
				st, err := comp.Campaigns.Status(c.Context, id)
				if err != nil {
					return err
				}
				return printStatus(c, st)
			},
		}, {
			Name:  "list",
			Usage: "list recent campaigns",
			Flags: []cli.Flag{&cli.Int64Flag{Name: "limit", Value: 50}},
			Action: func(c *cli.Context) error {
				d, comp, err := components(c)
				if err != nil {
					return err
				}
				defer d.Close()
				list, err := comp.Campaigns.List(c.Context, c.Int64("limit"))
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, list)
				}
				var rows [][]string
				for _, s := range list {
					rows = append(rows, []string{s.ID, s.Name, string(s.State), s.Template, fmt.Sprint(s.Audience), fmt.Sprint(s.Sent), fmt.Sprint(s.Skipped), fmt.Sprint(s.Failed)})
				}
				table(c.App.Writer, []string{"ID", "NAME", "STATE", "TEMPLATE", "AUDIENCE", "SENT", "SKIPPED", "FAILED"}, rows)
				return nil
			},
		}},
	}
}

func components(c *cli.Context) (*app.Deps, *app.Components, error) {
	d, err := deps(c, app.Needs{Kafka: c.Command.Name == "launch", Redis: true})
	if err != nil {
		return nil, nil, err
	}
	comp, err := d.Components()
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, comp, nil
}

func printStatus(c *cli.Context, st dispatcher.Status) error {
	if jsonOut(c) {
		return printJSON(c.App.Writer, st)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "campaign %s (%s): %s\n", st.ID, st.Name, st.State)
	fmt.Fprintf(w, "  segment   %s\n  template  %s\n  senders   %v\n", st.Segment, st.Template, st.Senders)
	fmt.Fprintf(w, "  audience %d  queued %d  sent %d  skipped %d  failed %d  done %d\n", st.Audience, st.Queued, st.Sent, st.Skipped, st.Failed, st.Done)
	return nil
}

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

var templateHeader = []string{"NAME", "VERSION", "KIND", "CHANNEL", "LOCALE", "VARIANTS", "WHATSAPP TEMPLATE", "SAVED"}

func templateRow(s templates.Summary) []string {
	return []string{s.Name, strconv.Itoa(s.Version), string(s.Kind), s.Channel, s.Locale, strings.Join(s.Variants, ","),
		strings.Join(s.WhatsAppTemplates, ","), s.SavedAt.UTC().Format(time.RFC3339)}
}
