package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
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
