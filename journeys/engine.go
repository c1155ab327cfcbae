package journeys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/segments"
)

// Publisher writes messages to one Kafka topic (a *kafka.Writer).
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Campaigns stores the journey campaigns send steps queue jobs of (dispatcher.Campaigns).
type Campaigns interface {
	EnsureRunning(ctx context.Context, cp dispatcher.Campaign) error
}

// Contacts loads profiles (zone and attributes for waits).
type Contacts interface {
	ProfileFields(ctx context.Context, ids []uint32) ([]segments.Contact, error)
}

// Segments evaluates branch expressions and tags contacts (segments.Store).
type Segments interface {
	Evaluate(ctx context.Context, expr string) (*roaring.Bitmap, error)
	TagContacts(ctx context.Context, tag string, ids *roaring.Bitmap, add bool) (segments.TagChange, error)
}

// Config wires an Engine.
type Config struct {
	Redis     redis.UniversalClient
	Prefix    string
	Store     *Store
	Campaigns Campaigns
	Contacts  Contacts
	Segments  Segments
	Outbound  Publisher // herald.outbound: send jobs, keyed by sender
	Events    Publisher // herald.events: journey events (and queued)
	// Brokers and Topics are what Run consumes triggers from (herald.events and
	// herald.inbound, group "herald-journeys").
	Brokers []string
	Topics  kafkax.Topics
	Group   string
	Now     func() time.Time // the clock (default time.Now)
	// Lease is how long a claimed timer (or a state being run) stays with its runner
	// before another engine may take it (default 30 s).
	Lease time.Duration
	Poll  time.Duration // the timer poll interval (default 100 ms)
	Batch int           // timers claimed per round (default 1000)
	// SegmentEvery is how often segment- and tag-entered journeys reconcile with their
	// whole segment (default 5 min; tag events move contacts at once in between).
	SegmentEvery time.Duration
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	// Zone is the zone of contacts without one (default UTC).
	Zone *time.Location
}

// Engine moves contacts through journeys.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	defs sync.Map // "id\x00version" → *Definition
	mu   sync.Mutex
	live map[string]*runnable
	seg  segCache
	// segReady holds the membership journeys whose segment bitmap this engine has seen
	// exist (the others get their first look at the next timer poll).
	segReady sync.Map
	m        metrics
}

type metrics struct {
	entered  prometheus.Counter
	steps    *prometheus.CounterVec
	exits    *prometheus.CounterVec
	lateness prometheus.Histogram
}

