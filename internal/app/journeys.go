package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/journeys"
)

// JourneyStore returns the journey definitions' store.
func (d *Deps) JourneyStore() (*journeys.Store, error) {
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	return journeys.NewStore(rdb, d.Cfg.Prefix), nil
}

// ValidateJourney parses a definition and checks what it names: its templates exist,
// its senders exist. Errors carry the YAML line.
func ValidateJourney(ctx context.Context, d *Deps, src []byte) (*journeys.Definition, error) {
	def, err := journeys.Parse(src)
	if err != nil {
		return nil, err
	}
	return def, checkJourney(ctx, d, def)
}

func checkJourney(ctx context.Context, d *Deps, def *journeys.Definition) error {
	comp, err := d.Components()
	if err != nil {
		return err
	}
	var lookupErr error
	if err := def.CheckTemplates(func(name string) bool {
		_, err := comp.Templates.Latest(ctx, name)
		if err != nil && !strings.Contains(err.Error(), "not found") {
			lookupErr = err
		}
		return err == nil
	}); err != nil {
		return err
	}
	if lookupErr != nil {
		return lookupErr
	}
	if len(def.Senders) == 0 {
		return journeys.Errors{{Line: def.Entry.Line, Msg: "senders: at least one sender id is required (add one with `herald senders add`)"}}
	}
	for _, id := range def.Senders {
		s, err := comp.Senders.Get(ctx, id)
		if err != nil {
			return journeys.Errors{{Msg: fmt.Sprintf("sender %q: %v (add it with `herald senders add`)", id, err)}}
		}
		if s.Channel != def.Channel {
			return journeys.Errors{{Msg: fmt.Sprintf("sender %q sends %s, not the journey's channel %s", id, s.Channel, def.Channel)}}
		}
	}
	return nil
}

// AddJourney validates a definition and stores it as the journey's next version.
func AddJourney(ctx context.Context, d *Deps, src []byte) (journeys.Info, error) {
	st, err := d.JourneyStore()
	if err != nil {
		return journeys.Info{}, err
	}
	def, _, err := st.Save(ctx, src, func(def *journeys.Definition) error { return checkJourney(ctx, d, def) })
	if err != nil {
		return journeys.Info{}, err
	}
	return st.Info(ctx, def.ID)
}

// ListJourneys lists every journey.
func ListJourneys(ctx context.Context, d *Deps) ([]journeys.Info, error) {
	st, err := d.JourneyStore()
	if err != nil {
		return nil, err
	}
	return st.List(ctx)
}

// ShowJourney returns one journey with its latest source.
func ShowJourney(ctx context.Context, d *Deps, id string) (journeys.Info, error) {
	st, err := d.JourneyStore()
	if err != nil {
		return journeys.Info{}, err
	}
	return st.Info(ctx, id)
}

// SetJourneyState pauses (journeys.Paused), resumes (journeys.Active) or archives a journey.
func SetJourneyState(ctx context.Context, d *Deps, id, state string) (journeys.Info, error) {
	st, err := d.JourneyStore()
	if err != nil {
		return journeys.Info{}, err
	}
	return st.SetState(ctx, id, state)
}

// JourneyEngine builds the engine over the configured servers; its metrics go to reg
// (nil: kept unexported).
func JourneyEngine(d *Deps, reg prometheus.Registerer) (*journeys.Engine, error) {
	comp, err := d.Components()
	if err != nil {
		return nil, err
	}
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	st, err := d.JourneyStore()
	if err != nil {
		return nil, err
	}
	return journeys.NewEngine(journeys.Config{Redis: rdb, Prefix: d.Cfg.Prefix, Store: st, Campaigns: comp.Campaigns,
		Contacts: comp.Contacts, Segments: comp.Contacts, Outbound: d.Writer(d.Topics.Outbound), Events: d.Writer(d.Topics.Events),
		Brokers: d.Cfg.KafkaBrokers, Topics: d.Topics, Now: d.Cfg.JourneyClock, Logger: d.Cfg.Logger, Registerer: reg}), nil
}

// Journeys runs the journey engine until ctx is cancelled (the worker role runs it).
func Journeys(ctx context.Context, d *Deps) error {
	var reg prometheus.Registerer
	if d.Cfg.Registry != nil {
		reg = d.Cfg.Registry
	}
	e, err := JourneyEngine(d, reg)
	if err != nil {
		return err
	}
	return e.Run(ctx)
}

