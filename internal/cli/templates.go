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

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
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
				t, err := templates.ParseFile(src, filepath.Base(c.Args().First()))
				if err != nil {
					return usage("%w", err)
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				v, err := comp.Templates.Save(c.Context, t, src)
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, templateSaved{Name: t.Name, Version: v})
				}
				fmt.Fprintf(c.App.Writer, "template %s saved (version %d)\n", t.Name, v)
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
			sum, src, err := comp.Templates.Source(c.Context, c.Args().First(), c.Int("version"))
			if errors.Is(err, templates.ErrNotFound) {
				return usage("%w (templates list shows what is stored)", err)
			}
			if err != nil {
				return err
			}
			versions, err := comp.Templates.Versions(c.Context, sum.Name)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				return printJSON(c.App.Writer, templateShow{Summary: sum, Versions: versions, Source: string(src)})
			}
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

// templateSaved is the JSON output of templates add.
type templateSaved struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// templateShow is the JSON output of templates show.
type templateShow struct {
	Summary  templates.Summary `json:"summary"`
	Versions []int             `json:"versions"`
	Source   string            `json:"source"` // the YAML as saved
}

// templatePreview is the JSON output of templates preview: the rendered message and,
// for WhatsApp, the Cloud API request body as it would be sent (Meta's keys).
type templatePreview struct {
	ContactID uint32             `json:"contact_id"`
	Phone     string             `json:"phone"`
	Email     string             `json:"email,omitempty"`
	Rendered  templates.Rendered `json:"rendered"`
	Request   *graph.SendRequest `json:"request,omitempty"`
}

// validateReport is the JSON output of templates validate.
type validateReport struct {
	File     string               `json:"file"`
	Valid    bool                 `json:"valid"`
	Name     string               `json:"name,omitempty"`
	Errors   []validateError      `json:"errors"`
	Segment  string               `json:"segment,omitempty"`
	Sampled  int                  `json:"sampled,omitempty"`
	Members  uint64               `json:"segment_contacts,omitempty"`
	Coverage []templates.Coverage `json:"missing"` // with --segment: variables some contacts lack
}

type validateError struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
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
			rep := validateReport{File: file, Errors: []validateError{}, Segment: c.String("segment")}
			fail := func(err error) error {
				rep.Errors = append(rep.Errors, fieldErrors(err)...)
				if jsonOut(c) {
					if perr := printJSON(c.App.Writer, rep); perr != nil {
						return perr
					}
				}
				return usage("%w", err)
			}
			t, err := templates.ParseFile(src, file)
			if err != nil {
				return fail(err)
			}
			rep.Name = t.Name
			if rep.Segment != "" {
				if c.Int("sample") < 1 {
					return usage("templates validate: --sample must be 1 or more")
				}
				cov, n, members, err := checkSegment(c, t, rep.Segment, c.Int("sample"))
				if err != nil {
					return err
				}
				rep.Sampled, rep.Members, rep.Coverage = n, members, cov.list
				if cov.err != nil {
					return fail(cov.err)
				}
			}
			rep.Valid = true
			if jsonOut(c) {
				return printJSON(c.App.Writer, rep)
			}
			fmt.Fprintf(c.App.Writer, "%s: template %s is valid", file, t.Name)
			if rep.Segment != "" {
				fmt.Fprintf(c.App.Writer, "; all %d sampled contacts of %q (%d in the segment) have its variables", rep.Sampled, rep.Segment, rep.Members)
			}
			fmt.Fprintln(c.App.Writer)
			return nil
		},
	}
}

func fieldErrors(err error) []validateError {
	var out []validateError
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var fe *templates.FieldError
		if errors.As(e, &fe) {
			out = append(out, validateError{File: fe.File, Line: fe.Line, Field: fe.Field, Message: fe.Msg})
		} else {
			out = append(out, validateError{Message: e.Error()})
		}
	}
	return out
}

