package analytics

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestMigrateIdempotent(t *testing.T) {
	ctx := context.Background()
	conn, db := testenv.ClickHouse(t)

	first, err := Migrate(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range migrations {
		want = append(want, m.id())
	}
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
	if w := []string{"api_audit", "campaign_contacts", "campaign_contacts_mv", "campaign_minutes", "campaign_minutes_mv",
		"campaign_starts", "campaign_starts_mv", "campaign_words", "campaign_words_mv",
		"consent_log", "contact_weeks", "contact_weeks_mv", "contacts", "events", "inbound", "ledger_checkpoints", "ledger_heads", "schema_migrations",
		"sent_times", "sent_times_mv", "v_funnel", "v_funnel_by_variant", "v_message_outcomes", "v_sent_consent",
		"week_contacts", "week_contacts_mv"}; !reflect.DeepEqual(tables, w) {
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

// A schema from before migration 6 gets the until column; rows already stored read 0.
// A column that exists although its migration was never recorded (a run that died after
// the ALTER) is left alone.
func TestMigrateAddsColumns(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		alterBefore bool
	}{{"old schema", false}, {"column added, version not recorded", true}} {
		t.Run(tc.name, func(t *testing.T) {
			conn, _ := testenv.ClickHouse(t)
			if _, err := migrate(ctx, conn, migrations[:5]); err != nil {
				t.Fatal(err)
			}
			old := events.New(events.Queued, "c", 1, baseTime)
			if err := insertColumns(ctx, conn, "events", []string{"event_id", "kind", "ts", "ts_ms", "campaign_id", "contact_id"},
				[]any{[]string{old.ID}, []string{"queued"}, []time.Time{old.Time}, []uint64{uint64(old.Time.UnixMilli())},
					[]string{"c"}, []uint32{1}}); err != nil {
				t.Fatal(err)
			}
			if tc.alterBefore {
				if err := conn.Exec(ctx, "ALTER TABLE events ADD COLUMN until DateTime"); err != nil {
					t.Fatal(err)
				}
			}
			applied, err := Migrate(ctx, conn)
			if err != nil {
				t.Fatal(err)
			}
			if len(applied) != len(migrations)-5 || applied[0] != "0006_add_events_until" {
				t.Fatalf("applied %v", applied)
			}
			// Adding a column that exists is a no-op.
			if err := addColumn(ctx, conn, column{"events", "until", "DateTime"}); err != nil {
				t.Fatal(err)
			}
			d := events.New(events.Deferred, "c", 1, baseTime.Add(time.Second))
			d.Reason, d.Until = "quiet_hours", baseTime.Add(10*time.Hour)
			insertEvents(t, conn, []events.Event{d})
			rows, err := conn.Query(ctx, "SELECT kind, toUInt32(until) FROM events ORDER BY ts_ms")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var (
					kind  string
					until uint32
				)
				if err := rows.Scan(&kind, &until); err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("%s %d", kind, until))
			}
			if w := []string{"queued 0", fmt.Sprintf("deferred %d", d.Until.Unix())}; !reflect.DeepEqual(got, w) {
				t.Fatalf("rows %v, want %v", got, w)
			}
		})
	}
}
