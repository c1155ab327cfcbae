package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

// buffer accumulates the decoded rows of one table, column by column, until they are
// inserted as one batch. A failed insert keeps the rows so the same batch is retried.
type buffer interface {
	table() string
	// add decodes one Kafka message value and appends its row; an error means the
	// message is undecodable and nothing was appended.
	add(value []byte) error
	len() int
	// insert sends every buffered row in one INSERT; the rows stay buffered.
	insert(ctx context.Context, conn driver.Conn) error
	reset()
}

// insertColumns sends cols (one slice per column, equal lengths) as one INSERT into
// table with an explicit column list (ClickHouse 18.16 needs it for a native insert).
func insertColumns(ctx context.Context, conn driver.Conn, table string, names []string, cols []any) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+strings.Join(names, ", ")+")")
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	defer batch.Close()
	for i, c := range cols {
		if err := batch.Column(i).Append(c); err != nil {
			return fmt.Errorf("insert into %s: column %s: %w", table, names[i], err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

// checkTime rejects times a DateTime column cannot hold, so one bad message cannot
// become a batch ClickHouse refuses forever.
func checkTime(t time.Time) error {
	if t.IsZero() {
		return errors.New("missing ts")
	}
	if s := t.Unix(); s < 0 || s > math.MaxUint32 {
		return fmt.Errorf("ts %s out of range", t.UTC().Format(time.RFC3339))
	}
	return nil
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// eventsBuffer holds rows of the events table.
type eventsBuffer struct {
	eventID, kind, campaignID, senderID, channel, template, variant, country []string
	providerMsgID, reason, consentRef, orderID, currency                     []string
	name, properties, fromChannel                                            []string
	value                                                                    []float64
	ts, until                                                                []time.Time
	tsMS                                                                     []uint64
	contactID                                                                []uint32
	errorCode                                                                []int32
	retryable                                                                []uint8
}

var eventsColumns = []string{"event_id", "kind", "ts", "ts_ms", "campaign_id", "contact_id", "sender_id",
	"channel", "template", "variant", "country", "provider_msg_id", "reason", "error_code", "retryable", "consent_ref",
	"until", "order_id", "value", "currency", "name", "properties", "from_channel"}

// unixZero is what a DateTime column holds for "no time" (an event without Until).
var unixZero = time.Unix(0, 0).UTC()

func (b *eventsBuffer) table() string { return "events" }
func (b *eventsBuffer) len() int      { return len(b.eventID) }

func (b *eventsBuffer) add(value []byte) error {
	e, err := decodeEvent(value)
	if err != nil {
		return err
	}
	if err := checkTime(e.Time); err != nil {
		return fmt.Errorf("decode event %s: %w", e.ID, err)
	}
	if e.ErrorCode < math.MinInt32 || e.ErrorCode > math.MaxInt32 {
		return fmt.Errorf("decode event %s: error code %d out of range", e.ID, e.ErrorCode)
	}
	if !e.Until.IsZero() {
		if err := checkTime(e.Until); err != nil {
			return fmt.Errorf("decode event %s: until: %w", e.ID, err)
		}
	}
	b.appendEvent(e)
	return nil
}

func (b *eventsBuffer) appendEvent(e events.Event) {
	b.eventID = append(b.eventID, e.ID)
	b.kind = append(b.kind, string(e.Kind))
	b.ts = append(b.ts, e.Time.UTC())
	b.tsMS = append(b.tsMS, uint64(e.Time.UnixMilli()))
	b.campaignID = append(b.campaignID, e.CampaignID)
	b.contactID = append(b.contactID, e.ContactID)
	b.senderID = append(b.senderID, e.SenderID)
	b.channel = append(b.channel, e.Channel)
	b.template = append(b.template, e.Template)
	b.variant = append(b.variant, e.Variant)
	b.country = append(b.country, e.Country)
	b.providerMsgID = append(b.providerMsgID, e.ProviderMessageID)
	b.reason = append(b.reason, e.Reason)
	b.errorCode = append(b.errorCode, int32(e.ErrorCode))
	b.retryable = append(b.retryable, b2u8(e.Retryable))
	b.consentRef = append(b.consentRef, e.ConsentRef)
	until := unixZero
	if !e.Until.IsZero() {
		until = e.Until.UTC()
	}
	b.until = append(b.until, until)
	b.orderID = append(b.orderID, e.OrderID)
	b.value = append(b.value, e.Value)
	b.currency = append(b.currency, e.Currency)
	b.name = append(b.name, e.Name)
	b.properties = append(b.properties, e.Properties)
	b.fromChannel = append(b.fromChannel, e.FromChannel)
}

func (b *eventsBuffer) insert(ctx context.Context, conn driver.Conn) error {
	return insertColumns(ctx, conn, "events", eventsColumns, []any{b.eventID, b.kind, b.ts, b.tsMS,
		b.campaignID, b.contactID, b.senderID, b.channel, b.template, b.variant, b.country,
		b.providerMsgID, b.reason, b.errorCode, b.retryable, b.consentRef, b.until, b.orderID, b.value, b.currency,
		b.name, b.properties, b.fromChannel})
}

func (b *eventsBuffer) reset() { *b = eventsBuffer{} }

// consentBuffer holds rows of consent_log.
type consentBuffer struct {
	id, channel, purpose, action, source, wording, wordingVersion []string
	ip, userAgent, actor, proof, prevHash, hash                   []string
	contactID                                                     []uint32
	ts                                                            []time.Time
	tsMS                                                          []uint64
}

var consentColumns = []string{"id", "contact_id", "channel", "purpose", "action", "source", "wording",
	"wording_version", "ip", "user_agent", "actor", "proof", "ts", "ts_ms", "prev_hash", "hash"}

func (b *consentBuffer) table() string { return "consent_log" }
func (b *consentBuffer) len() int      { return len(b.id) }

func (b *consentBuffer) add(value []byte) error {
	r, err := events.UnmarshalConsent(value)
	if err != nil {
		return err
	}
	if err := checkTime(r.Time); err != nil {
		return fmt.Errorf("decode consent record %s: %w", r.ID, err)
	}
	b.appendRecord(r)
	return nil
}

func (b *consentBuffer) appendRecord(r events.ConsentRecord) {
	b.id = append(b.id, r.ID)
	b.contactID = append(b.contactID, r.ContactID)
	b.channel = append(b.channel, r.Channel)
	b.purpose = append(b.purpose, r.Purpose)
	b.action = append(b.action, string(r.Action))
	b.source = append(b.source, r.Source)
	b.wording = append(b.wording, r.Wording)
	b.wordingVersion = append(b.wordingVersion, r.WordingVersion)
	b.ip = append(b.ip, r.IP)
	b.userAgent = append(b.userAgent, r.UserAgent)
	b.actor = append(b.actor, r.Actor)
	b.proof = append(b.proof, r.Proof)
	b.ts = append(b.ts, r.Time.UTC())
	// The chain hash covers the time in unix milliseconds; ts_ms keeps exactly that.
	b.tsMS = append(b.tsMS, uint64(r.Time.UnixMilli()))
	b.prevHash = append(b.prevHash, r.PrevHash)
	b.hash = append(b.hash, r.Hash)
}

func (b *consentBuffer) insert(ctx context.Context, conn driver.Conn) error {
	return insertColumns(ctx, conn, "consent_log", consentColumns, []any{b.id, b.contactID, b.channel,
		b.purpose, b.action, b.source, b.wording, b.wordingVersion, b.ip, b.userAgent, b.actor, b.proof,
		b.ts, b.tsMS, b.prevHash, b.hash})
}

func (b *consentBuffer) reset() { *b = consentBuffer{} }

// inboundBuffer holds rows of inbound.
type inboundBuffer struct {
	id, from, senderID, channel, typ, text, replyTo []string
	contactID                                       []uint32
	ts                                              []time.Time
	tsMS                                            []uint64
}

var inboundColumns = []string{"id", "contact_id", "from_addr", "sender_id", "channel", "type", "text",
	"reply_to", "ts", "ts_ms"}

func (b *inboundBuffer) table() string { return "inbound" }
func (b *inboundBuffer) len() int      { return len(b.id) }

func (b *inboundBuffer) add(value []byte) error {
	var m events.Inbound
	if err := json.Unmarshal(value, &m); err != nil {
		return fmt.Errorf("decode inbound: %w", err)
	}
	if m.ID == "" || m.ContactID == 0 {
		return fmt.Errorf("decode inbound %q: missing id or contact", m.ID)
	}
	if err := checkTime(m.Time); err != nil {
		return fmt.Errorf("decode inbound %s: %w", m.ID, err)
	}
	b.id = append(b.id, m.ID)
	b.contactID = append(b.contactID, m.ContactID)
	b.from = append(b.from, m.From)
	b.senderID = append(b.senderID, m.SenderID)
	b.channel = append(b.channel, m.Channel)
	b.typ = append(b.typ, m.Type)
	b.text = append(b.text, m.Text)
	b.replyTo = append(b.replyTo, m.ReplyToProviderID)
	b.ts = append(b.ts, m.Time.UTC())
	b.tsMS = append(b.tsMS, uint64(m.Time.UnixMilli()))
	return nil
}

func (b *inboundBuffer) insert(ctx context.Context, conn driver.Conn) error {
	return insertColumns(ctx, conn, "inbound", inboundColumns, []any{b.id, b.contactID, b.from, b.senderID,
		b.channel, b.typ, b.text, b.replyTo, b.ts, b.tsMS})
}

func (b *inboundBuffer) reset() { *b = inboundBuffer{} }
