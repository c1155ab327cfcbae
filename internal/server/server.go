// Package server is the HTTP face of `herald serve`: the WhatsApp webhook (GET challenge,
// signed POSTs of statuses and inbound messages), /metrics, /healthz and /readyz, and
// the mount point of the /v1 API (internal/api). It verifies and translates; what a
// status or an inbound message means is decided by the dispatcher (progress), throttle
// (window, consent) and the event contract. Concurrent
// webhook requests are carried out together by a group commit (group.go): one Kafka
// write and one settlement round trip per group, 200 once a request's events are in
// Kafka, 503 within GroupConfig.Timeout otherwise. Metrics: herald_webhooks_total
// (by result), herald_webhook_statuses_total, herald_webhook_seconds and
// herald_webhook_group_requests.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/line"
	"github.com/herald-dev/herald/channels/sms"
	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/channels/whatsapp"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates/links"
	"github.com/herald-dev/herald/throttle"
)

// MaxBody is the largest webhook body accepted (Meta sends up to 3 MB).
const MaxBody = 4 << 20

// Publisher writes to one Kafka topic.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Contacts finds a contact by its address on a channel (segments.Store).
type Contacts interface {
	LookupPhone(ctx context.Context, phone string) (uint32, error)
	LookupEmail(ctx context.Context, email string) (uint32, error)
	// LookupIdentity and CreateWithIdentity find or make a contact by a channel's own
	// identity (a LINE user id, a Telegram chat id).
	LookupIdentity(ctx context.Context, channel, id string) (uint32, error)
	CreateWithIdentity(ctx context.Context, channel, id string, c segments.Contact) (uint32, error)
}

// Config wires the server.
type Config struct {
	AppSecret   string // Meta app secret: webhook signatures
	VerifyToken string // hub.verify_token of the subscription
	Events      Publisher
	Inbound     Publisher
	Tracker     *dispatcher.Tracker
	Policy      *throttle.Policy
	Ledger      *throttle.Ledger
	Reactor     *dispatcher.Reactor // what failed statuses ask for (opt-outs, suppressions…)
	// Failover records the deliveries and permanent failures campaigns with a channel
	// policy fall back on, and tells a fallback's statuses apart; nil: off.
	Failover      *dispatcher.Failover
	Contacts      Contacts
	StopKeywords  []string        // default STOP, STOPALL, UNSUBSCRIBE, END, QUIT, REVOKE, OPTOUT, CANCEL (the carriers' SMS keywords) and STOP ALL
	StartKeywords []string        // default START, UNSTOP, SUBSCRIBE (not YES: a casual reply is no opt-in)
	Clicks        *links.Codec    // click-tracking redirector at GET /c/{token}; nil: off
	Track         *TrackConfig    // conversions at POST /track/conversion; nil: off
	SMS           *SMSConfig      // SMS status callbacks and inbound messages at /webhooks/sms/…; nil: off
	Telegram      *TelegramConfig // Telegram bot updates at /webhooks/telegram; nil: off
	LINE          *LINEConfig     // LINE webhook events at /webhooks/line; nil: off
	API           http.Handler    // the /v1 HTTP API (internal/api), mounted at /v1/; nil: off
	Console       http.Handler    // the web console (package console), mounted at / (it serves /console/); nil: off
	Group         GroupConfig     // group commit of concurrent webhook requests
	Ready         func(ctx context.Context) error
	Logger        *slog.Logger
	Registry      *prometheus.Registry // /metrics; may be nil
}

// Server handles Herald's HTTP endpoints.
type Server struct {
	cfg         Config
	log         *slog.Logger
	stop, start map[string]bool
	commit      *committer
	settling    keyLocks
	finished    finishedKeys // sends found finished: their statuses skip the settlement look-up
	m           struct {
		webhooks *prometheus.CounterVec
		statuses *prometheus.CounterVec
		latency  prometheus.Histogram
		group    prometheus.Histogram
	}
}