// CustomEvent is an event a customer's system reports about a contact.
type CustomEvent struct {
	ID         string            `json:"id,omitempty"` // idempotency: the same id is one event
	Name       string            `json:"name"`
	ContactID  uint32            `json:"contact_id,omitempty"`
	Phone      string            `json:"phone,omitempty"`
	Email      string            `json:"email,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
	Time       time.Time         `json:"time,omitzero"`
}

// SentEvent is a custom event as published.
type SentEvent struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	ContactID uint32    `json:"contact_id"`
	Time      time.Time `json:"time"`
}

// SendEvent resolves the contact and publishes a custom event to herald.events, where
// journeys and ClickHouse read it. The same id (given, or derived from name, contact
// and time) is the same event.
func SendEvent(ctx context.Context, d *Deps, ce CustomEvent) (SentEvent, error) {
	if !validEventName(ce.Name) {
		return SentEvent{}, fieldErr("name", "event name %q: 1 to 64 letters, digits, _, - or .", ce.Name)
	}
	if len(ce.Properties) > 50 {
		return SentEvent{}, fieldErr("properties", "%d properties: at most 50", len(ce.Properties))
	}
	for k, v := range ce.Properties {
		if k == "" || len(k) > 64 || len(v) > 1024 {
			return SentEvent{}, fieldErr("properties", "property %q: names 1 to 64 bytes, values at most 1024", k)
		}
	}
	comp, err := d.Components()
	if err != nil {
		return SentEvent{}, err
	}
	contact := ce.ContactID
	who := ce.Phone
	if who == "" {
		who = ce.Email
	}
	if contact == 0 {
		if who == "" {
			return SentEvent{}, fieldErr("contact_id", "a contact is required: contact_id, phone or email")
		}
		if contact, err = comp.Contacts.Lookup(ctx, who); err != nil {
			return SentEvent{}, err
		}
		if contact == 0 {
			return SentEvent{}, fieldErr("contact", "no contact %s", who)
		}
	}
	at := ce.Time
	if at.IsZero() {
		at = time.Now()
	}
	disc := ce.ID
	if disc == "" {
		disc = ce.Name + "|" + strconv.FormatInt(at.UnixNano(), 10)
	}
	ev := events.New(events.Custom, "", contact, at)
	ev.ID = events.ID("", contact, events.Custom, "custom|"+disc)
	ev.Name, ev.Properties = ce.Name, events.EncodeProperties(ce.Properties)
	ev.Reason = ce.Name // the events table keeps a custom event's name in reason
	b, err := ev.Marshal()
	if err != nil {
		return SentEvent{}, err
	}
	if err := d.Writer(d.Topics.Events).WriteMessages(ctx, kafka.Message{Key: kafkax.ContactKey(contact), Value: b}); err != nil {
		return SentEvent{}, fmt.Errorf("publish event: %w", err)
	}
	return SentEvent{ID: ev.ID, Name: ev.Name, ContactID: contact, Time: ev.Time}, nil
}

func validEventName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// JourneyStepReport is one step's figures.
type JourneyStepReport struct {
	Step    string `json:"step"`
	Reached uint64 `json:"reached"`
	Sent    uint64 `json:"sent"`
}

// JourneyReport is a journey's funnel.
type JourneyReport struct {
	Journey   string              `json:"journey"`
	Entered   uint64              `json:"entered"`
	Steps     []JourneyStepReport `json:"steps"`
	Converted uint64              `json:"converted"`
	// Triggered is, for a journey entered by a custom event, how many such events
	// (its name, its where filters on their properties) arrived since the journey was
	// created: beside Entered, what re-entry rules and entry keys held back.
	Triggered    *uint64           `json:"triggered,omitempty"`
	Exits        map[string]uint64 `json:"exits"`
	AvgSecondsIn float64           `json:"avg_seconds_in_journey"`
}

// ReportJourney reads a journey's funnel from ClickHouse: entered, reached and sent per
// step, converted (conversions attributed to its messages), exits by reason, and the
// average time from entry to exit.
func ReportJourney(ctx context.Context, d *Deps, id string) (JourneyReport, error) {
	st, err := d.JourneyStore()
	if err != nil {
		return JourneyReport{}, err
	}
	def, _, err := st.Version(ctx, id, 0)
	if err != nil {
		return JourneyReport{}, err
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		return JourneyReport{}, err
	}
	rep := JourneyReport{Journey: id, Exits: map[string]uint64{}}
	reached, sent := map[string]uint64{}, map[string]uint64{}
	rows, err := conn.Query(ctx, `SELECT kind, reason, uniqExact(event_id) FROM events FINAL WHERE campaign_id = ? GROUP BY kind, reason`, journeys.JourneyCampaign(id))
	if err != nil {
		return rep, fmt.Errorf("journey report: %w", err)
	}
	for rows.Next() {
		var kind, reason string
		var n uint64
		if err := rows.Scan(&kind, &reason, &n); err != nil {
			rows.Close()
			return rep, err
		}
		switch events.Kind(kind) {
		case events.JourneyEntered:
			rep.Entered += n
		case events.JourneyStep:
			reached[reason] += n
		case events.JourneyExited:
			rep.Exits[reason] += n
		}
	}
	rows.Close()
	rows, err = conn.Query(ctx, `SELECT campaign_id, kind, uniqExact(contact_id) FROM events FINAL WHERE startsWith(campaign_id, ?) AND kind IN ('sent', 'converted') GROUP BY campaign_id, kind`, journeys.CampaignPrefix(id))
	if err != nil {
		return rep, fmt.Errorf("journey report: %w", err)
	}
	for rows.Next() {
		var cid, kind string
		var n uint64
		if err := rows.Scan(&cid, &kind, &n); err != nil {
			rows.Close()
			return rep, err
		}
		_, _, step, _, ok := journeys.ParseCampaignID(cid)
		if !ok {
			continue
		}
		if kind == string(events.Sent) {
			sent[step] += n
		} else {
			rep.Converted += n
		}
	}
	rows.Close()
	var avg float64
	row := conn.QueryRow(ctx, `SELECT avg(d) FROM (SELECT contact_id, (toInt64(maxIf(ts_ms, kind = 'journey_exited')) - toInt64(minIf(ts_ms, kind = 'journey_entered'))) / 1000 AS d
FROM events WHERE campaign_id = ? GROUP BY contact_id HAVING countIf(kind = 'journey_exited') > 0 AND countIf(kind = 'journey_entered') > 0)`, journeys.JourneyCampaign(id))
	if err := row.Scan(&avg); err == nil && avg == avg {
		rep.AvgSecondsIn = avg
	}
	for _, s := range def.Steps {
		rep.Steps = append(rep.Steps, JourneyStepReport{Step: s.ID, Reached: reached[s.ID], Sent: sent[s.ID]})
	}
	if def.Entry.Event == journeys.OnCustom {
		info, err := st.Info(ctx, id)
		if err != nil {
			return rep, err
		}
		n, err := customTriggers(ctx, conn, def.Entry, info.Created)
		if err != nil {
			return rep, err
		}
		rep.Triggered = &n
	}
	return rep, nil
}

// customTriggers counts the custom events that match a journey's entry trigger (its
// name and its property filters, read from the events' properties column with
// visitParamExtractString: ClickHouse 18.16 has no JSONExtract) since a time.
func customTriggers(ctx context.Context, conn driver.Conn, tr journeys.Trigger, since time.Time) (uint64, error) {
	q := strings.Builder{}
	q.WriteString(`SELECT uniqExact(event_id) FROM events WHERE kind = 'custom' AND name = ? AND ts_ms >= ?`)
	args := []any{tr.Name, uint64(since.UnixMilli())}
	keys := make([]string, 0, len(tr.Where))
	for k := range tr.Where {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.WriteString(` AND visitParamExtractString(properties, ?) = ?`)
		args = append(args, k, tr.Where[k])
	}
	var n uint64
	if err := conn.QueryRow(ctx, q.String(), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("journey report: triggering events: %w", err)
	}
	return n, nil
}

// IsJourneyNotFound reports whether err is an unknown journey.
func IsJourneyNotFound(err error) bool { return errors.Is(err, journeys.ErrNotFound) }
