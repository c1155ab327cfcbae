package cli

import (
	"fmt"
	"strconv"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
)

func tagsCommand() *cli.Command {
	targetFlags := []cli.Flag{
		&cli.StringSliceFlag{Name: "phone", Usage: "a contact's phone number (repeatable)"},
		&cli.StringFlag{Name: "file", Usage: "a file of phone numbers, one per line (# comments, blank lines and a \"phone\" header are skipped)"},
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
			Usage:       verb + " contacts given by --phone, --file or --segment",
			ArgsUsage:   "TAG",
			Description: "Changes the tag's bitmap and each contact's profile in pipelined batches; running it again changes nothing.",
			Flags:       targetFlags,
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("tags %s: give one TAG", name)
				}
				n := 0
				for _, f := range []string{"phone", "file", "segment"} {
					if c.IsSet(f) {
						n++
					}
				}
				if n != 1 {
					return usage("tags %s: give exactly one of --phone, --file or --segment", name)
				}
				if c.IsSet("segment") {
					if _, err := segments.Parse(c.String("segment")); err != nil {
						return usage("--segment: %w", err)
					}
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
				var ids *roaring.Bitmap
				var rejects []segments.Reject
				switch {
				case c.IsSet("segment"):
					if ids, err = comp.Contacts.Evaluate(c.Context, c.String("segment")); err != nil {
						return err
					}
				default:
					phones := c.StringSlice("phone")
					var lines []int
					if c.IsSet("file") {
						f, err := openFile(c.String("file"))
						if err != nil {
							return err
						}
						phones, lines, err = segments.ReadPhoneList(f)
						f.Close()
						if err != nil {
							return usage("--file: %w", err)
						}
					}
					if ids, rejects, err = comp.Contacts.PhoneIDs(c.Context, phones, c.String("default-region")); err != nil {
						return usage("%w", err)
					}
					for i := range rejects {
						if lines != nil {
							rejects[i].Line = lines[rejects[i].Line-1]
						}
					}
				}
				ch, err := comp.Contacts.TagContacts(c.Context, c.Args().First(), ids, add)
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, map[string]any{"change": ch, "rejected": rejects})
				}
				w := c.App.Writer
				fmt.Fprintf(w, "tag %s: %d contacts matched, %d changed\n", ch.Tag, ch.Matched, ch.Changed)
				for _, r := range rejects {
					where := "--phone " + strconv.Itoa(r.Line)
					if c.IsSet("file") {
						where = "line " + strconv.Itoa(r.Line)
					}
					fmt.Fprintf(w, "  %s: %s %q: %s\n", where, r.Reason, r.Value, r.Hint)
				}
				return nil
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
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				comp, err := d.Components()
				if err != nil {
					return err
				}
				tags, err := comp.Contacts.TagCounts(c.Context)
				if err != nil {
					return err
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
		}, change(true), change(false)},
	}
}
