package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/app"
)

// `bench e2e` (WhatsApp) at a tiny size: the worker, the sink and the sandbox run as
// processes of their own, the result names each with its CPU, and the funnel matches the
// sandbox's record. Nothing is asserted about speed.
func TestBenchE2EWhatsAppProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, clickhouse-server and three herald processes")
	}
	workerProcessesFromTestBinary(t)
	code, out, errOut := run("bench", "e2e", "--contacts", "60", "--senders", "2", "--rate", "500",
		"--statuses-per-post", "2", "--webhook-concurrency", "4", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var r app.E2EResult
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Sent != 60 || !r.FunnelMatches || r.StatusesPerPost != 2 || r.WebhookConcurrency != 4 || !(r.RatioDrained > 0) {
		t.Fatalf("result %+v", r)
	}
	var names []string
	for _, p := range r.Processes {
		names = append(names, p.Name)
		if p.CPUMSPerMsg < 0 || p.Roles == "" {
			t.Errorf("process %+v", p)
		}
	}
	if got := strings.Join(names, ","); got != "bench,sandbox,worker,sink,redis-server,clickhouse-server" {
		t.Errorf("processes %s", got)
	}
	if strings.Contains(r.Processes[0].Roles, "sandbox") || strings.Contains(r.Processes[0].Roles, "sink") {
		t.Errorf("the bench process claims roles run elsewhere: %q", r.Processes[0].Roles)
	}

	for _, args := range [][]string{
		{"--statuses-per-post", "0"},
		{"--webhook-concurrency", "0"},
		{"--channel", "email", "--in-process-sink"},
		{"--channel", "email", "--statuses-per-post", "3"},
	} {
		if code, _, _ := run(append([]string{"bench", "e2e", "--contacts", "10"}, args...)...); code != 2 {
			t.Errorf("bench e2e %v: exit %d, want 2", args, code)
		}
	}
}
