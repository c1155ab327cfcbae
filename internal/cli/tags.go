package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/RoaringBitmap/roaring/v2"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/apiclient"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
)

func tagsCommand() *cli.Command {
	targetFlags := []cli.Flag{
		&cli.StringSliceFlag{Name: "phone", Usage: "a contact's phone number (repeatable)"},
		&cli.StringSliceFlag{Name: "email", Usage: "a contact's email address (repeatable)"},
		&cli.StringFlag{Name: "file", Usage: "a file of phone numbers or email addresses, one per line (# comments, blank lines and a \"phone\" or \"email\" header are skipped)"},
		&cli.StringFlag{Name: "segment", Usage: "a segment expression, e.g. 'vip and country:TH'"},
		&cli.StringFlag{Name: "default-region", Usage: "region of numbers written without +country code (e.g. TH)"},
	}
	change := func(add bool) *cli.Command {
		name, verb := "add", "add TAG to"
		if !add {
			name, verb = "remove", "remove TAG from"
		}
		return &cli.Command{
			Name:        name,
			Usage:       verb + " contacts given by --phone/--email, --file or --segment",
			ArgsUsage:   "TAG",
			Description: "Changes the tag's bitmap and each contact's profile in pipelined batches; running it again changes nothing.",
			Flags:       targetFlags,
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("tags %s: give one TAG", name)
				}
				n := 0
				if c.IsSet("phone") || c.IsSet("email") {
					n++
				}
				for _, f := range []string{"file", "segment"} {
					if c.IsSet(f) {
						n++
					}
				}
				if n != 1 {
					return usage("tags %s: give contacts with --phone and --email, or --file, or --segment (one of the three)", name)
				}
				if c.IsSet("segment") {
					if _, err := segments.Parse(c.String("segment")); err != nil {
						return usage("--segment: %w", err)
					}
				}
				if rc := remote(c); rc != nil {
					t := apiclient.TagTarget{Segment: c.String("segment"), Phones: append(c.StringSlice("phone"), c.StringSlice("email")...), DefaultRegion: c.String("default-region")}
					if c.IsSet("file") {
						text, err := readText(c.String("file"))
						if err != nil {
							return err
						}
						t.File, t.Phones = &text, nil
					}
					res, err := rc.Tag(c.Context, c.Args().First(), add, t)
					if err != nil {
						return remoteErr(err)
					}
					return printTagResult(c, res)
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				t := app.TagTarget{Segment: c.String("segment"), Phones: append(c.StringSlice("phone"), c.StringSlice("email")...), Region: c.String("default-region")}
				if c.IsSet("file") {
					f, err := openFile(c.String("file"))
					if err != nil {
						return err
					}
					defer f.Close()
					t.File, t.Phones = f, nil
				}
				var bar *progressbar.ProgressBar
				var progress func(done, total uint64)
				if app.IsTerminal(c.App.ErrWriter) {
					progress = func(done, total uint64) {
						if bar == nil {
							bar = progressbar.NewOptions64(int64(total), progressbar.OptionSetWriter(c.App.ErrWriter), progressbar.OptionShowCount(),
								progressbar.OptionSetDescription("tagging"), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
						}
						_ = bar.Set64(int64(done))
					}
				}
				res, err := app.TagContacts(c.Context, comp, c.Args().First(), add, t, progress)
				if bar != nil {
					_ = bar.Finish()
				}
				if err != nil {
					var fe *app.FieldError
					if errors.As(err, &fe) && fe.Field == "tag" {
						return usage("TAG: %w", fe.Err)
					}
					return flagError(err, map[string]string{"phones": "phone"})
				}
				return printTagResult(c, res)
			},
		}
	}
	return &cli.Command{
		Name:  "tags",
		Usage: "the tag library, and tagging contacts",
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "every tag with its member count",
			Action: func(c *cli.Context) error {
				var tags []segments.TagCount
				if rc := remote(c); rc != nil {
					var err error
					if tags, err = rc.Tags(c.Context); err != nil {
						return remoteErr(err)
					}
				} else {
					d, comp, err := componentsFor(c, app.Needs{Redis: true})
					if err != nil {
						return err
					}
					defer d.Close()
					if tags, err = comp.Contacts.TagCounts(c.Context); err != nil {
						return err
					}
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, tags)
				}
				rows := make([][]string, len(tags))
				for i, t := range tags {
					rows[i] = []string{t.Name, strconv.FormatUint(t.Count, 10)}
				}
				table(c.App.Writer, []string{"TAG", "CONTACTS"}, rows)
				return nil
			},
		}, change(true), change(false), {
			Name:      "compute",
			Usage:     "compute rule tags from ClickHouse: each rule's query gives the tag's exact members",
			ArgsUsage: "RULEFILE",
			Description: "RULEFILE is YAML:\n\n" +
				"  rules:\n" +
				"    - tag: vip\n" +
				"      description: two orders in 90 days and a click rate of 25% or more\n" +
				"      query: SELECT contact_id FROM ... GROUP BY contact_id HAVING ...\n\n" +
				"Each query is a read-only SELECT returning one column of contact ids. Contacts it returns get the tag,\n" +
				"the others lose it; running it again with the same data changes nothing.",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("tags compute: give one RULEFILE")
				}
				f, err := openFile(c.Args().First())
				if err != nil {
					return err
				}
				rf, err := segments.ParseRules(f)
				f.Close()
				if err != nil {
					return usage("%s: %w", c.Args().First(), err)
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true, ClickHouse: true})
				if err != nil {
					return err
				}
				defer d.Close()
				conn, err := d.ClickHouse(c.Context)
				if err != nil {
					return err
				}
				res, err := comp.Contacts.ComputeRules(c.Context, rf, clickhouseIDs{conn: conn})
				if jsonOut(c) {
					if perr := printJSON(c.App.Writer, res); perr != nil {
						return perr
					}
				} else {
					rows := make([][]string, len(res))
					for i, r := range res {
						rows[i] = []string{r.Tag, strconv.FormatUint(r.Members, 10), "+" + strconv.FormatUint(r.Added, 10), "-" + strconv.FormatUint(r.Removed, 10)}
					}
					table(c.App.Writer, []string{"TAG", "CONTACTS", "ADDED", "REMOVED"}, rows)
				}
				return err
			},
		}},
	}
}

