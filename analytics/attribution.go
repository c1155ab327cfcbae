package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

// DefaultAttributionWindow is how far back a conversion looks for the campaign that
// caused it.
const DefaultAttributionWindow = 7 * 24 * time.Hour

// Attributor finds the campaign a conversion is attributed to: the last campaign that
// sent to the contact within the window before the conversion (last touch).
type Attributor struct {
	conn   driver.Conn
	window time.Duration
}

// NewAttributor returns an Attributor over conn; window ≤ 0 means DefaultAttributionWindow.
func NewAttributor(conn driver.Conn, window time.Duration) *Attributor {
	if window <= 0 {
		window = DefaultAttributionWindow
	}
	return &Attributor{conn: conn, window: window}
}

// lastTouchQuery: the latest sent event to a contact in (at - window, at]; a tie in
// milliseconds goes to the greater campaign id, so the answer is deterministic.
const lastTouchQuery = `SELECT campaign_id, ts_ms FROM events
WHERE contact_id = ? AND kind = 'sent' AND ts_ms <= ? AND ts_ms > ?
ORDER BY ts_ms DESC, campaign_id DESC
LIMIT 1`

// LastTouch returns the campaign that last sent to contact within the window before
// at, and when; ok is false when none did.
func (a *Attributor) LastTouch(ctx context.Context, contact uint32, at time.Time) (campaign string, sentAt time.Time, ok bool, err error) {
	to := at.UnixMilli()
	from := max(to-a.window.Milliseconds(), 0)
	rows, err := a.conn.Query(ctx, lastTouchQuery, contact, uint64(to), uint64(from))
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("attribute conversion of %d: %w", contact, err)
	}
	defer rows.Close()
	if rows.Next() {
		var ms uint64
		if err := rows.Scan(&campaign, &ms); err != nil {
			return "", time.Time{}, false, fmt.Errorf("attribute conversion of %d: %w", contact, err)
		}
		return campaign, msTime(ms), true, nil
	}
	if err := rows.Err(); err != nil {
		return "", time.Time{}, false, fmt.Errorf("attribute conversion of %d: %w", contact, err)
	}
	return "", time.Time{}, false, nil
}

// Conversion is an order a contact placed.
type Conversion struct {
	ContactID uint32
	OrderID   string
	Value     float64
	Currency  string // ISO 4217, e.g. THB
	Time      time.Time
}

// Validate reports what is wrong with c, naming the field.
func (c Conversion) Validate() error {
	var errs []error
	if c.ContactID == 0 {
		errs = append(errs, errors.New("contact: missing"))
	}
	if c.OrderID == "" || len(c.OrderID) > 200 {
		errs = append(errs, errors.New("order_id: want 1 to 200 characters"))
	}
	if c.Value < 0 || math.IsNaN(c.Value) || math.IsInf(c.Value, 0) {
		errs = append(errs, fmt.Errorf("value %v: want a finite amount ≥ 0", c.Value))
	}
	if len(c.Currency) != 3 || c.Currency != upperASCII(c.Currency) {
		errs = append(errs, fmt.Errorf("currency %q: want an ISO 4217 code such as THB", c.Currency))
	}
	if err := checkTime(c.Time); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch < 'A' || ch > 'Z' {
			b[i] = '?'
		}
	}
	return string(b)
}

// ConversionEvent is the converted event of c attributed to campaign ("" when no
// campaign sent to the contact within the window), with the order's id, value and
// currency. Its id is deterministic in (campaign, contact, order id), so the same order
// tracked twice counts once.
func ConversionEvent(c Conversion, campaign string) events.Event {
	e := events.New(events.Converted, campaign, c.ContactID, c.Time)
	e.ID = events.ID(campaign, c.ContactID, events.Converted, c.OrderID)
	e.OrderID, e.Value, e.Currency = c.OrderID, c.Value, c.Currency
	return e
}