// New returns a server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, stop: map[string]bool{}, start: map[string]bool{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "serve")
	kw := cfg.StopKeywords
	if len(kw) == 0 {
		kw = append(slices.Clone(sms.OptOutKeywords), "STOP ALL")
	}
	for _, k := range kw {
		s.stop[events.NormalizeKeyword(k)] = true
	}
	kw = cfg.StartKeywords
	if len(kw) == 0 {
		kw = append(slices.Clone(sms.OptInKeywords), "SUBSCRIBE")
	}
	for _, k := range kw {
		s.start[events.NormalizeKeyword(k)] = true
	}
	var reg prometheus.Registerer = prometheus.NewRegistry()
	if cfg.Registry != nil {
		reg = cfg.Registry
	}
	f := promauto.With(reg)
	s.m.webhooks = f.NewCounterVec(prometheus.CounterOpts{Name: "herald_webhooks_total", Help: "Webhook requests by result."}, []string{"result"})
	s.m.statuses = f.NewCounterVec(prometheus.CounterOpts{Name: "herald_webhook_statuses_total", Help: "Statuses received by status."}, []string{"status"})
	s.m.latency = f.NewHistogram(prometheus.HistogramOpts{Name: "herald_webhook_seconds", Help: "Webhook handling time.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})
	s.m.group = f.NewHistogram(prometheus.HistogramOpts{Name: "herald_webhook_group_requests", Help: "Webhook requests carried out together by one group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)})
	s.commit = newCommitter(cfg.Group, s.ingest)
	s.commit.observe = func(requests, _ int) { s.m.group.Observe(float64(requests)) }
	return s
}

// Keyword reports whether an inbound message's text is an opt-out (StopKeywords) or an
// opt-in (StartKeywords) keyword: the whole message, any case, surrounding whitespace
// and punctuation ignored ("stop", " Stop!\n"), never a word within a sentence.
func (s *Server) Keyword(text string) (optOut, optIn bool) {
	kw := events.NormalizeKeyword(text)
	return s.stop[kw], s.start[kw]
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /webhooks/whatsapp", s.challenge)
	mux.HandleFunc("POST /webhooks/whatsapp", s.webhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := s.cfg.Ready(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	if s.cfg.Clicks != nil {
		mux.Handle("GET /c/", NewClickHandler(ClickConfig{Codec: s.cfg.Clicks, Events: s.cfg.Events, Logger: s.log}))
		mux.HandleFunc("GET /u/{token}", s.unsubscribe)
		mux.HandleFunc("POST /u/{token}", s.unsubscribe)
	}
	if s.cfg.SMS != nil {
		mux.HandleFunc("POST "+sms.StatusPath, s.smsWebhook(false))
		mux.HandleFunc("POST "+sms.InboundPath, s.smsWebhook(true))
	}
	if s.cfg.Telegram != nil {
		mux.HandleFunc("POST "+telegram.WebhookPath, s.telegramWebhook)
	}
	if s.cfg.LINE != nil {
		mux.HandleFunc("POST "+line.WebhookPath, s.lineWebhook)
	}
	if s.cfg.Track != nil {
		mux.Handle("POST /track/conversion", NewConversionHandler(*s.cfg.Track))
	}
	if s.cfg.API != nil {
		mux.Handle("/v1/", s.cfg.API)
	}
	if s.cfg.Console != nil {
		mux.Handle("GET /console/", s.cfg.Console)
		mux.Handle("GET /console", s.cfg.Console)
		mux.Handle("GET /{$}", s.cfg.Console)
	}
	if s.cfg.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	}
	return mux
}

func (s *Server) challenge(w http.ResponseWriter, r *http.Request) {
	c, ok := graph.VerifyChallenge(r.URL.Query(), s.cfg.VerifyToken)
	if !ok {
		s.m.webhooks.WithLabelValues("bad_challenge").Inc()
		http.Error(w, "verification failed", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, c)
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.m.latency.Observe(time.Since(start).Seconds()) }()
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	b, err := ReadWhatsApp(r, s.cfg.AppSecret)
	switch {
	case errors.Is(err, ErrTooLarge):
		s.m.webhooks.WithLabelValues("too_large").Inc()
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	case errors.Is(err, ErrBadSignature):
		s.m.webhooks.WithLabelValues("bad_signature").Inc()
		s.log.Warn("webhook rejected: bad signature", "err", err, "remote", r.RemoteAddr)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	case err != nil:
		// Signed but malformed: retrying will not help, and nothing was changed.
		s.m.webhooks.WithLabelValues("bad_payload").Inc()
		s.log.Warn("webhook rejected: malformed payload", "err", err)
		http.Error(w, "malformed payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	for _, r := range b.Reports {
		s.m.statuses.WithLabelValues(string(r.Kind)).Inc()
	}
	if err := s.commit.Submit(b); err != nil {
		s.unavailable(w, err)
		return
	}
	s.m.webhooks.WithLabelValues("ok").Inc()
	io.WriteString(w, "ok")
}

// unavailable answers 503 to a request whose batch was not carried out: Meta (and the
// other providers) retry non-200 responses, and ingestion is idempotent, so nothing is
// lost and nothing counts twice.
func (s *Server) unavailable(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrOverloaded) {
		s.m.webhooks.WithLabelValues("overloaded").Inc()
		s.log.Warn("webhook refused: queue full; the provider will retry")
	} else {
		s.m.webhooks.WithLabelValues("error").Inc()
		s.log.Error("webhook not processed; the provider will retry", "err", err)
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
}

// Why a webhook request was refused: ReadWhatsApp and ReadSMS wrap one of these. A
// refused request decodes to nothing.
var (
	ErrTooLarge     = errors.New("webhook body too large or unreadable")
	ErrBadSignature = errors.New("webhook signature invalid")
	ErrBadPayload   = errors.New("webhook payload malformed")
	ErrUnavailable  = errors.New("webhook cannot be checked now") // the provider should retry
)

// ReadWhatsApp reads a WhatsApp webhook POST (at most MaxBody bytes), verifies its
// X-Hub-Signature-256 under appSecret over the raw bytes, then parses and decodes it
// into the core's terms (whatsapp.Decode). Nothing is parsed before the signature holds.
func ReadWhatsApp(r *http.Request, appSecret string) (Batch, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if len(body) > MaxBody {
		return Batch{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxBody)
	}
	if err := graph.VerifySignature(appSecret, body, r.Header.Get(graph.SignatureHeader)); err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	n, err := graph.ParseNotification(body)
	if err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrBadPayload, err)
	}
	var b Batch
	b.Reports, b.Inbound, b.Preferences = whatsapp.Decode(n)
	return b, nil
}

var (
	errNotFound = errors.New("not found")
	errNoLedger = errors.New("consent changes arrived but no consent ledger is configured")
)

func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, errNotFound) || strings.Contains(err.Error(), "not found"))
}
