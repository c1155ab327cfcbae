package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
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

var templateHeader = []string{"NAME", "VERSION", "KIND", "CHANNEL", "LOCALE", "VARIANTS", "WHATSAPP TEMPLATE", "SAVED"}

func templateRow(s templates.Summary) []string {
	return []string{s.Name, strconv.Itoa(s.Version), string(s.Kind), s.Channel, s.Locale, strings.Join(s.Variants, ","),
		strings.Join(s.WhatsAppTemplates, ","), s.SavedAt.UTC().Format(time.RFC3339)}
}
