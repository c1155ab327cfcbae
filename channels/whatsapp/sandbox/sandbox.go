// Package sandbox is a local WhatsApp Business Cloud API that behaves like Meta's: the
// send endpoint with its bearer token, JSON shapes and Graph error codes (per-number
// throughput 130429, pair rate 131056, 24h window 131047, unknown templates 132001,
// parameter mismatches 132000), template management, and signed status webhooks (sent,
// delivered, read, failed) with realistic delays, batching, interleaving and duplicates.
// It records what it accepted and what it decided, so tests, `herald dev`/`demo` and
// benchmarks can compare Herald's figures with the truth.
//
// It owns only this simulation; the shapes come from channels/whatsapp/graph. It does not
// simulate clicks or replies by itself: callers drive inbound messages with Inbound or
// POST /_sandbox/inbound.
//
// HTTP API (Handler):
//
//	POST /{version}/{phone-number-id}/messages        send (Graph shapes)
//	POST /{version}/{waba-id}/message_templates       register and auto-approve a template
//	GET  /{version}/{waba-id}/message_templates       list templates ({"data":[...]})
//	GET  /_sandbox/records                            accepted messages (?offset=&limit=)
//	GET  /_sandbox/stats                              counters
//	POST /_sandbox/inbound                            {"phone_number_id","from","text"}: a user writes to us
//	POST /_sandbox/outage                             {"mode":"refuse"|"stall","at","for","code","stall_max"}: plan an outage
//	GET  /_sandbox/outage, DELETE /_sandbox/outage    the outage planned (and whether it is active); end it
//
// Choices where Meta's behaviour is asynchronous or loose: free-form text outside the
// 24h window is refused synchronously (HTTP 400, code 131047) instead of accepted and then
// failed; "type" defaults to "text" as in the Cloud API; only text and template messages
// are supported (others get 131051); every authenticated send request counts against the
// number's throughput, the pair rate only against accepted messages; inbound messages do
// not consume throughput. Status delays run on the real clock (scaled by DelayScale),
// while timestamps, windows and limits use Config.Now.
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

// ApprovedTemplate is a template the sandbox accepts sends for.
type ApprovedTemplate struct {
	Name             string   `json:"name"`
	Language         string   `json:"language"`              // e.g. en_US
	Category         string   `json:"category"`              // MARKETING, UTILITY, AUTHENTICATION (default MARKETING)
	BodyParams       []string `json:"body_params,omitempty"` // named params expected in the body, or nil
	PositionalParams int      `json:"positional_params,omitempty"`
	// Body is the approved body text ("Hi {{first_name}}"), optional. When set, records
	// carry the rendered body, and AddTemplate derives the params from it if none are given.
	Body string `json:"body,omitempty"`
}

// DefaultWebhookConcurrency is how many webhook POSTs the sandbox has in flight at once
// unless told otherwise: Meta delivers a busy number's webhooks over dozens of connections.
const DefaultWebhookConcurrency = 32

