// Package sandbox is a local Twilio Messages API that behaves like Twilio for SMS: the
// send endpoint with HTTP basic auth (account SID : auth token), form-encoded requests,
// the Message resource JSON and Twilio's error body; per-sender queues that drain at the
// sender type's rate (long code 1 segment/s, toll-free 3, short code 100; configurable)
// and refuse what would wait longer than the queue time (21611; 30001 through a
// Messaging Service; 30036 past a ValidityPeriod); deterministic shares of unsubscribed
// (21610), landline (21614) and undeliverable (accepted, then undelivered 30003/30005)
// numbers; carrier filtering (30007) by configured words; a STOP texted by a user makes
// later sends to that number 21610, as carriers do, until START. It posts signed status
// callbacks (queued, sent, then delivered or undelivered/failed with ErrorCode) to each
// message's StatusCallback with realistic delays, retrying on non-2xx, and inbound
// messages to InboundURL. It records what it accepted and decided (Records, Stats), so
// tests and benchmarks compare Herald's figures with the truth.
//
// It owns only this simulation; the shapes and the signature come from channels/sms.
//
// HTTP API (Handler):
//
//	POST /2010-04-01/Accounts/{AccountSid}/Messages.json   send (Twilio shapes)
//	GET  /_sandbox/records                                 accepted messages (?offset=&limit=)
//	GET  /_sandbox/stats                                   counters
//	POST /_sandbox/inbound                                 {"from","to","body"}: a user texts one of our numbers
//
// Choices where Twilio is loose or asynchronous: a message is drained (status sent) when
// the last of its segments leaves the sender's queue, computed on the Config.Now clock
// when it is accepted; callbacks are POSTed that long after acceptance in real time,
// scaled by DelayScale; a STOP texted to any of our numbers also blocks sends to that
// user through a Messaging Service (pools are not modelled); a status callback is one
// POST per status, retried with backoff on failure, in no guaranteed order across
// messages (nor within one, with several posters and DelayScale < 0).
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/herald-dev/herald/channels/sms"
)

// Fault is an injected answer to a send request (Config.Fault).
type Fault struct {
	Status     int           // HTTP status; 0: no fault
	Code       int           // Twilio code of the error body; 0: a bare non-JSON body
	RetryAfter time.Duration // a Retry-After header, when > 0
}

// Config configures a Sandbox. Zero values take the defaults noted.
type Config struct {
	AccountSID string // the account; "" accepts any SID whose basic-auth user matches the path
	// AuthToken is the basic-auth password and the key callbacks are signed with
	// (X-Twilio-Signature); "" accepts any password and leaves callbacks unsigned.
	AuthToken string
	// Senders are the account's numbers (From) and Messaging Service SIDs, with their
	// types. When set, a From or service not listed gets 21606. When empty, any is
	// accepted and its type inferred: a 5-6 digit short code, +1 8XX toll-free, else a
	// long code.
	Senders map[string]sms.SenderType
	// Rates are the senders' drain rates in segments per second by type (default
	// sms.DefaultRate: 1, 3, 100).
	Rates map[sms.SenderType]float64
	// MaxQueueTime is the longest a message may wait in its sender's queue (default 10 h,
	// Twilio's): one that would wait longer is refused with 21611, or through a Messaging
	// Service accepted and failed with 30001.
	MaxQueueTime time.Duration
	InboundURL   string // where inbound messages are POSTed; "" → none sent (the STOP still applies)
	// AllowedCountries are the regions (ISO 3166 alpha-2) the account may send to; a
	// number elsewhere gets 21408. Empty: all.
	AllowedCountries []string
	// Shares of recipients, deterministic by number (see Unsubscribed, Landline,
	// Undeliverable): unsubscribed get 21610 at submit, landlines 21614, undeliverable
	// are accepted and then undelivered with 30003 or 30005.
	UnsubscribedRate  float64
	LandlineRate      float64
	UndeliverableRate float64
	// FilterWords: a body containing one (any case) is accepted, then undelivered with
	// 30007 (carrier filtering).
	FilterWords []string
	// DelayScale scales the real-time delays of callbacks: the queue wait before sent and
	// the carrier's 0.5-3 s before delivered (default 1; 0.01 for tests and demos; <0:
	// none). It never changes the queue itself, which runs on Now, nor the times
	// recorded.
	DelayScale float64
	// MaxConcurrentRequests bounds send requests in flight; above it Twilio answers 429
	// (20429) with Retry-After: 1. 0: unlimited.
	MaxConcurrentRequests int
	// Fault, when set, is asked before each send request with its To: a non-zero Status
	// answers with it (and Code's error body, and RetryAfter's header).
	Fault   func(to string) Fault
	Latency time.Duration    // added to every send request
	Now     func() time.Time // the queue and timestamp clock (default time.Now)
	Seed    int64            // seeds carrier delays

	CallbackConcurrency int           // concurrent callback posters (default 4)
	RetryBase           time.Duration // first retry delay after a failed POST (default 1s), doubling
	RetryMax            time.Duration // longest retry delay (default 1 min)
	CallbackClient      *http.Client  // default: a keep-alive client with a 10 s timeout
}