// NewEngine returns an engine; Run starts it.
func NewEngine(cfg Config) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.SegmentEvery <= 0 {
		cfg.SegmentEvery = 5 * time.Minute
	}
	if cfg.Group == "" {
		cfg.Group = "herald-journeys"
	}
	if cfg.Zone == nil {
		cfg.Zone = time.UTC
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	return &Engine{cfg: cfg, log: log.With("component", "journeys"), live: map[string]*runnable{}, m: metrics{
		entered:  f.NewCounter(prometheus.CounterOpts{Name: "herald_journey_entered_total", Help: "Contacts that entered a journey."}),
		steps:    f.NewCounterVec(prometheus.CounterOpts{Name: "herald_journey_steps_total", Help: "Journey steps run, by kind."}, []string{"kind"}),
		exits:    f.NewCounterVec(prometheus.CounterOpts{Name: "herald_journey_exits_total", Help: "Journey exits by reason."}, []string{"reason"}),
		lateness: f.NewHistogram(prometheus.HistogramOpts{Name: "herald_journey_timer_lateness_seconds", Help: "How late journey timers fire.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
	}}
}

func (e *Engine) instKey(id string, c uint32) string {
	return e.cfg.Prefix + "{jrn:" + id + "}:i:" + strconv.FormatUint(uint64(c>>7), 10)
}
func (e *Engine) histKey(id string, c uint32) string {
	return e.cfg.Prefix + "{jrn:" + id + "}:h:" + strconv.FormatUint(uint64(c>>7), 10)
}
func (e *Engine) timersKey(id string) string { return e.cfg.Prefix + "{jrn:" + id + "}:timers" }
func (e *Engine) entryKey(id string, c uint32, k string) string {
	return e.cfg.Prefix + "{jrn:" + id + "}:ek:" + strconv.FormatUint(uint64(c), 10) + ":" + k
}

// Instance is one contact's place in a journey. Stored as
// "version,entry,seq,step,mode,entered ms,since ms,props" in its bucket's hash.
type Instance struct {
	Journey string            `json:"journey"`
	Contact uint32            `json:"contact"`
	Version int               `json:"version"`
	Entry   int               `json:"entry"` // the contact's how-many-th entry
	Seq     int               `json:"seq"`   // state changes so far (the compare-and-set token)
	Step    string            `json:"step"`
	Waiting bool              `json:"waiting"` // at a wait or wait_for (else: about to run Step)
	Entered time.Time         `json:"entered_at"`
	Since   time.Time         `json:"since"`
	Props   map[string]string `json:"props,omitempty"` // the last trigger's properties
}

func (in Instance) encode() string {
	mode := "r"
	if in.Waiting {
		mode = "w"
	}
	b := strings.Builder{}
	fmt.Fprintf(&b, "%d,%d,%d,%s,%s,%d,%d", in.Version, in.Entry, in.Seq, in.Step, mode, in.Entered.UnixMilli(), in.Since.UnixMilli())
	if len(in.Props) > 0 {
		b.WriteByte(',')
		b.WriteString(encodeProps(in.Props))
	}
	return b.String()
}

func decodeInstance(id string, c uint32, s string) (Instance, bool) {
	f := strings.SplitN(s, ",", 8)
	if len(f) < 7 {
		return Instance{}, false
	}
	in := Instance{Journey: id, Contact: c, Step: f[3], Waiting: f[4] == "w"}
	var err [5]error
	in.Version, err[0] = strconv.Atoi(f[0])
	in.Entry, err[1] = strconv.Atoi(f[1])
	in.Seq, err[2] = strconv.Atoi(f[2])
	var a, b int64
	a, err[3] = strconv.ParseInt(f[5], 10, 64)
	b, err[4] = strconv.ParseInt(f[6], 10, 64)
	for _, e := range err {
		if e != nil {
			return Instance{}, false
		}
	}
	in.Entered, in.Since = time.UnixMilli(a).UTC(), time.UnixMilli(b).UTC()
	if len(f) == 8 {
		in.Props = decodeProps(f[7])
	}
	return in, true
}

// encodeProps writes k=v pairs separated by \x1f (values may hold commas).
func encodeProps(m map[string]string) string {
	var b strings.Builder
	for k, v := range m {
		if b.Len() > 0 {
			b.WriteByte(0x1f)
		}
		b.WriteString(strings.ReplaceAll(k, "=", ""))
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(v, "\x1f", ""))
	}
	return b.String()
}

func decodeProps(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, "\x1f") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func member(in Instance) string {
	return strconv.FormatUint(uint64(in.Contact), 10) + "|" + strconv.Itoa(in.Entry) + "|" + strconv.Itoa(in.Seq)
}

// enterScript: KEYS inst bucket, hist bucket, timers, entry key. ARGV contact, instance
// head ("version,"), instance tail (",step,r,now,now[,props]"), now ms, due ms, reentry,
// period ms, entry key TTL ms, entry key, "1" to keep the entry key in a key of its own
// (an entry_key property, or every_time: many entries to tell apart) rather than only as
// the history's last. The history is "entries,last entry ms,last entry key". Answers
// the entry number, or 0 (not entered).
var enterScript = redis.NewScript(`
local c = ARGV[1]
if redis.call('HEXISTS', KEYS[1], c) == 1 then return 0 end
if ARGV[10] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local h = redis.call('HGET', KEYS[2], c)
local n, last, lastKey = 0, 0, ''
if h then
  local a, b, k = string.match(h, '^(%d+),(%d+),?(.*)$')
  n, last, lastKey = tonumber(a), tonumber(b), k
end
if n > 0 and lastKey == ARGV[9] then return 0 end
local now = tonumber(ARGV[4])
if n > 0 and ARGV[6] == 'once' then return 0 end
if n > 0 and ARGV[6] == 'once_per' and now - last < tonumber(ARGV[7]) then return 0 end
n = n + 1
redis.call('HSET', KEYS[2], c, n .. ',' .. now .. ',' .. ARGV[9])
if ARGV[10] == '1' then redis.call('SET', KEYS[4], '1', 'PX', ARGV[8]) end
redis.call('HSET', KEYS[1], c, ARGV[2] .. n .. ',1' .. ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[5], c .. '|' .. n .. '|1')
return n
`)

// commitScript: KEYS inst bucket, timers. ARGV contact, entry, seq, new instance ("":
// gone), due ms ("": no timer), new member. 1: committed; 0: the instance moved on.
var commitScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local e, s = string.match(cur, '^%d+,(%d+),(%d+),')
if e ~= ARGV[2] or s ~= ARGV[3] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1] .. '|' .. e .. '|' .. s)
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
end
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6]) end
return 1
`)

// exitScript: KEYS inst bucket, timers, exits bucket. ARGV contact. Removes the
// instance and its timer at once, and notes its entry among the contact's exited ones
// (the last 8, newest first: the worker drops their send jobs still in Kafka); answers
// the instance it removed ("" : none).
var exitScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return '' end
local e, s = string.match(cur, '^%d+,(%d+),(%d+),')
if e then
  redis.call('ZREM', KEYS[2], ARGV[1] .. '|' .. e .. '|' .. s)
  local prev = redis.call('HGET', KEYS[3], ARGV[1])
  local list = e
  if prev then
    local n = 1
    for x in string.gmatch(prev, '[^,]+') do
      if n >= 8 then break end
      if x ~= e then list = list .. ',' .. x; n = n + 1 end
    end
  end
  redis.call('HSET', KEYS[3], ARGV[1], list)
end
redis.call('HDEL', KEYS[1], ARGV[1])
return cur
`)