// Config configures a Sandbox. Zero values take the defaults noted.
type Config struct {
	Token             string        // accepted bearer token; "" accepts any request
	AppSecret         string        // signs webhook POSTs (X-Hub-Signature-256)
	WebhookURL        string        // where webhooks go; "" → none sent (records and stats still kept)
	WABAID            string        // entry id in webhooks (default "100000000000001")
	Throughput        float64       // msg/s per phone-number id (default 80), burst of one second's worth; above → 130429
	PairInterval      time.Duration // min gap per (number, recipient) (default 6s; <0 disables); below → 131056
	UndeliverableRate float64       // share of recipients not on WhatsApp (see Undeliverable): accepted, then failed with 131026
	// MarketingStopRate is the share of recipients who stopped marketing messages from the
	// business (see MarketingStopped): a MARKETING template to them is accepted, then
	// failed with 131050, as Meta does.
	MarketingStopRate float64
	// PromotionsStopRate is the share of recipients (see StopsPromotions) who tap "Stop
	// promotions" when a MARKETING template reaches them: Meta posts a user_preferences
	// webhook (value stop), and later marketing templates to them fail with 131050 until
	// they resume (Preference).
	PromotionsStopRate float64
	ReadRate           float64 // share of delivered messages that get read (see WillRead)
	DelayScale         float64 // scales realistic status delays (default 1; 0.05 for demos; <0: no delay)
	DuplicateRate      float64 // share of webhook statuses delivered twice
	ReorderRate        float64 // share of read messages whose "read" precedes "delivered" in one POST (default 0.05; <0 disables)
	// StatusesPerPost is the most statuses one webhook POST carries (default 1, as Meta
	// mostly sends: sent, delivered and read of a message arrive as separate POSTs);
	// more packs due statuses of one phone number together, as Meta sometimes does.
	StatusesPerPost int
	Latency         time.Duration // added to every send request
	// Fault, when set, is asked before each send request: a non-zero status answers it
	// with that HTTP status and, if code is not 0, a Graph error with that code (e.g. 400
	// and 130429, or 503 and 0 for a bare server error). Tests inject bursts with it.
	Fault func() (status, code int)
	// Outage, when its Mode is set, takes the send endpoint down (see OutageMode) from
	// Outage.At after New for Outage.For; SetOutage or POST /_sandbox/outage plan one at
	// run time. An invalid plan is logged and ignored (check it with SetOutage first).
	Outage    OutagePlan
	Templates []ApprovedTemplate
	Now       func() time.Time // default time.Now
	Seed      int64            // seeds delays, duplicates and reordering

	WebhookConcurrency int           // concurrent webhook posters, one connection each (default 32, like Meta's)
	RetryBase          time.Duration // first webhook retry delay after a failed POST (default 1s), doubling
	RetryMax           time.Duration // longest webhook retry delay (default 1 min)
	WebhookClient      *http.Client  // default: a keep-alive client with a 10 s timeout
}

// Record is a message the sandbox accepted, and its fate.
type Record struct {
	MessageID     string    `json:"message_id"`
	PhoneNumberID string    `json:"phone_number_id"`
	To            string    `json:"to"`    // as sent
	WaID          string    `json:"wa_id"` // digits
	Type          string    `json:"type"`  // text, template
	TemplateName  string    `json:"template_name,omitempty"`
	Language      string    `json:"language,omitempty"`
	Params        []string  `json:"params,omitempty"` // body parameter values, in the template's order
	Body          string    `json:"body,omitempty"`   // text body, or the rendered template body when known
	CallbackData  string    `json:"callback_data,omitempty"`
	AcceptedAt    time.Time `json:"accepted_at"`
	Final         string    `json:"final"` // read, delivered or failed: the last status the sandbox decided
	ErrorCode     int       `json:"error_code,omitempty"`
}

// Stats are the sandbox's counters.
type Stats struct {
	Requests       int64            `json:"requests"` // send requests
	Accepted       int64            `json:"accepted"`
	Rejected       map[int]int64    `json:"rejected"` // by Graph error code
	Inbound        int64            `json:"inbound"`
	Statuses       map[string]int64 `json:"statuses"`        // emitted, unique per message (duplicates excluded)
	Duplicates     int64            `json:"duplicates"`      // duplicate statuses emitted
	WebhookPosts   int64            `json:"webhook_posts"`   // POSTs made, failed or not
	WebhookFailed  int64            `json:"webhook_failed"`  // POSTs that failed (error or non-2xx)
	WebhookRetried int64            `json:"webhook_retried"` // POSTs carrying items that had failed before
	Pending        int64            `json:"pending"`         // statuses and inbound messages not yet delivered
	Stalled        int64            `json:"stalled"`         // send requests held by a stalling outage (counted in rejected too)
}

// Sandbox is a local Cloud API. Serve Handler, and run Run to deliver webhooks.
type Sandbox struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	mux   *http.ServeMux
	hc    *http.Client
	wire  bool   // posters use a wirePoster where the URL allows (no WebhookClient given)
	token string // "Bearer " + Token

	idPrefix [8]byte
	seq      atomic.Uint64

	tmplMu    sync.RWMutex
	templates map[string]*tmplEntry // name + "\x00" + language
	tmplSeq   atomic.Uint64

	limMu    sync.RWMutex
	limiters map[string]*rate.Limiter

	pairs        [pairShards]pairShard
	pairSweepMin int // entries per shard before the first sweep

	winMu   sync.RWMutex
	windows map[string]time.Time // phone-number id + "\x00" + wa id → last inbound
	stopMu  sync.Mutex
	stopped map[string]bool // wa ids who stopped marketing (Preference, PromotionsStopRate)

	recMu   sync.Mutex
	records []Record

	requests, accepted, inbound, duplicates atomic.Int64
	posts, postsFailed, postsRetried        atomic.Int64
	statusCount                             [len(statusNames)]atomic.Int64
	rejMu                                   sync.Mutex
	rejected                                map[int]int64

	outage  atomic.Pointer[Outage] // nil: none planned
	stalled atomic.Int64

	bufs    sync.Pool // *bytes.Buffer for request bodies
	q       queue
	running atomic.Bool
}