// Record is a message the sandbox accepted, and its fate.
type Record struct {
	SID                 string         `json:"sid"`
	AccountSID          string         `json:"account_sid"`
	From                string         `json:"from,omitempty"`
	MessagingServiceSID string         `json:"messaging_service_sid,omitempty"`
	SenderType          sms.SenderType `json:"sender_type"`
	To                  string         `json:"to"`
	Body                string         `json:"body"`
	Segments            int            `json:"segments"`
	Encoding            string         `json:"encoding"`
	StatusCallback      string         `json:"status_callback,omitempty"`
	CallbackData        string         `json:"callback_data,omitempty"` // the StatusCallback's cb parameter
	ValidityPeriod      int            `json:"validity_period,omitempty"`
	AcceptedAt          time.Time      `json:"accepted_at"`
	SentAt              time.Time      `json:"sent_at"` // when its last segment leaves the queue (decided on acceptance); zero if it never does
	Final               string         `json:"final"`   // delivered, undelivered or failed
	ErrorCode           int            `json:"error_code,omitempty"`
}

// Stats are the sandbox's counters.
type Stats struct {
	Requests        int64            `json:"requests"` // send requests
	Accepted        int64            `json:"accepted"`
	Segments        int64            `json:"segments"` // of accepted messages
	Rejected        map[int]int64    `json:"rejected"` // by Twilio error code
	Inbound         int64            `json:"inbound"`
	OptedOut        int64            `json:"opted_out"`        // (our number, user) pairs currently stopped
	Statuses        map[string]int64 `json:"statuses"`         // status callbacks delivered, by status
	CallbackPosts   int64            `json:"callback_posts"`   // POSTs made, failed or not
	CallbackFailed  int64            `json:"callback_failed"`  // POSTs that failed (error or non-2xx)
	CallbackRetried int64            `json:"callback_retried"` // POSTs of items that had failed before
	Pending         int64            `json:"pending"`          // callbacks and inbound messages not yet delivered
}

// Sandbox is a local Twilio Messages API. Serve Handler, and run Run to deliver callbacks.
type Sandbox struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	mux       *http.ServeMux
	hc        *http.Client
	countries map[string]bool

	idPrefix string
	seq      atomic.Uint64
	inflight atomic.Int64

	qMu    sync.Mutex
	queues map[string]time.Time // sender ref → when its queue is next free (Config.Now clock)

	stopMu sync.RWMutex
	stops  map[string]bool // our number + "\x00" + user digits
	stoppd map[string]int  // user digits → numbers stopped (Messaging Service sends)

	recMu   sync.Mutex
	records []Record

	requests, accepted, segments, inbound atomic.Int64
	posts, postsFailed, postsRetried      atomic.Int64
	rejMu                                 sync.Mutex
	rejected                              map[int]int64
	statMu                                sync.Mutex
	statuses                              map[string]int64

	bufs    sync.Pool
	q       queue
	running atomic.Bool
}

