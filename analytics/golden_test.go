package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file (go test -update rewrites it)\n got:\n%s\nwant:\n%s", name, got, want)
	}
}

// goldenJSON compares v, indented JSON, with testdata/name.
func goldenJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, name, append(b, '\n'))
}

// insertConsent writes records straight into consent_log.
func insertConsent(t testing.TB, conn driver.Conn, recs []events.ConsentRecord) {
	t.Helper()
	var b consentBuffer
	for _, r := range recs {
		b.appendRecord(r)
	}
	if err := b.insert(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
}

// insertInbound writes inbound messages straight into the inbound table.
func insertInbound(t testing.TB, conn driver.Conn, msgs []events.Inbound) {
	t.Helper()
	var b inboundBuffer
	for _, m := range msgs {
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.add(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.insert(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
}