var statusNames = [...]string{graph.StatusSent, graph.StatusDelivered, graph.StatusRead, graph.StatusFailed}

type tmplEntry struct {
	t  ApprovedTemplate
	id string
}

// New returns a sandbox for cfg. log may be nil.
func New(cfg Config, log *slog.Logger) *Sandbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.WABAID == "" {
		cfg.WABAID = "100000000000001"
	}
	if cfg.Throughput <= 0 {
		cfg.Throughput = 80
	}
	if cfg.PairInterval == 0 {
		cfg.PairInterval = 6 * time.Second
	}
	if cfg.DelayScale == 0 {
		cfg.DelayScale = 1
	}
	if cfg.ReorderRate == 0 {
		cfg.ReorderRate = 0.05
	}
	if cfg.StatusesPerPost <= 0 {
		cfg.StatusesPerPost = 1
	}
	if cfg.WebhookConcurrency <= 0 {
		cfg.WebhookConcurrency = DefaultWebhookConcurrency
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Minute
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = cfg.RetryBase
	}
	wire := cfg.WebhookClient == nil
	if cfg.WebhookClient == nil {
		cfg.WebhookClient = &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        64,
				MaxIdleConnsPerHost: cfg.WebhookConcurrency * 2,
				IdleConnTimeout:     90 * time.Second,
			},
		}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Sandbox{
		cfg:       cfg,
		log:       log.With("component", "sandbox"),
		now:       now,
		hc:        cfg.WebhookClient,
		wire:      wire,
		templates: make(map[string]*tmplEntry, len(cfg.Templates)+16),
		limiters:  make(map[string]*rate.Limiter, 16),
		windows:   make(map[string]time.Time, 1024),
		stopped:   make(map[string]bool),
		records:   make([]Record, 0, 4096),
		rejected:  make(map[int]int64, 16),
	}
	if cfg.Token != "" {
		s.token = "Bearer " + cfg.Token
	}
	_, _ = rand.Read(s.idPrefix[:])
	s.pairSweepMin = 4096
	for i := range s.pairs {
		s.pairs[i].last = make(map[string]time.Time, 1024)
		s.pairs[i].sweepAt = s.pairSweepMin
	}
	s.bufs.New = func() any { return bytes.NewBuffer(make([]byte, 0, 1024)) }
	s.q.init()
	for _, t := range cfg.Templates {
		s.AddTemplate(t)
	}
	if cfg.Outage.Mode != "" {
		if p, err := cfg.Outage.check(); err != nil {
			s.log.Error("outage plan ignored", "err", err)
		} else {
			s.outage.Store(p.window(now()))
		}
	}
	s.routes()
	return s
}

// Handler returns the HTTP API.
func (s *Sandbox) Handler() http.Handler { return s.mux }

// AddTemplate registers (or replaces) an approved template. Without BodyParams and
// PositionalParams, the params are derived from Body.
func (s *Sandbox) AddTemplate(t ApprovedTemplate) {
	t.Category = strings.ToUpper(t.Category)
	if t.Category == "" {
		t.Category = "MARKETING"
	}
	if t.Body != "" && t.BodyParams == nil && t.PositionalParams == 0 {
		named, positional, err := placeholders(t.Body)
		if err != nil {
			s.log.Warn("template body has invalid placeholders; expecting no parameters", "template", t.Name, "err", err)
		}
		t.BodyParams, t.PositionalParams = named, positional
	}
	e := &tmplEntry{t: t, id: strconv.FormatUint(594000000000000+s.tmplSeq.Add(1), 10)}
	s.tmplMu.Lock()
	s.templates[t.Name+"\x00"+t.Language] = e
	s.tmplMu.Unlock()
}

func (s *Sandbox) template(name, lang string) (*tmplEntry, bool) {
	s.tmplMu.RLock()
	e, ok := s.templates[name+"\x00"+lang]
	s.tmplMu.RUnlock()
	return e, ok
}

