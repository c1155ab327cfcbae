package analytics

import (
	"context"
	"reflect"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/herald-dev/herald/internal/testenv"
)

func TestMigrateIdempotent(t *testing.T) {
	ctx := context.Background()
	conn, db := testenv.ClickHouse(t)

	first, err := Migrate(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0001_create_events", "0002_create_consent_log", "0003_create_inbound", "0004_create_contacts", "0005_create_views"}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("first run applied %v, want %v", first, want)
	}
	second, err := Migrate(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("second run applied %v, want nothing", second)
	}

	var tables []string
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", db)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if w := []string{"consent_log", "contacts", "events", "inbound", "schema_migrations", "v_funnel", "v_funnel_by_variant", "v_message_outcomes", "v_sent_consent"}; !reflect.DeepEqual(tables, w) {
		t.Fatalf("tables %v, want %v", tables, w)
	}

	type rec struct {
		Version uint32 `ch:"version"`
		Name    string `ch:"any_name"`
		N       uint64 `ch:"n"`
	}
	var recs []rec
	if err := conn.Select(ctx, &recs, "SELECT version, any(name) AS any_name, count() AS n FROM schema_migrations GROUP BY version ORDER BY version"); err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(migrations) {
		t.Fatalf("schema_migrations has %d versions, want %d: %+v", len(recs), len(migrations), recs)
	}
	for i, r := range recs {
		if m := migrations[i]; r.Version != m.version || r.Name != m.name || r.N != 1 {
			t.Errorf("schema_migrations row %d = %+v, want version %d name %s recorded once", i, r, m.version, m.name)
		}
	}

	// The column types follow the server version.
	sv, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	var kindType string
	if err := conn.QueryRow(ctx, "SELECT type FROM system.columns WHERE database = ? AND table = 'events' AND name = 'kind'", db).Scan(&kindType); err != nil {
		t.Fatal(err)
	}
	if want := featuresOf(sv.Version).dim(); kindType != want {
		t.Errorf("events.kind is %s on ClickHouse %s, want %s", kindType, sv.Version, want)
	}
}

func TestMigrateResumesAfterPartialRun(t *testing.T) {
	// A run that created a table but died before recording it: the next run repeats the
	// (idempotent) DDL and records the version.
	ctx := context.Background()
	conn, _ := testenv.ClickHouse(t)
	if err := conn.Exec(ctx, createSchemaMigrations); err != nil {
		t.Fatal(err)
	}
	sv, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, migrations[0].ddl(featuresOf(sv.Version))[0]); err != nil {
		t.Fatal(err)
	}
	applied, err := Migrate(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(migrations) || applied[0] != "0001_create_events" {
		t.Fatalf("applied %v", applied)
	}
}

func TestFeaturesOf(t *testing.T) {
	for _, tc := range []struct {
		v    proto.Version
		want string
	}{
		{proto.Version{Major: 18, Minor: 16, Patch: 1}, "String"},
		{proto.Version{Major: 19, Minor: 17}, "String"},
		{proto.Version{Major: 20, Minor: 1}, "LowCardinality(String)"},
		{proto.Version{Major: 24, Minor: 8, Patch: 4}, "LowCardinality(String)"},
	} {
		t.Run(tc.v.String(), func(t *testing.T) {
			if got := featuresOf(tc.v).dim(); got != tc.want {
				t.Errorf("dim() = %s, want %s", got, tc.want)
			}
		})
	}
}
