package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
)

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
				if _, err := templates.ParseFile(src, filepath.Base(c.Args().First())); err != nil {
					return usage("%w", err)
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				saved, err := app.SaveTemplate(c.Context, comp, src, filepath.Base(c.Args().First()))
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, saved)
				}
				fmt.Fprintf(c.App.Writer, "template %s saved (version %d)\n", saved.Name, saved.Version)
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list templates",
			Action: func(c *cli.Context) error {
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
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
		}, showCommand(), validateCommand(), previewCommand()},
	}
}

func showCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "print a stored template: its summary and YAML source",
		ArgsUsage: "NAME",
		Flags:     []cli.Flag{&cli.IntFlag{Name: "version", Usage: "a stored version (default: the latest)"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage("templates show: give one template NAME")
			}
			if c.Int("version") < 0 {
				return usage("templates show: --version must be 1 or more")
			}
			d, comp, err := componentsFor(c, app.Needs{Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			ts, err := app.ShowTemplate(c.Context, comp, c.Args().First(), c.Int("version"))
			if errors.Is(err, templates.ErrNotFound) {
				return usage("%w (templates list shows what is stored)", err)
			}
			if err != nil {
				return err
			}
			if jsonOut(c) {
				return printJSON(c.App.Writer, ts)
			}
			sum, versions, src := ts.Summary, ts.Versions, []byte(ts.Source)
			w := c.App.Writer
			table(w, templateHeader, [][]string{templateRow(sum)})
			vs := make([]string, len(versions))
			for i, v := range versions {
				vs[i] = strconv.Itoa(v)
			}
			fmt.Fprintf(w, "versions: %s\n\n%s", strings.Join(vs, ", "), src)
			if len(src) > 0 && src[len(src)-1] != '\n' {
				fmt.Fprintln(w)
			}
			return nil
		},
	}
}

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a template file without saving it (exit 2 with file:line errors)",
		ArgsUsage: "FILE",
		Description: "Checks the YAML, the Liquid of every field, declared variables and the channel limits.\n" +
			"With --segment, also samples the segment's contacts and fails on variables the template uses\n" +
			"that some of them lack and that have no default, naming the variable and its lines.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "segment", Usage: "segment expression whose contacts the template will go to"},
			&cli.IntFlag{Name: "sample", Value: 2000, Usage: "how many of the segment's contacts to check (spread over the segment)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage("templates validate: give one FILE")
			}
			file := c.Args().First()
			src, err := os.ReadFile(file)
			if err != nil {
				return usage("%w", err)
			}
			if c.IsSet("segment") && c.Int("sample") < 1 {
				return usage("templates validate: --sample must be 1 or more")
			}
			var comp *app.Components
			if c.String("segment") != "" {
				if _, err := segments.Parse(c.String("segment")); err != nil {
					return usage("--segment: %w", err)
				}
				d, cm, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				comp = cm
			}
			rep, err := app.ValidateTemplate(c.Context, comp, src, file, c.String("segment"), c.Int("sample"))
			if err != nil {
				return flagError(err, nil)
			}
			if !rep.Valid {
				if jsonOut(c) {
					if perr := printJSON(c.App.Writer, rep); perr != nil {
						return perr
					}
				}
				return usage("%w", rep.Err)
			}
			if jsonOut(c) {
				return printJSON(c.App.Writer, rep)
			}
			fmt.Fprintf(c.App.Writer, "%s: template %s is valid", file, rep.Name)
			if rep.Segment != "" {
				fmt.Fprintf(c.App.Writer, "; all %d sampled contacts of %q (%d in the segment) have its variables", rep.Sampled, rep.Segment, rep.Members)
			}
			fmt.Fprintln(c.App.Writer)
			return nil
		},
	}
}

func previewCommand() *cli.Command {
	return &cli.Command{
		Name:      "preview",
		Usage:     "render a stored template for one contact: the text, or the exact WhatsApp request JSON",
		ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "contact", Required: true, Usage: "the contact's phone number (E.164)"},
			&cli.StringFlag{Name: "campaign", Value: "preview", Usage: "campaign id: picks the variant as that campaign would"},
			&cli.StringFlag{Name: "variant", Usage: "render this variant, whatever the weights say"},
			&cli.IntFlag{Name: "version", Usage: "a stored version (default: the latest)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage("templates preview: give one template NAME")
			}
			if c.Int("version") < 0 {
				return usage("templates preview: --version must be 1 or more")
			}
			d, comp, err := componentsFor(c, app.Needs{Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			name := c.Args().First()
			if _, err := comp.Templates.Versions(c.Context, name); errors.Is(err, templates.ErrNotFound) {
				return usage("%w (templates list shows what is stored)", err)
			}
			id, err := comp.Contacts.LookupPhone(c.Context, c.String("contact"))
			if errors.Is(err, segments.ErrNotFound) {
				return usage("--contact: %w", err)
			}
			if err != nil {
				return err
			}
			previews, err := app.PreviewTemplate(c.Context, comp, name, []uint32{id},
				app.PreviewOptions{Version: c.Int("version"), Campaign: c.String("campaign"), Variant: c.String("variant")})
			var fe *app.FieldError
			switch {
			case errors.Is(err, templates.ErrNotFound):
				return usage("%w (templates list shows what is stored)", err)
			case errors.As(err, &fe) && fe.Field == "contact_id":
				return usage("--contact %s: contact %d has no profile", c.String("contact"), id)
			case err != nil:
				return flagError(err, nil)
			}
			tp := previews[0]
			r, p := tp.Rendered, segments.Contact{ID: tp.ContactID, Phone: tp.Phone, Email: tp.Email}
			if r.Channel != templates.ChannelWhatsApp { // sending on sms and email comes later
				if jsonOut(c) {
					return printJSON(c.App.Writer, tp)
				}
				w := c.App.Writer
				fmt.Fprintf(w, "template %s v%d, variant %s, contact %d\n", r.Template, r.Version, r.Variant, id)
				if r.Email != nil {
					fmt.Fprintf(w, "to: %s\nsubject: %s\n\n%s\n", p.Email, r.Email.Subject, r.Email.Text)
					if r.Email.HTML != "" {
						fmt.Fprintf(w, "\n--- html\n%s\n", r.Email.HTML)
					}
					return nil
				}
				fmt.Fprintf(w, "sms to %s (%d %s segments):\n%s\n", p.Phone, r.SMSSegments, r.SMSEncoding, r.Text)
				return nil
			}
			req := *tp.Request
			if jsonOut(c) {
				return printJSON(c.App.Writer, tp)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "template %s v%d, variant %s, contact %d (%s)\n", r.Template, r.Version, r.Variant, id, p.Phone)
			if r.FreeForm {
				fmt.Fprintf(w, "free-form text: only sendable inside the 24h customer-service window\n\n%s\n\nrequest:\n", r.Text)
			} else {
				fmt.Fprintf(w, "%s template %s (%s), sendable any time\n\nrequest:\n", r.Category, r.WhatsApp.Name, r.WhatsApp.Language.Code)
			}
			return printJSON(w, req)
		},
	}
}

var templateHeader = []string{"NAME", "VERSION", "KIND", "CHANNEL", "LOCALE", "VARIANTS", "WHATSAPP TEMPLATE", "SAVED"}

func templateRow(s templates.Summary) []string {
	return []string{s.Name, strconv.Itoa(s.Version), string(s.Kind), s.Channel, s.Locale, strings.Join(s.Variants, ","),
		strings.Join(s.WhatsAppTemplates, ","), s.SavedAt.UTC().Format(time.RFC3339)}
}