type coverage struct {
	list []templates.Coverage
	err  error
}

// checkSegment samples up to n contacts spread over a segment and checks that they
// have the variables t needs. It returns how many were sampled and the segment size.
func checkSegment(c *cli.Context, t *templates.Template, expr string, n int) (coverage, int, uint64, error) {
	if _, err := segments.Parse(expr); err != nil {
		return coverage{}, 0, 0, usage("--segment: %w", err)
	}
	compiled, err := templates.Compile(t)
	if err != nil {
		return coverage{}, 0, 0, err
	}
	d, err := deps(c, app.Needs{Redis: true})
	if err != nil {
		return coverage{}, 0, 0, err
	}
	defer d.Close()
	comp, err := d.Components()
	if err != nil {
		return coverage{}, 0, 0, err
	}
	members, err := comp.Contacts.Evaluate(c.Context, expr)
	if err != nil {
		return coverage{}, 0, 0, err
	}
	card := members.GetCardinality()
	ids := make([]uint32, 0, min(uint64(n), card))
	for i := uint64(0); i < uint64(cap(ids)); i++ {
		id, err := members.Select(uint32(i * card / uint64(cap(ids))))
		if err != nil {
			return coverage{}, 0, 0, fmt.Errorf("sample segment: %w", err)
		}
		ids = append(ids, id)
	}
	var vars []map[string]any
	for start := 0; start < len(ids); start += 500 {
		profiles, err := comp.Contacts.Profiles(c.Context, ids[start:min(start+500, len(ids))])
		if err != nil {
			return coverage{}, 0, 0, err
		}
		for _, p := range profiles {
			if p.ID != 0 {
				vars = append(vars, dispatcher.ContactVars(p))
			}
		}
	}
	list, err := compiled.CheckContacts(vars)
	return coverage{list: list, err: err}, len(vars), card, nil
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
			var t *templates.Template
			if v := c.Int("version"); v > 0 {
				t, err = comp.Templates.GetVersion(c.Context, name, v)
			} else {
				t, err = comp.Templates.Get(c.Context, name)
			}
			if errors.Is(err, templates.ErrNotFound) {
				return usage("%w (templates list shows what is stored)", err)
			}
			if err != nil {
				return err
			}
			compiled, err := templates.Compile(t)
			if err != nil {
				return err
			}
			id, err := comp.Contacts.LookupPhone(c.Context, c.String("contact"))
			if errors.Is(err, segments.ErrNotFound) {
				return usage("--contact: %w", err)
			}
			if err != nil {
				return err
			}
			profiles, err := comp.Contacts.Profiles(c.Context, []uint32{id})
			if err != nil {
				return err
			}
			if len(profiles) != 1 || profiles[0].ID == 0 {
				return usage("--contact %s: contact %d has no profile", c.String("contact"), id)
			}
			p := profiles[0]
			if c.Int("version") == 0 && p.Locale != "" { // what the worker renders: the contact's locale
				if compiled, err = templates.NewCache(comp.Templates, templates.CacheConfig{}).GetFor(c.Context, name, p.Locale); err != nil {
					return err
				}
			}
			var r templates.Rendered
			if v := c.String("variant"); v != "" {
				r, err = compiled.RenderVariant(v, dispatcher.ContactVars(p))
			} else {
				r, err = compiled.Render(c.String("campaign"), id, dispatcher.ContactVars(p))
			}
			if err != nil {
				return err
			}
			if r.Channel != templates.ChannelWhatsApp { // sending on sms and email comes later
				if jsonOut(c) {
					return printJSON(c.App.Writer, templatePreview{ContactID: id, Phone: p.Phone, Email: p.Email, Rendered: r})
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
			req := r.WhatsAppRequest(p.Phone, dispatcher.CallbackData(c.String("campaign"), id))
			if jsonOut(c) {
				return printJSON(c.App.Writer, templatePreview{ContactID: id, Phone: p.Phone, Rendered: r, Request: &req})
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
