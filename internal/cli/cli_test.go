package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"herald"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// Every command and subcommand answers --help with its usage and exit code 0.
func TestHelpEverywhere(t *testing.T) {
	code, out, _ := run("--help")
	if code != 0 || !strings.Contains(out, "COMMANDS") {
		t.Fatalf("herald --help: %d\n%s", code, out)
	}
	var walk func(path []string)
	n := 0
	walk = func(path []string) {
		code, out, errOut := run(append(path, "--help")...)
		n++
		if code != 0 || !strings.Contains(out, "USAGE") {
			t.Errorf("herald %s --help: exit %d\n%s%s", strings.Join(path, " "), code, out, errOut)
		}
		// Subcommands are listed under COMMANDS; recurse into each.
		if i := strings.Index(out, "COMMANDS:"); i >= 0 {
			for _, line := range strings.Split(out[i:], "\n")[1:] {
				f := strings.Fields(line)
				if len(f) == 0 || !strings.HasPrefix(line, "   ") || strings.HasSuffix(line, ":") {
					if len(f) == 0 || strings.HasSuffix(line, ":") {
						break
					}
					continue
				}
				name := strings.TrimSuffix(f[0], ",")
				if name == "help" || name == "h" {
					continue
				}
				walk(append(append([]string{}, path...), name))
			}
		}
	}
	for _, c := range []string{"demo", "dev", "sandbox", "serve", "worker", "sink", "migrate", "contacts", "segments", "senders", "templates", "campaigns", "schedules", "report", "keys"} {
		walk([]string{c})
	}
	if n < 20 {
		t.Fatalf("only %d commands answered --help; the walk is not reaching subcommands", n)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
		{[]string{"worker"}, "HERALD_KAFKA_BROKERS"},
		{[]string{"--kafka-brokers", "k:9092", "worker"}, "HERALD_REDIS_URL"},
		{[]string{"--redis-url", "http://x", "--kafka-brokers", "k:9092", "worker"}, "want redis://"},
		{[]string{"--output", "yaml", "senders", "list"}, "--output"},
		{[]string{"campaigns", "create", "--segment", "vip"}, "Required flag"},
		{[]string{"campaigns", "launch"}, "give one campaign ID"},
		{[]string{"--redis-url", "redis://127.0.0.1:1/0", "senders", "add", "--phone-number-id", "1", "--rate", "0", "--token", "t"}, "rate must be"},
		{[]string{"--redis-url", "redis://127.0.0.1:1/0", "segments", "count", "vip and (country:TH"}, "segment"},
		{[]string{"templates", "add", "/no/such/file.yaml"}, "no such file"},
	} {
		code, _, errOut := run(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("herald %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

func TestRuntimeErrorsExitOne(t *testing.T) {
	// A valid configuration whose Redis is unreachable is a failure, not a usage error.
	code, _, errOut := run("--redis-url", "redis://127.0.0.1:1/0", "senders", "list")
	if code != 1 || !strings.Contains(errOut, "herald:") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	a := &cli.App{Flags: globalFlags(), Commands: []*cli.Command{contactsCommand(), campaignsCommand()}}
	for _, tc := range []struct{ in, want string }{
		{"herald contacts import f.csv --default-region TH", "herald contacts import --default-region TH f.csv"},
		{"herald --output json contacts import f.csv --tag a --tag b", "herald --output json contacts import --tag a --tag b f.csv"},
		{"herald campaigns status 7 --watch", "herald campaigns status --watch 7"},
		{"herald campaigns status --watch 7", "herald campaigns status --watch 7"},
		{"herald contacts import - --default-region=TH", "herald contacts import --default-region=TH -"},
		{"herald contacts import -- --weird-name.csv", "herald contacts import -- --weird-name.csv"},
		{"herald campaigns status 7 -o json", "herald -o json campaigns status 7"},
		{"herald campaigns status 7 --output=json --watch", "herald --output=json campaigns status --watch 7"},
	} {
		got := strings.Join(interspersed(a, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}