// claimScript: KEYS timers. ARGV now ms, lease-until ms, limit, the instance buckets'
// key prefix. Re-scores up to limit due timers to the lease's end and answers each
// with its due time and its instance's value ("" : none), one round trip for all.
var claimScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], due[i])
  local c = tonumber(string.match(due[i], '^(%d+)|'))
  local v = false
  if c then v = redis.call('HGET', ARGV[4] .. math.floor(c / 128), tostring(c)) end
  out[#out + 1] = due[i]
  out[#out + 1] = due[i + 1]
  out[#out + 1] = v or ''
end
return out
`)

// definition returns journey id's version (cached: versions never change).
func (e *Engine) definition(ctx context.Context, id string, version int) (*Definition, error) {
	k := id + "\x00" + strconv.Itoa(version)
	if d, ok := e.defs.Load(k); ok {
		return d.(*Definition), nil
	}
	d, _, err := e.cfg.Store.Version(ctx, id, version)
	if err != nil {
		return nil, err
	}
	e.defs.Store(k, d)
	return d, nil
}

// Refresh reloads the journeys' states and latest versions (Run does it every second).
func (e *Engine) Refresh(ctx context.Context) error {
	live, err := e.cfg.Store.load(ctx)
	if err != nil {
		return err
	}
	for id, r := range live {
		r.cares = map[string]bool{}
		readable := 0
		for v := 1; v <= r.version; v++ {
			d, err := e.definition(ctx, id, v)
			if errors.Is(err, ErrNotFound) || errors.As(err, new(Errors)) {
				// A version that no longer parses (a stricter parser): the others run.
				e.log.Warn("journey version unreadable; skipped", "journey", id, "version", v, "err", err)
				continue
			}
			if err != nil {
				return err
			}
			for k := range triggerKinds {
				if d.cares(k) {
					r.cares[k] = true
				}
			}
			r.def, readable = d, v
		}
		if r.def == nil {
			delete(live, id)
			continue
		}
		if expr, ok := membership(r.def); ok {
			r.segExpr, r.segTags = expr, segments.ExprTags(expr)
		}
		r.version = readable // entries go to the latest readable version
	}
	e.mu.Lock()
	e.live = live
	e.mu.Unlock()
	return nil
}

func (e *Engine) journeys() map[string]*runnable {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.live
}

// Event is something a contact did, as the engine sees it.
type Event struct {
	ID       string // the event's id: entries and wait_for matches dedupe on it
	Kind     string // an On… kind
	Name     string // custom: its name; tag_*: the tag
	Contact  uint32
	Campaign string
	Text     string
	Props    map[string]string
	Time     time.Time
}

// FromEvent maps a herald.events event to a trigger (ok false: not one journeys use).
func FromEvent(ev events.Event) (Event, bool) {
	t := Event{ID: ev.ID, Contact: ev.ContactID, Campaign: ev.CampaignID, Time: ev.Time, Props: ev.Props()}
	switch ev.Kind {
	case events.Read:
		t.Kind = OnRead
	case events.Clicked:
		t.Kind = OnClicked
	case events.Converted:
		t.Kind = OnConverted
		if ev.OrderID != "" {
			if t.Props == nil {
				t.Props = map[string]string{}
			}
			t.Props["order_id"] = ev.OrderID
		}
	case events.OptedOut:
		t.Kind = OnOptedOut
	case events.OptedIn:
		t.Kind = OnConsentGranted
	case events.Replied:
		t.Kind = OnReplied
	case events.Custom:
		t.Kind, t.Name = OnCustom, ev.Name
	case events.TagAdded:
		t.Kind, t.Name = OnTagAdded, ev.Reason
	case events.TagRemoved:
		t.Kind, t.Name = OnTagRemoved, ev.Reason
	default:
		return t, false
	}
	return t, t.Contact != 0
}

// FromInbound maps an inbound message to a trigger.
func FromInbound(in events.Inbound) (Event, bool) {
	return Event{ID: "in:" + in.ID, Kind: OnInbound, Contact: in.ContactID, Text: in.Text, Time: in.Time}, in.ContactID != 0
}

// matches reports whether trigger t is what tr asks for.
func (tr *Trigger) matches(t Event, self string, entry bool) bool {
	switch tr.Event {
	case OnInbound, OnReplied:
		if t.Kind != OnInbound && t.Kind != OnReplied {
			return false
		}
		if len(tr.Keywords) == 0 {
			return true
		}
		text := " " + strings.ToLower(strings.Join(strings.FieldsFunc(t.Text, func(r rune) bool {
			return r == ' ' || r == ',' || r == '.' || r == '?' || r == '!' || r == '\n'
		}), " ")) + " "
		for _, ws := range tr.Keywords {
			for _, w := range ws {
				if strings.Contains(text, " "+w+" ") || (!isASCII(w) && strings.Contains(text, w)) {
					return true
				}
			}
		}
		return false
	case OnCustom:
		if t.Kind != OnCustom || t.Name != tr.Name {
			return false
		}
		for k, v := range tr.Where {
			if t.Props[k] != v {
				return false
			}
		}
		return true
	case OnTagAdded, OnTagRemoved:
		return t.Kind == tr.Event && t.Name == tr.Name
	case OnRead, OnClicked, OnConverted:
		if t.Kind != tr.Event {
			return false
		}
		if tr.Campaign != "" {
			return t.Campaign == tr.Campaign
		}
		// Reads and clicks of this journey's own messages do not enter it again (a
		// wait_for waits for exactly those).
		return !entry || !strings.HasPrefix(t.Campaign, CampaignPrefix(self))
	default:
		return t.Kind == tr.Event
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// exitReason is the journey-level exit a trigger causes ("" : none).
func exitReason(d *Definition, t Event) string {
	switch {
	case (t.Kind == OnInbound || t.Kind == OnReplied) && d.exits(ExitReplied):
		return ExitReplied
	case t.Kind == OnConverted && d.exits(ExitConverted):
		return ExitConverted
	case t.Kind == OnOptedOut && d.exits(ExitOptedOut):
		return ExitOptedOut
	}
	return ""
}

// CampaignPrefix is what the ids of a journey's campaigns start with.
func CampaignPrefix(id string) string { return "j." + id + "." }

// CampaignID names the journey campaign of one send step for one entry: the worker's
// claim on (campaign, contact) is then the claim on (journey, version, contact, step,
// entry).
func CampaignID(id string, version int, step string, entry int) string {
	return CampaignPrefix(id) + strconv.Itoa(version) + "." + step + "." + strconv.Itoa(entry)
}

// ParseCampaignID is CampaignID's inverse.
func ParseCampaignID(s string) (id string, version int, step string, entry int, ok bool) {
	f := strings.Split(s, ".")
	if len(f) != 5 || f[0] != "j" {
		return "", 0, "", 0, false
	}
	v, err := strconv.Atoi(f[2])
	n, err2 := strconv.Atoi(f[4])
	return f[1], v, f[3], n, err == nil && err2 == nil
}

// JourneyCampaign is the campaign label of a journey's own events.
func JourneyCampaign(id string) string { return "journey:" + id }

// Handle applies one trigger to every live journey: exits first, then wait_for
// matches, then entries.
func (e *Engine) Handle(ctx context.Context, t Event) error {
	if t.Time.IsZero() {
		t.Time = e.cfg.Now()
	}
	for id, r := range e.journeys() {
		if err := e.handleOne(ctx, id, r, t); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) handleOne(ctx context.Context, id string, r *runnable, t Event) error {
	if (t.Kind == OnTagAdded || t.Kind == OnTagRemoved) && r.watches(t.Name) {
		// The segment (or tag) the journey follows may have gained or lost the contact.
		if err := e.segmentChange(ctx, id, r, t); err != nil {
			return err
		}
	}
	// Segment- and tag-entered journeys enter on their segment's transitions only.
	entry := r.state == Active && r.segExpr == "" && r.def.Entry.matches(t, id, true)
	if !r.cares[t.Kind] {
		// Nothing a contact in the journey could do with it: at most an entry (which
		// checks itself that the contact is not in the journey already).
		if entry {
			return e.enter(ctx, id, r, t)
		}
		return nil
	}
	in, ok, err := e.Get(ctx, id, t.Contact)
	if err != nil {
		return err
	}
	if ok {
		d, err := e.definition(ctx, id, in.Version)
		if err != nil {
			return err
		}
		if reason := exitReason(d, t); reason != "" {
			return e.Exit(ctx, id, t.Contact, reason)
		}
		s := d.Step(in.Step)
		if in.Waiting && s != nil && s.Kind == KindWaitFor && s.For.matches(t, id, false) && r.state != Paused {
			nx := orNext(s.OnEvent, d.next(s))
			next := in
			next.Seq++
			next.Step, next.Waiting, next.Since = nx, false, e.cfg.Now()
			if len(t.Props) > 0 {
				next.Props = t.Props
			}
			if nx == "" {
				return e.finish(ctx, d, in, "completed")
			}
			committed, err := e.commit(ctx, in, next, e.cfg.Now().Add(e.cfg.Lease))
			if err != nil || !committed {
				return err
			}
			return e.run(ctx, d, next)
		}
		return nil
	}
	if !entry {
		return nil
	}
	return e.enter(ctx, id, r, t)
}

func (e *Engine) enter(ctx context.Context, id string, r *runnable, t Event) error {
	d := r.def
	key := t.ID
	if d.EntryKey != "" {
		if v := t.Props[d.EntryKey]; v != "" {
			key = "p:" + v
		}
	}
	now := e.cfg.Now()
	in := Instance{Journey: id, Contact: t.Contact, Version: r.version, Step: d.Steps[0].ID, Entered: now, Since: now, Props: t.Props}
	tail := strings.SplitN(in.encode(), ",", 4)[3] // step,r,entered,since[,props]
	ttl := 7 * 24 * time.Hour                      // how long a redelivered event stays recognised
	own := "0"
	if d.EntryKey != "" || d.Reentry == ReentryEveryTime {
		own = "1"
	}
	if d.EntryKey != "" {
		ttl = 365 * 24 * time.Hour // an order id enters once
	}
	n, err := enterScript.Run(ctx, e.cfg.Redis, []string{e.instKey(id, t.Contact), e.histKey(id, t.Contact), e.timersKey(id), e.entryKey(id, t.Contact, key)},
		t.Contact, strconv.Itoa(r.version)+",", ","+tail, now.UnixMilli(), now.Add(e.cfg.Lease).UnixMilli(),
		d.Reentry, d.ReentryIn.Milliseconds(), ttl.Milliseconds(), key, own).Int()
	if err != nil {
		return fmt.Errorf("enter journey %s: %w", id, err)
	}
	if n == 0 {
		return nil
	}
	in.Entry, in.Seq = n, 1
	e.m.entered.Inc()
	return e.run(ctx, d, in) // its first run says the contact entered
}

// Get returns a contact's instance in a journey.
func (e *Engine) Get(ctx context.Context, id string, contact uint32) (Instance, bool, error) {
	s, err := e.cfg.Redis.HGet(ctx, e.instKey(id, contact), strconv.FormatUint(uint64(contact), 10)).Result()
	if errors.Is(err, redis.Nil) {
		return Instance{}, false, nil
	}
	if err != nil {
		return Instance{}, false, fmt.Errorf("journey %s instance: %w", id, err)
	}
	in, ok := decodeInstance(id, contact, s)
	return in, ok, nil
}

// Exit removes a contact from a journey at once (its pending timer with it).
func (e *Engine) Exit(ctx context.Context, id string, contact uint32, reason string) error {
	cur, err := exitScript.Run(ctx, e.cfg.Redis, []string{e.instKey(id, contact), e.timersKey(id), exitsKey(e.cfg.Prefix, id, contact)}, contact).Text()
	if err != nil {
		return fmt.Errorf("exit journey %s: %w", id, err)
	}
	if cur == "" {
		return nil
	}
	in, ok := decodeInstance(id, contact, cur)
	if !ok {
		return nil
	}
	e.m.exits.WithLabelValues(reason).Inc()
	return e.cfg.Events.WriteMessages(ctx, e.event(in, events.JourneyExited, reason, strconv.Itoa(in.Entry), e.cfg.Now()))
}

func (e *Engine) event(in Instance, kind events.Kind, reason, disc string, at time.Time) kafka.Message {
	ev := events.New(kind, JourneyCampaign(in.Journey), in.Contact, at)
	ev.ID = events.ID(ev.CampaignID, in.Contact, kind, disc+"|"+reason)
	ev.Reason = reason
	ev.Variant = "v" + strconv.Itoa(in.Version)
	b, _ := ev.Marshal()
	return kafka.Message{Key: kafkax.ContactKey(in.Contact), Value: b}
}

func (e *Engine) commit(ctx context.Context, from, to Instance, due time.Time) (bool, error) {
	val, dueS, mem := "", "", ""
	if to.Step != "" {
		val = to.encode()
		dueS, mem = strconv.FormatInt(due.UnixMilli(), 10), member(to)
	}
	n, err := commitScript.Run(ctx, e.cfg.Redis, []string{e.instKey(from.Journey, from.Contact), e.timersKey(from.Journey)},
		from.Contact, from.Entry, from.Seq, val, dueS, mem).Int()
	if err != nil {
		return false, fmt.Errorf("journey %s: commit: %w", from.Journey, err)
	}
	return n == 1, nil
}

// finish ends an instance (an exit step, a holdout, the last step done).
func (e *Engine) finish(ctx context.Context, d *Definition, in Instance, reason string) error {
	ev := e.event(in, events.JourneyExited, reason, strconv.Itoa(in.Entry), e.cfg.Now())
	if err := e.cfg.Events.WriteMessages(ctx, ev); err != nil {
		return fmt.Errorf("journey event: %w", err)
	}
	ok, err := e.commit(ctx, in, Instance{}, time.Time{})
	if ok {
		e.m.exits.WithLabelValues(reason).Inc()
	}
	return err
}

// run executes in's steps from in.Step (not waiting) until a wait, an exit or the end,
// and commits the state reached. Every effect is idempotent, so a run repeated after a
// crash (the state's timer fires again) does each at most once.
func (e *Engine) run(ctx context.Context, d *Definition, in Instance) error {
	return e.runFrom(ctx, d, in, in)
}

// runFrom runs from start's step; in is the state stored, which the run's commit
// replaces (a wait that ends runs its next step without storing the move first).
func (e *Engine) runFrom(ctx context.Context, d *Definition, in, start Instance) error {
	now := e.cfg.Now()
	cur := start
	var jobs, evs []kafka.Message
	flush := func() error {
		// The two topics are written at once (each write waits for its acks).
		var jobErr error
		var wg sync.WaitGroup
		if len(jobs) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.cfg.Outbound.WriteMessages(ctx, jobs...); err != nil {
					jobErr = fmt.Errorf("journey %s: queue sends: %w", in.Journey, err)
				}
			}()
		}
		var evErr error
		if len(evs) > 0 {
			if err := e.cfg.Events.WriteMessages(ctx, evs...); err != nil {
				evErr = fmt.Errorf("journey %s: events: %w", in.Journey, err)
			}
		}
		wg.Wait()
		if err := errors.Join(jobErr, evErr); err != nil {
			return err
		}
		jobs, evs = nil, nil
		return nil
	}
	// end finishes the instance: its exit event goes with the run's other messages.
	end := func(reason string) error {
		evs = append(evs, e.event(in, events.JourneyExited, reason, strconv.Itoa(in.Entry), e.cfg.Now()))
		if err := flush(); err != nil {
			return err
		}
		ok, err := e.commit(ctx, in, Instance{}, time.Time{})
		if ok {
			e.m.exits.WithLabelValues(reason).Inc()
		}
		return err
	}
	var contact *segments.Contact
	profile := func() (*segments.Contact, error) {
		if contact == nil {
			cs, err := e.cfg.Contacts.ProfileFields(ctx, []uint32{in.Contact})
			if err != nil {
				return nil, err
			}
			c := segments.Contact{}
			if len(cs) > 0 {
				c = cs[0]
			}
			contact = &c
		}
		return contact, nil
	}
	if in.Seq == 1 && !in.Waiting {
		// A fresh entry (run again after a crash, the event has the same id).
		evs = append(evs, e.event(in, events.JourneyEntered, d.Entry.Event, strconv.Itoa(in.Entry), in.Entered))
	}
	for hops := 0; ; hops++ {
		if hops > len(d.Steps)+1 {
			return fmt.Errorf("journey %s: steps loop without a wait", in.Journey) // validation forbids it
		}
		s := d.Step(cur.Step)
		if s == nil {
			return end("completed")
		}
		disc := strconv.Itoa(in.Entry) + "|" + s.ID
		evs = append(evs, e.event(cur, events.JourneyStep, s.ID, disc, now))
		e.m.steps.WithLabelValues(s.Kind).Inc()
		next := d.next(s)
		switch s.Kind {
		case KindSend:
			if len(d.Senders) == 0 {
				return fmt.Errorf("journey %s: no sender", in.Journey)
			}
			cid := CampaignID(in.Journey, in.Version, s.ID, in.Entry)
			ch := s.Channel
			if ch == "" {
				ch = d.Channel
			}
			cp := dispatcher.Campaign{ID: cid, Name: "journey " + in.Journey + " step " + s.ID, Segment: "journey:" + in.Journey,
				Template: s.Template, Senders: d.Senders, Channel: ch, Purpose: d.Purpose, CapCategory: d.CapCategory}
			if err := e.ensure(ctx, cp); err != nil {
				return err
			}
			sender := cp.SenderFor(in.Contact)
			jobs = append(jobs, kafka.Message{Key: []byte(sender), Value: dispatcher.Job{Campaign: cid, Contact: in.Contact, Sender: sender}.Marshal()})
			q := events.New(events.Queued, cid, in.Contact, now)
			q.SenderID, q.Channel, q.Template = sender, ch, s.Template
			b, _ := q.Marshal()
			evs = append(evs, kafka.Message{Key: kafkax.ContactKey(in.Contact), Value: b})
		case KindTag, KindUntag:
			bm := roaring.New()
			bm.Add(in.Contact)
			if _, err := e.cfg.Segments.TagContacts(ctx, s.Tag, bm, s.Kind == KindTag); err != nil {
				return fmt.Errorf("journey %s step %s: %w", in.Journey, s.ID, err)
			}
		case KindBranch:
			yes := false
			if s.Segment != "" {
				bm, err := e.seg.evaluate(ctx, e.cfg.Segments, s.Segment)
				if err != nil {
					return fmt.Errorf("journey %s step %s: %w", in.Journey, s.ID, err)
				}
				yes = bm.Contains(in.Contact)
			} else {
				yes = cur.Props[s.Property] == s.Equals
			}
			if yes {
				next = s.Then
			} else {
				next = orNext(s.Else, next)
			}
		case KindSplit:
			h := fnv.New32a()
			fmt.Fprintf(h, "%s|%d|%d|%s", in.Journey, in.Contact, in.Entry, s.ID)
			roll, acc := int(h.Sum32()%100), 0
			for _, a := range s.Split {
				acc += a.Percent
				if roll < acc {
					if a.Holdout {
						return end("holdout")
					}
					next = a.Next
					break
				}
			}
		case KindExit:
			return end(s.Reason)
		case KindWait, KindWaitFor:
			var due time.Time
			if s.Kind == KindWaitFor {
				due = now.Add(s.Timeout)
			} else {
				c, err := profile()
				if err != nil {
					return err
				}
				due = e.waitUntil(s.Wait, *c, now)
			}
			if err := flush(); err != nil {
				return err
			}
			to := cur
			to.Seq = in.Seq + 1
			to.Waiting, to.Since = true, now
			_, err := e.commit(ctx, in, to, due)
			return err
		}
		if next == "" {
			return end("completed")
		}
		cur.Step = next
	}
}

func (e *Engine) ensure(ctx context.Context, cp dispatcher.Campaign) error {
	if _, ok := e.defs.Load("cmp\x00" + cp.ID); ok {
		return nil
	}
	if err := e.cfg.Campaigns.EnsureRunning(ctx, cp); err != nil {
		return fmt.Errorf("journey campaign %s: %w", cp.ID, err)
	}
	e.defs.Store("cmp\x00"+cp.ID, true)
	return nil
}

// waitUntil is when a wait step that starts at now ends for contact c.
func (e *Engine) waitUntil(w *Wait, c segments.Contact, now time.Time) time.Time {
	switch {
	case w.For > 0:
		return now.Add(w.For)
	case w.At != "":
		loc := e.cfg.Zone
		if c.TimeZone != "" {
			if l, err := time.LoadLocation(c.TimeZone); err == nil {
				loc = l
			}
		}
		local := now.In(loc)
		h, m, _ := parseHHMM(w.At)
		for i := 0; i < 8; i++ {
			day := local.AddDate(0, 0, i)
			at := time.Date(day.Year(), day.Month(), day.Day(), h, m, 0, 0, loc)
			if !at.After(now) {
				continue
			}
			if len(w.Weekdays) == 0 {
				return at
			}
			for _, wd := range w.Weekdays {
				if at.Weekday() == wd {
					return at
				}
			}
		}
		return now.Add(7 * 24 * time.Hour)
	default:
		v := c.Attrs[w.Attribute]
		for _, layout := range []string{time.RFC3339, "2006-01-02 15:04", "2006-01-02"} {
			if t, err := time.ParseInLocation(layout, v, e.cfg.Zone); err == nil {
				return t.Add(w.Offset)
			}
		}
		return now // no such date: nothing to wait for
	}
}

// fire handles one due timer: a wait ends, a wait_for times out, or a run whose runner
// died (its lease ran out) is run again. cur is the instance's stored value ("" : none).
func (e *Engine) fire(ctx context.Context, id string, r *runnable, mem, cur string, due time.Time) error {
	cs, rest, _ := strings.Cut(mem, "|")
	c, err := strconv.ParseUint(cs, 10, 32)
	if err != nil {
		return e.cfg.Redis.ZRem(ctx, e.timersKey(id), mem).Err()
	}
	in, ok := decodeInstance(id, uint32(c), cur)
	if cur == "" || !ok || strconv.Itoa(in.Entry)+"|"+strconv.Itoa(in.Seq) != rest {
		return e.cfg.Redis.ZRem(ctx, e.timersKey(id), mem).Err() // stale: the instance moved on
	}
	if r == nil || r.state == Archived {
		return e.Exit(ctx, id, in.Contact, "archived")
	}
	if r.state == Paused {
		// Claimed by an engine that had not heard of the pause yet: park it again at
		// its due time (Tick leaves a paused journey's timers alone; resume fires them).
		return e.cfg.Redis.ZAddXX(ctx, e.timersKey(id), redis.Z{Score: float64(due.UnixMilli()), Member: mem}).Err()
	}
	if in.Waiting {
		e.m.lateness.Observe(e.cfg.Now().Sub(due).Seconds())
	}
	d, err := e.definition(ctx, id, in.Version)
	if err != nil {
		return err
	}
	if !in.Waiting {
		return e.run(ctx, d, in)
	}
	s := d.Step(in.Step)
	if s == nil {
		return e.finish(ctx, d, in, "completed")
	}
	nx := d.next(s)
	if s.Kind == KindWaitFor {
		nx = orNext(s.OnTimeout, nx)
	}
	if nx == "" {
		return e.finish(ctx, d, in, "completed")
	}
	next := in
	next.Step, next.Waiting, next.Since = nx, false, e.cfg.Now()
	if s.Kind == KindWait {
		// Nothing else moves a plain wait on: run its next steps at once.
		return e.runFrom(ctx, d, in, next)
	}
	// A wait_for's event may arrive now: whichever moves the instance first goes on.
	next.Seq++
	ok, err = e.commit(ctx, in, next, e.cfg.Now().Add(e.cfg.Lease))
	if err != nil || !ok {
		return err
	}
	return e.run(ctx, d, next)
}

// Tick claims and fires the timers due now in every journey; it answers how many fired.
func (e *Engine) Tick(ctx context.Context) (int, error) {
	live := e.journeys()
	n := 0
	for id, r := range live {
		if r.state == Paused {
			// A paused journey's due timers stay parked where they are, unleased, until
			// resume: the first Tick after it fires them.
			continue
		}
		now := e.cfg.Now()
		res, err := claimScript.Run(ctx, e.cfg.Redis, []string{e.timersKey(id)}, now.UnixMilli(), now.Add(e.cfg.Lease).UnixMilli(), e.cfg.Batch,
			e.cfg.Prefix+"{jrn:"+id+"}:i:").StringSlice()
		if err != nil {
			return n, fmt.Errorf("journey %s timers: %w", id, err)
		}
		if len(res) == 0 {
			continue
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(res)/3)
		sem := make(chan struct{}, 64)
		for i := 0; i+2 < len(res); i += 3 {
			ms, _ := strconv.ParseFloat(res[i+1], 64)
			mem, due, cur := res[i], time.UnixMilli(int64(ms)), res[i+2]
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := e.fire(ctx, id, r, mem, cur, due); err != nil {
					errs <- err
				}
			}()
			n++
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return n, err
		}
	}
	return n, nil
}

// Run refreshes definitions, fires timers and consumes triggers until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Refresh(ctx); err != nil {
		return err
	}
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- e.runTimers(ctx)
	}()
	if len(e.cfg.Brokers) > 0 {
		for _, topic := range []string{e.cfg.Topics.Events, e.cfg.Topics.Inbound} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errc <- e.consume(ctx, topic)
			}()
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

func (e *Engine) runTimers(ctx context.Context) error {
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	last, lastSeg := time.Now(), time.Time{}
	for {
		if time.Since(last) > time.Second {
			if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("reload journeys", "err", err)
			}
			last = time.Now()
		}
		if time.Since(lastSeg) > e.cfg.SegmentEvery {
			if err := e.PollSegments(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("segment entries", "err", err)
			}
			lastSeg = time.Now()
		} else if err := e.pollSegments(ctx, true); err != nil && ctx.Err() == nil {
			e.log.Warn("segment entries (first look)", "err", err)
		}
		n, err := e.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("journey timers", "err", err)
		}
		if n >= e.cfg.Batch {
			continue // more are due
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// consume reads triggers from one topic in batches: a batch's triggers are handled at
// once, one goroutine per contact (a contact's triggers in order), and its offsets are
// committed once all are handled.
func (e *Engine) consume(ctx context.Context, topic string) error {
	// On herald.events a fetch returns at 16 KiB or after about 750 ms: during a campaign
	// every status is a record, and a fetch per record for each partition cost more CPU
	// than the rest of the engine (bench e2e: 0.15 ms per message, a sixth of the
	// pipeline), so a lone tag or custom event waits that long at most. (Shorter waits
	// leave a busy broker too little time to answer before kafka-go drops the
	// connection; see kafkax.ReaderOptions.) Replies, on herald.inbound, are few and end
	// journeys: their fetches return at once.
	inbound := topic == e.cfg.Topics.Inbound
	o := kafkax.ReaderOptions{Logger: e.log, MinBytes: 16 << 10}
	if inbound {
		o.MinBytes = 1
	}
	r := kafkax.NewGroupReader(e.cfg.Brokers, e.cfg.Group, topic, o)
	defer r.Close()
	msgs := make(chan kafka.Message, 1024)
	go func() {
		defer close(msgs)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// The broker is away (an outage, a restart): the reader reconnects by
				// itself; wait for it rather than ending the engine.
				e.log.Warn("fetch failed; retrying", "topic", topic, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var batch []kafka.Message
		m, ok := <-msgs
		if !ok {
			return nil // ctx ended
		}
		batch = append(batch, m)
	fill:
		for len(batch) < 2000 {
			select {
			case m, ok := <-msgs:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		byContact := map[uint32][]Event{}
		var order []uint32
		// With no journey live there is nothing to trigger: the batch is committed
		// undecoded (during a campaign that is every status).
		decode := batch
		if len(e.journeys()) == 0 {
			decode = nil
		}
		for _, m := range decode {
			var t Event
			ok := false
			if inbound {
				var in events.Inbound
				if json.Unmarshal(m.Value, &in) == nil {
					t, ok = FromInbound(in)
				}
			} else if ev, err := events.Unmarshal(m.Value); err == nil {
				t, ok = FromEvent(ev)
			}
			if !ok {
				continue
			}
			if _, seen := byContact[t.Contact]; !seen {
				order = append(order, t.Contact)
			}
			byContact[t.Contact] = append(byContact[t.Contact], t)
		}
		var wg sync.WaitGroup
		// Each trigger waits on a few Kafka acks and Redis scripts: many at once keep the
		// writers' batches full.
		sem := make(chan struct{}, 512)
		for _, c := range order {
			ts := byContact[c]
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				for _, t := range ts {
					e.handleRetrying(ctx, t)
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
		if err := r.CommitMessages(ctx, batch...); err != nil && ctx.Err() == nil {
			return fmt.Errorf("journeys: commit %s: %w", topic, err)
		}
	}
}

// handleRetrying handles t, retrying while Redis or Kafka fail, until ctx ends.
func (e *Engine) handleRetrying(ctx context.Context, t Event) {
	for attempt := 0; ; attempt++ {
		err := e.Handle(ctx, t)
		if err == nil || ctx.Err() != nil {
			return
		}
		e.log.Warn("journey trigger failed; retrying", "err", err, "attempt", attempt+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(min(attempt+1, 20)) * 100 * time.Millisecond):
		}
	}
}

// segCache keeps each branch expression's members for a second.
type segCache struct {
	mu sync.Mutex
	m  map[string]segEntry
}

type segEntry struct {
	bm *roaring.Bitmap
	at time.Time
}

func (c *segCache) evaluate(ctx context.Context, s Segments, expr string) (*roaring.Bitmap, error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]segEntry{}
	}
	if en, ok := c.m[expr]; ok && time.Since(en.at) < time.Second {
		c.mu.Unlock()
		return en.bm, nil
	}
	c.mu.Unlock()
	bm, err := s.Evaluate(ctx, expr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[expr] = segEntry{bm, time.Now()}
	c.mu.Unlock()
	return bm, nil
}