// New returns a sandbox for cfg. log may be nil.
func New(cfg Config, log *slog.Logger) *Sandbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxQueueTime <= 0 {
		cfg.MaxQueueTime = sms.MaxValidityPeriod
	}
	if cfg.DelayScale == 0 {
		cfg.DelayScale = 1
	}
	if cfg.CallbackConcurrency <= 0 {
		cfg.CallbackConcurrency = 4
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = max(time.Minute, cfg.RetryBase)
	}
	if cfg.CallbackClient == nil {
		cfg.CallbackClient = &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        64,
				MaxIdleConnsPerHost: cfg.CallbackConcurrency * 2,
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
		log:       log.With("component", "sms-sandbox"),
		now:       now,
		hc:        cfg.CallbackClient,
		countries: make(map[string]bool, len(cfg.AllowedCountries)),
		queues:    make(map[string]time.Time, 16),
		stops:     make(map[string]bool, 64),
		stoppd:    make(map[string]int, 64),
		records:   make([]Record, 0, 4096),
		rejected:  make(map[int]int64, 16),
		statuses:  make(map[string]int64, 8),
	}
	for _, c := range cfg.AllowedCountries {
		s.countries[strings.ToUpper(c)] = true
	}
	var p [8]byte
	_, _ = rand.Read(p[:])
	s.idPrefix = hex.EncodeToString(p[:])
	s.bufs.New = func() any { return bytes.NewBuffer(make([]byte, 0, 1024)) }
	s.q.init()
	s.routes()
	return s
}

// Handler returns the HTTP API.
func (s *Sandbox) Handler() http.Handler { return s.mux }

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
		Requests:        s.requests.Load(),
		Accepted:        s.accepted.Load(),
		Segments:        s.segments.Load(),
		Inbound:         s.inbound.Load(),
		CallbackPosts:   s.posts.Load(),
		CallbackFailed:  s.postsFailed.Load(),
		CallbackRetried: s.postsRetried.Load(),
		Pending:         s.q.pendingCount(),
		Rejected:        map[int]int64{},
		Statuses:        map[string]int64{},
	}
	s.rejMu.Lock()
	for k, v := range s.rejected {
		st.Rejected[k] = v
	}
	s.rejMu.Unlock()
	s.statMu.Lock()
	for k, v := range s.statuses {
		st.Statuses[k] = v
	}
	s.statMu.Unlock()
	s.stopMu.RLock()
	st.OptedOut = int64(len(s.stops))
	s.stopMu.RUnlock()
	return st
}

func (s *Sandbox) reject(code int) {
	s.rejMu.Lock()
	s.rejected[code]++
	s.rejMu.Unlock()
}

// newSID returns a unique message SID: "SM" and 32 hex digits, unique across sandboxes
// thanks to a random prefix.
func (s *Sandbox) newSID() string { return s.sidFor(s.seq.Add(1)) }

func (s *Sandbox) sidFor(seq uint64) string { return fmt.Sprintf("SM%s%016x", s.idPrefix, seq) }

// rate is the drain rate of a sender type in segments per second.
func (s *Sandbox) rate(t sms.SenderType) float64 {
	if r := s.cfg.Rates[t]; r > 0 {
		return r
	}
	return sms.DefaultRate(t)
}

// senderType returns the type of a sender ref and whether the account owns it.
func (s *Sandbox) senderType(ref string) (sms.SenderType, bool) {
	if len(s.cfg.Senders) > 0 {
		t, ok := s.cfg.Senders[ref]
		if t == "" {
			t = sms.LongCode
		}
		return t, ok
	}
	return InferType(ref), true
}

// InferType guesses a sender's type from its number: 5-6 digits are a short code, +1
// followed by a toll-free area code (800, 833, 844, 855, 866, 877, 888) toll-free,
// anything else a long code.
func InferType(ref string) sms.SenderType {
	if n := len(ref); (n == 5 || n == 6) && isDigits(ref) {
		return sms.ShortCode
	}
	if len(ref) == 12 && strings.HasPrefix(ref, "+1") && isDigits(ref[1:]) {
		switch ref[2:5] {
		case "800", "833", "844", "855", "866", "877", "888":
			return sms.TollFree
		}
	}
	return sms.LongCode
}

// reserve puts n segments in the queue of sender ref at rate segments/s, accepted at
// now: it returns when they will have left the queue, or ok false (and reserves nothing)
// when they would wait longer than limit before starting.
func (s *Sandbox) reserve(ref string, n int, rate float64, now time.Time, limit time.Duration) (sentAt time.Time, wait time.Duration, ok bool) {
	s.qMu.Lock()
	defer s.qMu.Unlock()
	start := s.queues[ref]
	if start.Before(now) {
		start = now
	}
	wait = start.Sub(now)
	if wait > limit {
		return time.Time{}, wait, false
	}
	sentAt = start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
	s.queues[ref] = sentAt
	return sentAt, wait, true
}

// QueueWait returns how long a message accepted now from sender ref would wait before
// its first segment leaves the queue.
func (s *Sandbox) QueueWait(ref string) time.Duration {
	now := s.now()
	s.qMu.Lock()
	defer s.qMu.Unlock()
	if next := s.queues[ref]; next.After(now) {
		return next.Sub(now)
	}
	return 0
}