// Inbound simulates a user writing text to phoneNumberID from the number from: it opens
// (or resets) that user's 24h window for that number and queues an inbound "messages"
// webhook, delivered by Run.
func (s *Sandbox) Inbound(ctx context.Context, phoneNumberID, from, text string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sandbox inbound: %w", err)
	}
	digits, ok := waID(from)
	if !ok {
		return fmt.Errorf("sandbox inbound: from %q: want 8-15 digits with an optional leading '+'", from)
	}
	if phoneNumberID == "" {
		return errors.New("sandbox inbound: phone_number_id is required")
	}
	if text == "" {
		return errors.New("sandbox inbound: text is required")
	}
	now := s.now()
	s.winMu.Lock()
	s.windows[phoneNumberID+"\x00"+digits] = now
	s.winMu.Unlock()
	s.inbound.Add(1)

	ev := &event{
		pnid: phoneNumberID,
		in: &inboundItem{
			contact: graph.WebhookContact{WaID: digits},
			msg: graph.InboundMessage{
				From:      digits,
				ID:        s.newID(),
				Timestamp: strconv.FormatInt(now.Unix(), 10),
				Type:      "text",
				Text:      &graph.InboundText{Body: text},
			},
		},
	}
	ev.in.contact.Profile.Name = "Sandbox User " + digits[len(digits)-4:]
	s.q.push(time.Now(), ev)
	return nil
}

func (s *Sandbox) windowOpen(pnid, digits string, now time.Time) bool {
	s.winMu.RLock()
	last, ok := s.windows[pnid+"\x00"+digits]
	s.winMu.RUnlock()
	return ok && now.Sub(last) < 24*time.Hour
}

// Records returns a copy of what the sandbox accepted, in order.
func (s *Sandbox) Records() []Record {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return append([]Record(nil), s.records...)
}

func (s *Sandbox) recordsPage(offset, limit int) []Record {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	offset = min(max(offset, 0), len(s.records))
	end := len(s.records)
	if limit > 0 && offset+limit < end {
		end = offset + limit
	}
	return append([]Record(nil), s.records[offset:end]...)
}

// Stats returns the counters.
func (s *Sandbox) Stats() Stats {
	st := Stats{
		Requests:       s.requests.Load(),
		Accepted:       s.accepted.Load(),
		Inbound:        s.inbound.Load(),
		Duplicates:     s.duplicates.Load(),
		WebhookPosts:   s.posts.Load(),
		WebhookFailed:  s.postsFailed.Load(),
		WebhookRetried: s.postsRetried.Load(),
		Pending:        s.q.pendingCount(),
		Stalled:        s.stalled.Load(),
		Rejected:       map[int]int64{},
		Statuses:       make(map[string]int64, len(statusNames)),
	}
	s.rejMu.Lock()
	for k, v := range s.rejected {
		st.Rejected[k] = v
	}
	s.rejMu.Unlock()
	for i, name := range statusNames {
		st.Statuses[name] = s.statusCount[i].Load()
	}
	return st
}

// newID returns a unique wamid.
func (s *Sandbox) newID() string { return s.idFor(s.seq.Add(1)) }

// idFor returns the wamid of sequence number seq: unique within this sandbox, and
// across sandboxes thanks to a random prefix.
func (s *Sandbox) idFor(seq uint64) string {
	var b [16]byte
	copy(b[:8], s.idPrefix[:])
	binary.BigEndian.PutUint64(b[8:], seq)
	return "wamid." + base64.RawURLEncoding.EncodeToString(b[:])
}

// displayNumber invents a stable display number for a phone-number id.
func displayNumber(pnid string) string {
	d := fmt.Sprintf("%07d", hashString('d', pnid)%10000000)
	return "1555" + d
}

// waID returns the digits of a recipient: digits with an optional leading '+', 8-15 digits.
func waID(to string) (string, bool) {
	d := strings.TrimPrefix(to, "+")
	if len(d) < 8 || len(d) > 15 {
		return "", false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return "", false
		}
	}
	return d, true
}

// Undeliverable reports whether the sandbox treats recipient to as not on WhatsApp under
// rate: a deterministic function of its digits, so tests can predict it.
func Undeliverable(to string, rate float64) bool {
	d, _ := waID(to)
	return rate > 0 && unit(hashString('u', d)) < rate
}

// MarketingStopped reports whether the sandbox treats recipient to as having stopped
// marketing messages under rate: a deterministic function of its digits.
func MarketingStopped(to string, rate float64) bool {
	d, _ := waID(to)
	return rate > 0 && unit(hashString('m', d)) < rate
}

