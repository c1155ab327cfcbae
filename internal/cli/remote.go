package cli

import (
	"errors"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/apiclient"
)

// remoteFlags are the global flags of a remote Herald: with both set, the commands
// that have API routes call the API instead of Redis and ClickHouse (contacts import, consent grant/revoke, segments count,
// tags list/add/remove, campaigns create/dry-run/launch/pause/resume/cancel/status/
// list, report funnel).
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "api-url", Usage: "act on a remote Herald through its /v1 API at this origin (with --api-key)", EnvVars: []string{"HERALD_API_URL"}},
		&cli.StringFlag{Name: "api-key", Usage: "the API key (hk_…) of --api-url; never printed", EnvVars: []string{"HERALD_API_KEY"}},
	}
}

// remote is the API client when --api-url and --api-key are both set, else nil.
func remote(c *cli.Context) *apiclient.Client {
	u, k := c.String("api-url"), c.String("api-key")
	if u == "" || k == "" {
		return nil
	}
	return apiclient.New(u, k)
}

// remoteErr maps an API problem to the CLI's exit codes: a refused request is a usage
// error (exit 2), as the same command refused locally.
func remoteErr(err error) error {
	var p *apiclient.Problem
	if errors.As(err, &p) && p.Refused() {
		return usage("%s", p.Error())
	}
	return err
}

// readText reads a file the CLI names (- is stdin).
func readText(name string) (string, error) {
	if name == "-" {
		b, err := os.ReadFile("/dev/stdin")
		return string(b), err
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", usage("%s", strings.TrimPrefix(err.Error(), "open "))
	}
	return string(b), nil
}

// remoteFlagErr is remoteErr naming the flag of the problem's first pointer (the field's
// name with dashes, or as renamed), as flagError does for a local refusal.
func remoteFlagErr(err error, rename map[string]string) error {
	var p *apiclient.Problem
	if errors.As(err, &p) && p.Refused() && len(p.Errors) > 0 && p.Errors[0].Pointer != "" {
		name, _, _ := strings.Cut(strings.TrimPrefix(p.Errors[0].Pointer, "/"), "/")
		if r, ok := rename[name]; ok {
			name = r
		}
		return usage("--%s: %s", strings.ReplaceAll(name, "_", "-"), p.Errors[0].Detail)
	}
	return remoteErr(err)
}
