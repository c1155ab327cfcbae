package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
)

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "API keys of the /v1 HTTP API: create (the secret is shown once), list, revoke",
		Subcommands: []*cli.Command{{
			Name:  "create",
			Usage: "make an API key for a role; its secret is printed once (only its SHA-256 is stored)",
			Description: "Roles: admin (everything), marketer (contacts, consent, templates, campaigns; launching only with\n" +
				"--can-launch), analyst (reports, and the campaigns, senders and templates they are about), auditor (the\n" +
				"API's audit, consent, campaigns). The key goes in requests as Authorization: Bearer <key>.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "name", Required: true, Usage: "who the key is for, e.g. crm (unique among keys not revoked)"},
				&cli.StringFlag{Name: "role", Required: true, Usage: "admin, marketer, analyst or auditor"},
				&cli.BoolFlag{Name: "can-launch", Usage: "a marketer's key may also launch campaigns (campaigns:launch)"},
				&cli.Float64Flag{Name: "rate", Usage: "the key's own request limit per second (default: serve's HERALD_API_RATE)"},
			},
			Action: func(c *cli.Context) error {
				role, err := apikeys.ParseRole(c.String("role"))
				if err != nil {
					return usage("--role: %w", err)
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				k, err := comp.Keys.Create(c.Context, apikeys.Spec{Name: c.String("name"), Role: role, CanLaunch: c.Bool("can-launch"), RatePerSecond: c.Float64("rate")})
				if errors.Is(err, apikeys.ErrNameTaken) || errors.Is(err, apikeys.ErrInvalidSpec) {
					return usage("keys create: %w", err)
				}
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, k)
				}
				w := c.App.Writer
				fmt.Fprintf(w, "API key %s created for %s (role %s: %s).\nIts secret, shown only this once (send it as Authorization: Bearer <key>):\n\n%s\n",
					k.ID, k.Name, k.Role, permissionList(k.Permissions), k.Secret)
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list API keys (never their secrets): role, permissions, created, last used, revoked",
			Action: func(c *cli.Context) error {
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				list, err := comp.Keys.List(c.Context)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, k := range list {
					rows = append(rows, []string{k.ID, k.Name, string(k.Role), permissionList(k.Permissions), rateText(k.RatePerSecond),
						when(k.Created), when(k.LastUsed), when(k.Revoked)})
				}
				return printReport(c.App.Writer, format, list, "", []string{"ID", "NAME", "ROLE", "PERMISSIONS", "RATE", "CREATED", "LAST USED", "REVOKED"}, rows)
			},
		}, {
			Name:      "revoke",
			Usage:     "revoke an API key by name or id: it authenticates nothing from now on",
			ArgsUsage: "NAME|ID",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("keys revoke: give one key NAME or ID")
				}
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				k, err := comp.Keys.Revoke(c.Context, c.Args().First())
				if errors.Is(err, apikeys.ErrNotFound) {
					return usage("%w", err)
				}
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, k)
				}
				fmt.Fprintf(c.App.Writer, "API key %s (%s) revoked at %s\n", k.ID, k.Name, when(k.Revoked))
				return nil
			},
		}},
	}
}

func permissionList(ps []apikeys.Permission) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

func rateText(r float64) string {
	if r == 0 {
		return "default"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + "/s"
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