// clickhouseIDs runs rule queries on ClickHouse: one column of contact ids, of any
// integer type.
type clickhouseIDs struct{ conn driver.Conn }

func (q clickhouseIDs) ContactIDs(ctx context.Context, query string) (*roaring.Bitmap, error) {
	rows, err := q.conn.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cts := rows.ColumnTypes()
	if len(cts) != 1 {
		return nil, fmt.Errorf("the query returns %d columns: return one column of contact ids", len(cts))
	}
	bm := roaring.New()
	for rows.Next() {
		v := reflect.New(cts[0].ScanType())
		if err := rows.Scan(v.Interface()); err != nil {
			return nil, err
		}
		var id uint64
		switch x := reflect.Indirect(v); x.Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			id = x.Uint()
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if x.Int() < 0 {
				return nil, fmt.Errorf("contact id %d is negative", x.Int())
			}
			id = uint64(x.Int())
		default:
			return nil, fmt.Errorf("the query returns %s: return contact ids (an integer column such as contact_id)", cts[0].DatabaseTypeName())
		}
		if id == 0 || id > math.MaxUint32 {
			return nil, fmt.Errorf("contact id %d is out of range", id)
		}
		bm.Add(uint32(id))
	}
	return bm, rows.Err()
}

// printTagResult prints what tags add or remove did.
func printTagResult(c *cli.Context, res app.TagResult) error {
	if jsonOut(c) {
		return printJSON(c.App.Writer, res)
	}
	ch, rejects := res.Change, res.Rejected
	w := c.App.Writer
	fmt.Fprintf(w, "tag %s: %d contacts matched, %d changed\n", ch.Tag, ch.Matched, ch.Changed)
	for _, r := range rejects {
		if c.IsSet("file") {
			fmt.Fprintf(w, "  line %d: %s %q: %s\n", r.Line, r.Reason, r.Value, r.Hint)
		} else {
			fmt.Fprintf(w, "  %s %q: %s\n", r.Reason, r.Value, r.Hint)
		}
	}
	return nil
}
