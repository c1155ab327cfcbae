package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
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
			Usage:     "import contacts from a CSV or JSON Lines file (columns or keys: phone, email, name, tags, opted_in, ...)",
			ArgsUsage: "FILE (or - for stdin)",
			Description: "Streams the file (any size), normalizes phones to E.164 and emails to lower case, upserts contacts by\n" +
				"phone or email (a row with both links them to one contact), adds tags, and records opted_in values in the\n" +
				"consent ledger (herald.consent). Bad rows are reported with their line numbers and never stop the rest.\n" +
				"Re-importing the same file changes nothing. Columns other than phone, email, name, country, locale,\n" +
				"timezone, tags and opted_in become custom attributes; --column maps a column to a field, or to - to skip it.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "default-region", Usage: "region for numbers without +country code (e.g. TH, US)"},
				&cli.StringFlag{Name: "purpose", Value: "marketing", Usage: "consent purpose the opted_in column grants"},
				&cli.StringSliceFlag{Name: "tag", Usage: "tag added to every imported contact (repeatable)"},
				&cli.StringSliceFlag{Name: "remove-tag", Usage: "tag taken off every imported contact (repeatable)"},
				&cli.StringSliceFlag{Name: "column", Usage: "COLUMN=FIELD: read the file's COLUMN as FIELD (phone, email, name, tags, ..., an attribute name, or - to skip it); repeatable"},
				&cli.StringFlag{Name: "format", Usage: "csv or jsonl (default: jsonl for .jsonl and .ndjson files, else csv)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("contacts import: give one FILE (or - for stdin)")
				}
				format := strings.ToLower(c.String("format"))
				if format == "" {
					format = "csv"
					if ext := strings.ToLower(filepath.Ext(c.Args().First())); ext == ".jsonl" || ext == ".ndjson" {
						format = "jsonl"
					}
				}
				if format != "csv" && format != "jsonl" {
					return usage("contacts import: --format %q: want csv or jsonl", c.String("format"))
				}
				var columns map[string]string
				for _, m := range c.StringSlice("column") {
					col, field, ok := strings.Cut(m, "=")
					if !ok || strings.TrimSpace(col) == "" || strings.TrimSpace(field) == "" {
						return usage("contacts import: --column %q: want COLUMN=FIELD, e.g. --column Handphone=phone", m)
					}
					if columns == nil {
						columns = map[string]string{}
					}
					columns[strings.TrimSpace(col)] = strings.TrimSpace(field)
				}
				if rc := remote(c); rc != nil {
					if columns != nil {
						return usage("--column: not supported through the API (unset HERALD_API_URL to import directly)")
					}
					body, err := readText(c.Args().First())
					if err != nil {
						return err
					}
					q := url.Values{"source": {filepath.Base(c.Args().First())}, "add_tag": c.StringSlice("tag"), "remove_tag": c.StringSlice("remove-tag")}
					for k, v := range map[string]string{"default_region": c.String("default-region"), "purpose": c.String("purpose")} {
						if v != "" {
							q.Set(k, v)
						}
					}
					job, rejects, err := rc.Import(c.Context, []byte(body), format, q, 200*time.Millisecond)
					if err != nil {
						return remoteErr(err)
					}
					return printImport(c, segments.ImportReport{Read: job.Read, Created: job.Created, Updated: job.Updated, Unchanged: job.Unchanged,
						Rejected: job.Rejected, Rejects: rejects})
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
				opts := app.ImportOptions{DefaultRegion: c.String("default-region"), Purpose: c.String("purpose"), AddTags: c.StringSlice("tag"),
					RemoveTags: c.StringSlice("remove-tag"), Columns: columns, Source: filepath.Base(c.Args().First())}
				if app.IsTerminal(c.App.ErrWriter) {
					bar = progressbar.NewOptions64(size, progressbar.OptionSetWriter(c.App.ErrWriter), progressbar.OptionShowBytes(true),
						progressbar.OptionSetDescription("importing"), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
					opts.Progress = func(rows, bytes int64) { _ = bar.Set64(bytes) }
				}
				opts.Format = format
				defer debug.SetGCPercent(debug.SetGCPercent(segments.ImportGCPercent))
				rep, err := app.ImportContacts(c.Context, d, f, opts)
				if bar != nil {
					_ = bar.Finish()
				}
				if err != nil {
					return err
				}
				return printImport(c, rep)
			},
		}, {
			Name:      "erase",
			Usage:     "erase a contact: profile, identities (phone, email, Telegram chat id, LINE user id), tag and attribute bits (the consent ledger keeps a tombstone)",
			ArgsUsage: "PHONE, EMAIL, telegram:CHAT_ID or line:USER_ID",
			Description: "Records a revoke for every purpose given with --purpose on every channel (WhatsApp, SMS, email) in the consent ledger first (herald.consent: the\n" +
				"contact id, never the phone or email), then removes the contact from Redis. Importing the number or address\n" +
				"again creates a new contact.",
			Flags: []cli.Flag{
				&cli.StringSliceFlag{Name: "purpose", Value: cli.NewStringSlice("marketing", "utility"), Usage: "consent purposes revoked (repeatable)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("contacts erase: give one PHONE or EMAIL")
				}
				var er segments.Erased
				if rc := remote(c); rc != nil {
					id, err := rc.FindContact(c.Context, c.Args().First())
					if err == nil {
						er, err = rc.EraseContact(c.Context, id, c.StringSlice("purpose"))
					}
					if err := remoteContactErr(err); err != nil {
						return err
					}
				} else {
					d, comp, err := componentsFor(c, app.Needs{Kafka: true, Redis: true})
					if err != nil {
						return err
					}
					defer d.Close()
					er, err = app.EraseContact(c.Context, comp, c.Args().First(), c.StringSlice("purpose"))
					if errors.Is(err, segments.ErrNotFound) {
						return usage("%w", err)
					}
					if err != nil {
						return err
					}
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, er)
				}
				fmt.Fprintf(c.App.Writer, "erased contact %d (%d tags); the consent ledger has its tombstone\n", er.ContactID, er.Tags)
				return nil
			},
		}, contactsShowCommand()},
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
				if rc := remote(c); rc != nil {
					sc, err := rc.CountSegment(c.Context, c.Args().First())
					if err != nil {
						return remoteErr(err)
					}
					if jsonOut(c) {
						return printJSON(c.App.Writer, segmentCount{Expression: c.Args().First(), Contacts: sc.Count})
					}
					fmt.Fprintln(c.App.Writer, sc.Count)
					return nil
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				if _, err := segments.Parse(c.Args().First()); err != nil {
					return usage("%w", err)
				}
				n, err := comp.Contacts.Count(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, segmentCount{Expression: c.Args().First(), Contacts: n})
				}
				fmt.Fprintln(c.App.Writer, n)
				return nil
			},
		}, {
			Name:      "preview",
			Usage:     "show how many contacts an expression selects, each term's count, warnings, and sample contacts",
			ArgsUsage: "EXPR",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "limit", Value: 10, Usage: "sample contacts to show (spread over the members in id order)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("segments preview: give one EXPR (quote it)")
				}
				if c.Int("limit") < 0 || c.Int("limit") > 10000 {
					return usage("segments preview: --limit %d: want 0 to 10000", c.Int("limit"))
				}
				if _, err := segments.Parse(c.Args().First()); err != nil {
					return usage("%w", err)
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				p, err := comp.Contacts.Preview(c.Context, c.Args().First(), c.Int("limit"))
				if err != nil {
					return err
				}
				return printPreview(c, p)
			},
		}},
	}
}

// segmentCount is the JSON output of segments count.
type segmentCount struct {
	Expression string `json:"expression"`
	Contacts   uint64 `json:"contacts"`
}

func printPreview(c *cli.Context, p segments.Preview) error {
	if jsonOut(c) {
		return printJSON(c.App.Writer, p)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "%s\n%d contacts\n\n", p.Expr, p.Count)
	var rows [][]string
	for _, t := range p.Terms {
		rows = append(rows, []string{t.Term, strconv.FormatUint(t.Count, 10)})
	}
	table(w, []string{"TERM", "CONTACTS"}, rows)
	for _, wn := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
	if len(p.Sample) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	rows = rows[:0]
	for _, ct := range p.Sample {
		rows = append(rows, []string{strconv.FormatUint(uint64(ct.ID), 10), ct.Phone, ct.Name, ct.Country, ct.Locale, ct.TimeZone, strings.Join(ct.Tags, ",")})
	}
	table(w, []string{"ID", "PHONE", "NAME", "COUNTRY", "LOCALE", "TIME ZONE", "TAGS"}, rows)
	return nil
}
