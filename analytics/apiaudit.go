package analytics

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

// createAPIAudit is the table of the API's audit records. ReplacingMergeTree on the
// record id: a record the sink inserted twice collapses, and ListAPICalls reads one row
// per id whether or not the parts were merged.
func createAPIAudit(f schemaFeatures) string {
	return `CREATE TABLE IF NOT EXISTS api_audit (
    id              String,
    ts              DateTime,
    ts_ms           UInt64,
    request_id      String,
    key_id          String,
    key_name        String,
    role            ` + f.dim() + `,
    method          ` + f.dim() + `,
    route           ` + f.dim() + `,
    resource_id     String,
    status          UInt16,
    idempotency_key String,
    replayed        UInt8,
    duration_ms     Float64,
    inserted_at     DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (ts_ms, id)`
}

var apiAuditColumns = []string{"id", "ts", "ts_ms", "request_id", "key_id", "key_name", "role", "method", "route",
	"resource_id", "status", "idempotency_key", "replayed", "duration_ms"}

// apiAuditBuffer holds rows of api_audit.
type apiAuditBuffer struct {
	id, requestID, keyID, keyName, role, method, route, resourceID, idemKey []string
	ts                                                                      []time.Time
	tsMS                                                                    []uint64
	status                                                                  []uint16
	replayed                                                                []uint8
	duration                                                                []float64
}

func (b *apiAuditBuffer) table() string { return "api_audit" }
func (b *apiAuditBuffer) len() int      { return len(b.id) }

func (b *apiAuditBuffer) add(value []byte) error {
	c, err := events.UnmarshalAPICall(value)
	if err != nil {
		return err
	}
	if err := checkTime(c.Time); err != nil {
		return fmt.Errorf("decode api call %s: %w", c.ID, err)
	}
	if c.Status < 0 || c.Status > 999 {
		return fmt.Errorf("decode api call %s: status %d", c.ID, c.Status)
	}
	b.id = append(b.id, c.ID)
	b.ts = append(b.ts, c.Time.UTC())
	b.tsMS = append(b.tsMS, uint64(c.Time.UnixMilli()))
	b.requestID = append(b.requestID, c.RequestID)
	b.keyID = append(b.keyID, c.KeyID)
	b.keyName = append(b.keyName, c.KeyName)
	b.role = append(b.role, c.Role)
	b.method = append(b.method, c.Method)
	b.route = append(b.route, c.Route)
	b.resourceID = append(b.resourceID, c.ResourceID)
	b.status = append(b.status, uint16(c.Status))
	b.idemKey = append(b.idemKey, c.IdempotencyKey)
	b.replayed = append(b.replayed, b2u8(c.Replayed))
	b.duration = append(b.duration, c.DurationMS)
	return nil
}

func (b *apiAuditBuffer) insert(ctx context.Context, conn driver.Conn) error {
	return insertColumns(ctx, conn, "api_audit", apiAuditColumns, []any{b.id, b.ts, b.tsMS, b.requestID, b.keyID,
		b.keyName, b.role, b.method, b.route, b.resourceID, b.status, b.idemKey, b.replayed, b.duration})
}

func (b *apiAuditBuffer) reset() { *b = apiAuditBuffer{} }

// APICallFilter narrows ListAPICalls; empty fields match everything.
type APICallFilter struct {
	KeyID      string
	ResourceID string
	From, To   time.Time // ts in [From, To)
}

// APICallPage is where a page of ListAPICalls stops: the next page lists the records
// older than it. The zero value starts at the newest record.
type APICallPage struct {
	TsMS uint64
	ID   string
}

// ListAPICalls returns up to limit audit records of the API matching f, newest first
// (by time, then id), older than after, and the key of the next page (zero when this
// page is the last).
func ListAPICalls(ctx context.Context, conn driver.Conn, f APICallFilter, after APICallPage, limit int) ([]events.APICall, APICallPage, error) {
	var where []string
	var args []any
	if after.ID != "" {
		where = append(where, "(ts_ms < ? OR (ts_ms = ? AND id < ?))")
		args = append(args, after.TsMS, after.TsMS, after.ID)
	}
	if f.KeyID != "" {
		where = append(where, "key_id = ?")
		args = append(args, f.KeyID)
	}
	if f.ResourceID != "" {
		where = append(where, "resource_id = ?")
		args = append(args, f.ResourceID)
	}
	if !f.From.IsZero() {
		where = append(where, "ts_ms >= ?")
		args = append(args, uint64(f.From.UnixMilli()))
	}
	if !f.To.IsZero() {
		where = append(where, "ts_ms < ?")
		args = append(args, uint64(f.To.UnixMilli()))
	}
	q := "SELECT id, ts_ms, request_id, key_id, key_name, role, method, route, resource_id, status, idempotency_key, replayed, duration_ms FROM api_audit"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// One row per id (a record the sink inserted twice, not merged yet, counts once).
	q += fmt.Sprintf(" ORDER BY ts_ms DESC, id DESC LIMIT 1 BY id LIMIT %d", limit+1)
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, APICallPage{}, fmt.Errorf("list api calls: %w", err)
	}
	defer rows.Close()
	out := []events.APICall{}
	for rows.Next() {
		var c events.APICall
		var tsMS uint64
		var status uint16
		var replayed uint8
		if err := rows.Scan(&c.ID, &tsMS, &c.RequestID, &c.KeyID, &c.KeyName, &c.Role, &c.Method, &c.Route, &c.ResourceID,
			&status, &c.IdempotencyKey, &replayed, &c.DurationMS); err != nil {
			return nil, APICallPage{}, fmt.Errorf("list api calls: %w", err)
		}
		c.Time, c.Status, c.Replayed = time.UnixMilli(int64(tsMS)).UTC(), int(status), replayed == 1
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, APICallPage{}, fmt.Errorf("list api calls: %w", err)
	}
	var next APICallPage
	if len(out) > limit {
		out = out[:limit]
		last := out[len(out)-1]
		next = APICallPage{TsMS: uint64(last.Time.UnixMilli()), ID: last.ID}
	}
	return out, next, nil
}
