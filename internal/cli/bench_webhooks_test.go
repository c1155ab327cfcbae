package cli

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/app"
)

// The command end to end, tiny: a private Redis, embedded Kafka and a real serve. The
// output is well-formed and every accepted POST's events reached Kafka; no speed is
// asserted.
func TestBenchWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	code, out, errOut := run("bench", "webhooks", "--messages", "150", "--concurrency", "4,16", "--open-for", "300ms",
		"--data-dir", t.TempDir(), "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var r app.WebhookBenchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Messages != 150 || r.StatusesPerPost != 1 || r.Statuses < 2*150 || len(r.Steps) != 2 {
		t.Fatalf("result %+v", r)
	}
	for _, s := range r.Steps {
		if s.Posts != r.Statuses || s.Accepted+s.Refused != s.Posts || s.Accepted == 0 || s.PostsPerSecond <= 0 ||
			s.CeilingPerSecond <= 0 || s.Ratio <= 0 || s.LatencyP99Ms < s.LatencyP50Ms {
			t.Errorf("step %+v", s)
		}
	}
	if o := r.OpenLoop; o.Posts == 0 || o.Accepted == 0 || o.TargetPerSecond <= 0 {
		t.Errorf("open loop %+v", o)
	}
	if r.EventsExpected < 150 || r.EventsMissing != 0 || r.InboundMissing != 0 {
		t.Errorf("%d events expected in Kafka, %d missing; %d inbound, %d missing", r.EventsExpected, r.EventsMissing, r.InboundExpected, r.InboundMissing)
	}

	code, out, errOut = run("bench", "webhooks", "--messages", "20", "--concurrency", "2", "--open-for", "100ms",
		"--data-dir", t.TempDir(), "-o", "csv")
	if code != 0 {
		t.Fatalf("csv: exit %d\n%s", code, errOut)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 3 || rows[0][0] != "phase" || rows[1][0] != "closed" || rows[2][0] != "open_80pct" {
		t.Errorf("csv %v (%v):\n%s", rows, err, out)
	}

	if code, _, _ := run("bench", "webhooks", "--concurrency", "0"); code != 2 {
		t.Errorf("--concurrency 0: exit %d, want 2", code)
	}
}