// StopsPromotions reports whether recipient to taps "Stop promotions" when a marketing
// template reaches it under rate: a deterministic function of its digits.
func StopsPromotions(to string, rate float64) bool {
	d, _ := waID(to)
	return rate > 0 && unit(hashString('p', d)) < rate
}

// marketingStopped reports whether the user with wa id digits stopped the business's
// marketing: one of MarketingStopRate's, or by a Preference not resumed since.
func (s *Sandbox) marketingStopped(digits string) bool {
	if MarketingStopped(digits, s.cfg.MarketingStopRate) {
		return true
	}
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	return s.stopped[digits]
}

// Preference simulates the user with number from tapping "Stop promotions" (value
// "stop") or resuming them ("resume") in a chat with phoneNumberID: marketing templates
// to them fail with 131050 from now on (or again go out), and a user_preferences webhook
// is queued, delivered by Run.
func (s *Sandbox) Preference(ctx context.Context, phoneNumberID, from, value string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sandbox preference: %w", err)
	}
	digits, ok := waID(from)
	if !ok {
		return fmt.Errorf("sandbox preference: from %q: want 8-15 digits with an optional leading '+'", from)
	}
	if value != "stop" && value != "resume" {
		return fmt.Errorf("sandbox preference: value %q: want stop or resume", value)
	}
	if phoneNumberID == "" {
		return errors.New("sandbox preference: phone_number_id is required")
	}
	s.q.push(time.Now(), s.preferenceEvent(phoneNumberID, digits, value, s.now()))
	return nil
}

// preferenceEvent records a stop or resume and returns its webhook.
func (s *Sandbox) preferenceEvent(phoneNumberID, digits, value string, at time.Time) *event {
	s.stopMu.Lock()
	if value == "stop" {
		s.stopped[digits] = true
	} else {
		delete(s.stopped, digits)
	}
	s.stopMu.Unlock()
	ev := &event{pnid: phoneNumberID, pref: &preferenceItem{
		contact: graph.WebhookContact{WaID: digits},
		pref: graph.UserPreference{WaID: digits, Detail: "User requested to " + value + " marketing messages",
			Category: "marketing_messages", Value: value, Timestamp: at.Unix()},
	}}
	ev.pref.contact.Profile.Name = "Sandbox User " + digits[len(digits)-4:]
	return ev
}

// WillRead reports whether a delivered message to recipient to gets read under rate:
// a deterministic function of its digits.
func WillRead(to string, rate float64) bool {
	d, _ := waID(to)
	return rate > 0 && unit(hashString('r', d)) < rate
}

// limiter returns the throughput bucket of a phone number.
func (s *Sandbox) limiter(pnid string) *rate.Limiter {
	s.limMu.RLock()
	l := s.limiters[pnid]
	s.limMu.RUnlock()
	if l != nil {
		return l
	}
	s.limMu.Lock()
	defer s.limMu.Unlock()
	if l = s.limiters[pnid]; l == nil {
		l = rate.NewLimiter(rate.Limit(s.cfg.Throughput), max(1, int(math.Ceil(s.cfg.Throughput))))
		s.limiters[pnid] = l
	}
	return l
}

const pairShards = 64

// pairShard holds the last accepted send per (number, recipient) of one shard. Entries
// older than the pair interval are swept when the map doubles, so memory follows the
// recipients of the last interval rather than every recipient ever.
type pairShard struct {
	mu      sync.Mutex
	last    map[string]time.Time
	sweepAt int
}

// pairAllow records a send to (pnid, digits) at now unless one happened less than the
// pair interval ago.
func (s *Sandbox) pairAllow(pnid, digits string, now time.Time) bool {
	iv := s.cfg.PairInterval
	if iv < 0 {
		return true
	}
	key := pnid + "\x00" + digits
	sh := &s.pairs[hashString('p', key)%pairShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if last, ok := sh.last[key]; ok && now.Sub(last) < iv && !now.Before(last) {
		return false
	}
	sh.last[key] = now
	if len(sh.last) >= sh.sweepAt {
		for k, t := range sh.last {
			if now.Sub(t) >= iv {
				delete(sh.last, k)
			}
		}
		sh.sweepAt = max(s.pairSweepMin, 2*len(sh.last))
	}
	return true
}

func (s *Sandbox) reject(code int) {
	s.rejMu.Lock()
	s.rejected[code]++
	s.rejMu.Unlock()
}