// stopped reports whether the user (digits) texted STOP to ref (any of our numbers when
// ref is a Messaging Service SID).
func (s *Sandbox) stopped(ref, digits string) bool {
	s.stopMu.RLock()
	defer s.stopMu.RUnlock()
	if strings.HasPrefix(ref, "MG") {
		return s.stoppd[digits] > 0
	}
	return s.stops[ref+"\x00"+digits]
}

// setStop records a STOP (stop true) or START from user digits to our number ref.
func (s *Sandbox) setStop(ref, digits string, stop bool) {
	key := ref + "\x00" + digits
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	switch {
	case stop && !s.stops[key]:
		s.stops[key] = true
		s.stoppd[digits]++
	case !stop && s.stops[key]:
		delete(s.stops, key)
		if s.stoppd[digits]--; s.stoppd[digits] <= 0 {
			delete(s.stoppd, digits)
		}
	}
}

// Inbound simulates a user (from, E.164) texting body to our number to: it queues an
// inbound-message webhook to InboundURL, delivered by Run. A carrier opt-out keyword
// (sms.Keyword) stops later sends from to to that user (21610); an opt-in lifts it.
func (s *Sandbox) Inbound(ctx context.Context, from, to, body string) (sid string, err error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("sandbox inbound: %w", err)
	}
	num, digits, ok := parsePhone(from)
	if !ok {
		return "", fmt.Errorf("sandbox inbound: from %q: want a valid E.164 number such as +14155550123", from)
	}
	if to == "" {
		return "", errors.New("sandbox inbound: to (our number) is required")
	}
	if body == "" {
		return "", errors.New("sandbox inbound: body is required")
	}
	if optOut, optIn := sms.Keyword(body); optOut || optIn {
		s.setStop(to, digits, optOut)
	}
	s.inbound.Add(1)
	sid = s.newSID()
	segs, _ := smsSegments(body)
	form := map[string][]string{
		"AccountSid":    {s.accountFor()},
		"ApiVersion":    {sms.APIVersion},
		"MessageSid":    {sid},
		"SmsSid":        {sid},
		"SmsMessageSid": {sid},
		"SmsStatus":     {sms.StatusReceived},
		"From":          {from},
		"To":            {to},
		"Body":          {body},
		"NumMedia":      {"0"},
		"NumSegments":   {itoa(segs)},
		"FromCountry":   {phonenumbers.GetRegionCodeForNumber(num)},
	}
	if s.cfg.InboundURL != "" {
		s.q.push(&event{due: time.Now(), url: s.cfg.InboundURL, form: form, kind: kindInbound})
	}
	return sid, nil
}

// accountFor is the AccountSid callbacks and inbound messages carry.
func (s *Sandbox) accountFor() string {
	if s.cfg.AccountSID != "" {
		return s.cfg.AccountSID
	}
	return "AC00000000000000000000000000000000"
}

// parsePhone parses an E.164 number (with its '+') and checks it is a valid number.
func parsePhone(e164 string) (*phonenumbers.PhoneNumber, string, bool) {
	if len(e164) < 3 || len(e164) > 16 || e164[0] != '+' || !isDigits(e164[1:]) {
		return nil, "", false
	}
	num, err := phonenumbers.Parse(e164, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return nil, "", false
	}
	return num, e164[1:], true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Unsubscribed reports whether the sandbox treats recipient to (E.164) as having opted
// out of the account under rate: a deterministic function of its digits.
func Unsubscribed(to string, rate float64) bool {
	return rate > 0 && unit(hashString('s', strings.TrimPrefix(to, "+"))) < rate
}

// Landline reports whether the sandbox treats to as a landline under rate.
func Landline(to string, rate float64) bool {
	return rate > 0 && unit(hashString('l', strings.TrimPrefix(to, "+"))) < rate
}

// Undeliverable reports whether the sandbox treats to as unreachable under rate, and
// the code its message fails with (30003 unreachable handset, or 30005 unknown handset).
func Undeliverable(to string, rate float64) (bool, int) {
	h := hashString('u', strings.TrimPrefix(to, "+"))
	if rate <= 0 || unit(h) >= rate {
		return false, 0
	}
	if h&1 == 0 {
		return true, 30003
	}
	return true, 30005
}
