package analytics

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// schemaFeatures are the DDL choices that depend on the server version.
type schemaFeatures struct {
	// lowCardinality: LowCardinality(String) without the experimental setting (≥ 20.1;
	// 18.16 refuses it unless allow_experimental_low_cardinality_type is set).
	lowCardinality bool
}

func featuresOf(v proto.Version) schemaFeatures {
	return schemaFeatures{lowCardinality: proto.CheckMinVersion(proto.Version{Major: 20, Minor: 1}, v)}
}

// dim is the column type of a short, repetitive string (kind, channel, country…).
func (f schemaFeatures) dim() string {
	if f.lowCardinality {
		return "LowCardinality(String)"
	}
	return "String"
}

// migration is one schema change. Its statements must be idempotent (IF NOT EXISTS), so
// that a run interrupted between the DDL and the schema_migrations row can be repeated.
// Columns are added before the statements run, each only when system.columns does not
// list it yet: ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS. Backfill runs last and
// must be idempotent too (pre-aggregates of idempotent functions: min, bit or).
type migration struct {
	version  uint32
	name     string
	columns  func(f schemaFeatures) []column
	ddl      func(f schemaFeatures) []string
	backfill func(ctx context.Context, conn driver.Conn) error
}

// column is a column a migration adds to an existing table.
type column struct {
	table, name, typ string
}

func (m migration) id() string { return fmt.Sprintf("%04d_%s", m.version, m.name) }

// migrations in version order. Append only: an applied migration is never edited.
var migrations = []migration{
	{version: 1, name: "create_events", ddl: func(f schemaFeatures) []string {
		return []string{`CREATE TABLE IF NOT EXISTS events (
    event_id        String,
    kind            ` + f.dim() + `,
    ts              DateTime,
    ts_ms           UInt64,
    campaign_id     String,
    contact_id      UInt32,
    sender_id       ` + f.dim() + `,
    channel         ` + f.dim() + `,
    template        ` + f.dim() + `,
    variant         ` + f.dim() + `,
    country         ` + f.dim() + `,
    provider_msg_id String,
    reason          ` + f.dim() + `,
    error_code      Int32,
    retryable       UInt8,
    consent_ref     String,
    inserted_at     DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (campaign_id, kind, contact_id, event_id)`}
	}},
	{version: 2, name: "create_consent_log", ddl: func(f schemaFeatures) []string {
		return []string{`CREATE TABLE IF NOT EXISTS consent_log (
    id              String,
    contact_id      UInt32,
    channel         ` + f.dim() + `,
    purpose         ` + f.dim() + `,
    action          ` + f.dim() + `,
    source          ` + f.dim() + `,
    wording         String,
    wording_version String,
    ip              String,
    user_agent      String,
    actor           String,
    proof           String,
    ts              DateTime,
    ts_ms           UInt64,
    prev_hash       String,
    hash            String,
    inserted_at     DateTime DEFAULT now()
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (contact_id, ts_ms, id)`}
	}},
	{version: 3, name: "create_inbound", ddl: func(f schemaFeatures) []string {
		return []string{`CREATE TABLE IF NOT EXISTS inbound (
    id          String,
    contact_id  UInt32,
    from_addr   String,
    sender_id   ` + f.dim() + `,
    channel     ` + f.dim() + `,
    type        ` + f.dim() + `,
    text        String,
    reply_to    String,
    ts          DateTime,
    ts_ms       UInt64,
    inserted_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (contact_id, ts_ms, id)`}
	}},
	{version: 4, name: "create_contacts", ddl: func(f schemaFeatures) []string {
		return []string{`CREATE TABLE IF NOT EXISTS contacts (
    contact_id UInt32,
    phone_hash String,
    country    ` + f.dim() + `,
    tz         ` + f.dim() + `,
    locale     ` + f.dim() + `,
    tags       Array(String),
    updated_at DateTime
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY contact_id`}
	}},
	{version: 5, name: "create_views", ddl: func(schemaFeatures) []string {
		return []string{viewMessageOutcomes, viewFunnel, viewFunnelByVariant, viewSentConsent}
	}},
	{version: 6, name: "add_events_until", columns: func(schemaFeatures) []column {
		// On deferred events: when the job is due again. 0 (1970-01-01) on every other event.
		return []column{{"events", "until", "DateTime"}}
	}},
	{version: 7, name: "create_contact_weeks", ddl: func(schemaFeatures) []string {
		return []string{createContactWeeks, createContactWeeksMV}
	}, backfill: backfillContactWeeks},
	{version: 8, name: "add_events_order", columns: func(f schemaFeatures) []column {
		// On converted events: the order, its value and currency. Empty, 0 and empty on others.
		return []column{{"events", "order_id", "String"}, {"events", "value", "Float64"}, {"events", "currency", f.dim()}}
	}},
	{version: 9, name: "create_cohort_bitmaps", ddl: cohortDDL, backfill: backfillCohorts},
	{version: 10, name: "message_outcomes_deferred", ddl: func(schemaFeatures) []string {
		// 18.16 has no CREATE OR REPLACE VIEW: drop and create again, the views that
		// read v_message_outcomes first, so no server refuses the drop.
		return []string{"DROP TABLE IF EXISTS v_funnel", "DROP TABLE IF EXISTS v_funnel_by_variant",
			"DROP TABLE IF EXISTS v_message_outcomes", viewMessageOutcomesDeferred, viewFunnel, viewFunnelByVariant}
	}},
	{version: 11, name: "create_ledger_checkpoints", ddl: func(schemaFeatures) []string {
		return []string{createLedgerCheckpoints, createLedgerHeads}
	}},
	{version: 12, name: "create_api_audit", ddl: func(f schemaFeatures) []string {
		return []string{createAPIAudit(f)}
	}},
	{version: 13, name: "add_events_custom_and_fallback", columns: func(f schemaFeatures) []column {
		// On custom events: the name and the properties (a JSON object of strings). On
		// fallback events: the channel the send left. Empty on every other event.
		return []column{{"events", "name", f.dim()}, {"events", "properties", "String"}, {"events", "from_channel", f.dim()}}
	}},
	{version: 14, name: "create_campaign_bitmaps", ddl: campaignBitmapsDDL, backfill: backfillCampaignBitmaps},
}

const createSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    UInt32,
    name       String,
    applied_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree()
ORDER BY version`

// Migrate brings the schema of the connection's current database up to date and returns
// the migrations it applied ("0001_create_events", …); nil when there was nothing to do.
// Applied versions are recorded in schema_migrations (version, name, applied_at). Every
// statement is idempotent, so a run that stopped half-way, or two runs racing, leave the
// same schema; a version recorded twice by a race collapses (ReplacingMergeTree) and is
// read with DISTINCT.
//
// Column types depend on the server version: on ClickHouse ≥ 20.1 repetitive strings
// are LowCardinality(String), on older servers plain String. The choice is made when a
// table is created; upgrading the server later does not alter existing tables.
func Migrate(ctx context.Context, conn driver.Conn) ([]string, error) {
	return migrate(ctx, conn, migrations)
}

// migrate applies the migrations of ms not recorded yet, in order.
func migrate(ctx context.Context, conn driver.Conn, ms []migration) ([]string, error) {
	sv, err := conn.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("migrate: server version: %w", err)
	}
	f := featuresOf(sv.Version)
	if err := conn.Exec(ctx, createSchemaMigrations); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range ms {
		if done[m.version] {
			continue
		}
		if m.columns != nil {
			for _, c := range m.columns(f) {
				if err := addColumn(ctx, conn, c); err != nil {
					return applied, fmt.Errorf("migrate %s on ClickHouse %s: %w", m.id(), sv.Version, err)
				}
			}
		}
		if m.ddl != nil {
			for _, stmt := range m.ddl(f) {
				if err := conn.Exec(ctx, stmt); err != nil {
					return applied, fmt.Errorf("migrate %s on ClickHouse %s: %w", m.id(), sv.Version, err)
				}
			}
		}
		if m.backfill != nil {
			if err := m.backfill(ctx, conn); err != nil {
				return applied, fmt.Errorf("migrate %s on ClickHouse %s: backfill: %w", m.id(), sv.Version, err)
			}
		}
		// A native INSERT … VALUES through Exec hangs on 18.16: insert through a batch.
		rec := []any{[]uint32{m.version}, []string{m.name}}
		if err := insertColumns(ctx, conn, "schema_migrations", []string{"version", "name"}, rec); err != nil {
			return applied, fmt.Errorf("migrate %s: record version: %w", m.id(), err)
		}
		applied = append(applied, m.id())
	}
	return applied, nil
}

func appliedVersions(ctx context.Context, conn driver.Conn) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	defer rows.Close()
	done := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
		}
		done[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	return done, nil
}

// hasColumn reports whether table of the current database has the column.
func hasColumn(ctx context.Context, conn driver.Conn, table, name string) (bool, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = ? AND name = ?",
		table, name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up column %s.%s: %w", table, name, err)
	}
	return n > 0, nil
}

// addColumn adds c unless the table has it already. A migration racing this one may add
// it between the check and the ALTER: the ALTER then fails, and the column being there
// afterwards is success.
func addColumn(ctx context.Context, conn driver.Conn, c column) error {
	ok, err := hasColumn(ctx, conn, c.table, c.name)
	if err != nil || ok {
		return err
	}
	alterErr := conn.Exec(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.name+" "+c.typ)
	if alterErr == nil {
		return nil
	}
	if ok, err := hasColumn(ctx, conn, c.table, c.name); err == nil && ok {
		return nil
	}
	return fmt.Errorf("add column %s.%s: %w", c.table, c.name, alterErr)
}
