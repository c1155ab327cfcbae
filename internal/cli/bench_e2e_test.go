package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/app"
)

// `bench e2e --channel email` at a tiny size, its worker a process of its own: the output
// is well-formed in every format, and each Herald round delivered exactly its campaign's
// messages to the SMTP sandbox, once each. Nothing is asserted about speed.
func TestBenchE2EEmail(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, clickhouse-server and a worker process")
	}
	workerProcessesFromTestBinary(t)
	const n, senders, conns = 50, 2, 2
	code, out, errOut := run("bench", "e2e", "--channel", "email", "--contacts", "50", "--rounds", "1",
		"--senders", "2", "--connections", "2", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var r app.EmailE2EResult
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Channel != "email" || r.Contacts != n || r.Senders != senders || r.ConnectionsPerSender != conns || len(r.Rounds) != 3 {
		t.Fatalf("result %+v", r)
	}
	for i, side := range []string{"ceiling", "herald", "ceiling"} {
		x := r.Rounds[i]
		if x.Side != side || x.Messages != n || !(x.MsgPerSec > 0) || !(x.ElapsedMS > 0) || !(x.CPUMSPerMsg > 0) {
			t.Errorf("round %d: %+v, want %s with %d messages and its figures", i, x, side, n)
		}
	}
	if c := r.Rounds[0].Connections; c != senders*conns {
		t.Errorf("the ceiling opened %d connections, want %d", c, senders*conns)
	}
	h := r.Rounds[1]
	if h.Sent != n || h.Failed != 0 || h.Skipped != 0 || h.Duplicates != 0 || h.CampaignID == "" || !(h.Ratio > 0) ||
		h.Connections < 1 || h.Connections > senders*conns {
		t.Errorf("herald round %+v: want %d sent, each delivered once, over at most %d connections", h, n, senders*conns)
	}
	if r.Sent != n || r.Delivered != n || r.Duplicates != 0 || !r.FunnelMatches || r.Ratio.Median != h.Ratio {
		t.Errorf("totals: sent %d delivered %d duplicates %d funnel matches %v ratio %+v", r.Sent, r.Delivered, r.Duplicates, r.FunnelMatches, r.Ratio)
	}

	// The other formats of the same result.
	var csvOut bytes.Buffer
	if err := app.WriteE2ERoundsCSV(&csvOut, r.Rounds); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil || len(rows) != 1+len(r.Rounds) {
		t.Fatalf("csv: %v, %d rows\n%s", err, len(rows), csvOut.String())
	}
	var keys []string // the columns are the JSON keys of a round
	for i := range reflect.TypeFor[app.E2ERound]().NumField() {
		keys = append(keys, strings.Split(reflect.TypeFor[app.E2ERound]().Field(i).Tag.Get("json"), ",")[0])
	}
	if !reflect.DeepEqual(rows[0], keys) {
		t.Errorf("csv header %v, want the JSON keys %v", rows[0], keys)
	}
	if rows[2][1] != "herald" || rows[2][2] != "50" {
		t.Errorf("csv herald row %v", rows[2])
	}
	var table bytes.Buffer
	app.PrintEmailE2E(&table, r)
	for _, want := range []string{"ceiling", "herald", "ratio", "delivered to the sandbox 50"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}

	for _, args := range [][]string{
		{"--channel", "fax"},
		{"--channel", "email", "--rounds", "0"},
		{"--channel", "email", "--connections", "0"},
		{"--rounds", "2"}, // WhatsApp has no rounds
	} {
		if code, _, _ := run(append([]string{"bench", "e2e"}, args...)...); code != 2 {
			t.Errorf("bench e2e %v: exit %d, want 2", args, code)
		}
	}
}
