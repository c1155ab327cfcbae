// Package server is the HTTP face of `herald serve`: the WhatsApp webhook (GET challenge,
// signed POSTs of statuses and inbound messages), /metrics, /healthz and /readyz, and
// the mount point of the /v1 API (internal/api). It
// verifies and translates; what a status or an inbound message means is decided by the
// dispatcher (progress), throttle (window, consent) and the event contract.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/sms"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/dispatcher/whatsapp"
	"github.com/herald-dev/herald/internal/events"
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
}

// Config wires the server.
type Config struct {
	AppSecret     string // Meta app secret: webhook signatures
	VerifyToken   string // hub.verify_token of the subscription
	Events        Publisher
	Inbound       Publisher
	Tracker       *dispatcher.Tracker
	Policy        *throttle.Policy
	Ledger        *throttle.Ledger
	Reactor       *dispatcher.Reactor // what failed statuses ask for (opt-outs, suppressions…)
	Contacts      Contacts
	StopKeywords  []string     // default STOP, UNSUBSCRIBE, END, QUIT, CANCEL, OPTOUT, STOPALL
	StartKeywords []string     // default START, UNSTOP, SUBSCRIBE (not YES: a casual reply is no opt-in)
	Clicks        *links.Codec // click-tracking redirector at GET /c/{token}; nil: off
	Track         *TrackConfig // conversions at POST /track/conversion; nil: off
	SMS           *SMSConfig   // SMS status callbacks and inbound messages at /webhooks/sms/…; nil: off
	API           http.Handler // the /v1 HTTP API (internal/api), mounted at /v1/; nil: off
	Ready         func(ctx context.Context) error
	Logger        *slog.Logger
	Registry      *prometheus.Registry // /metrics; may be nil
}

// Server handles Herald's HTTP endpoints.
type Server struct {
	cfg         Config
	log         *slog.Logger
	stop, start map[string]bool
	m           struct {
		webhooks *prometheus.CounterVec
		statuses *prometheus.CounterVec
		latency  prometheus.Histogram
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
		kw = []string{"STOP", "UNSUBSCRIBE", "END", "QUIT", "CANCEL", "OPTOUT", "STOPALL", "STOP ALL"}
	}
	for _, k := range kw {
		s.stop[events.NormalizeKeyword(k)] = true
	}
	kw = cfg.StartKeywords
	if len(kw) == 0 {
		kw = []string{"START", "UNSTOP", "SUBSCRIBE"}
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
	return s
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
	if s.cfg.Track != nil {
		mux.Handle("POST /track/conversion", NewConversionHandler(*s.cfg.Track))
	}
	if s.cfg.API != nil {
		mux.Handle("/v1/", s.cfg.API)
	}
	if s.cfg.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	}
	return mux
}

func (s *Server) challenge(w http.ResponseWriter, r *http.Request) {
	c, ok := whatsapp.VerifyChallenge(r.URL.Query(), s.cfg.VerifyToken)
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		s.m.webhooks.WithLabelValues("too_large").Inc()
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	if err := whatsapp.VerifySignature(s.cfg.AppSecret, body, r.Header.Get("X-Hub-Signature-256")); err != nil {
		s.m.webhooks.WithLabelValues("bad_signature").Inc()
		s.log.Warn("webhook rejected: bad signature", "err", err, "remote", r.RemoteAddr)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	n, err := whatsapp.ParseNotification(body)
	if err != nil {
		// Signed but malformed: retrying will not help, and nothing was changed.
		s.m.webhooks.WithLabelValues("bad_payload").Inc()
		s.log.Warn("webhook rejected: malformed payload", "err", err)
		http.Error(w, "malformed payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.handle(r.Context(), n); err != nil {
		// Meta retries non-200 responses: nothing is lost.
		s.m.webhooks.WithLabelValues("error").Inc()
		s.log.Error("webhook not processed; the provider will retry", "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	s.m.webhooks.WithLabelValues("ok").Inc()
	io.WriteString(w, "ok")
}

var statusKinds = map[string]events.Kind{"sent": events.Sent, "delivered": events.Delivered, "read": events.Read, "played": events.Read, "failed": events.Failed}

// handle decodes a WhatsApp notification into the provider-neutral batch and ingests
// it. Everything is idempotent: Meta redelivers and duplicates.
func (s *Server) handle(ctx context.Context, n *whatsapp.Notification) error {
	return s.ingest(ctx, s.decodeWhatsApp(n))
}

// decodeWhatsApp turns a notification into Reports, Inbound messages and Preferences.
func (s *Server) decodeWhatsApp(n *whatsapp.Notification) Batch {
	var b Batch
	for _, e := range n.Entry {
		for _, ch := range e.Changes {
			v := ch.Value
			phoneID := v.Metadata.PhoneNumberID
			for _, st := range v.Statuses {
				s.m.statuses.WithLabelValues(st.Status).Inc()
				kind, ok := statusKinds[st.Status]
				campaign, contact, variant, ours := whatsapp.ParseCallbackVariant(st.BizOpaqueCallbackData)
				if !ok || !ours {
					continue // not a Herald campaign message (or a status we do not track)
				}
				at, err := whatsapp.ParseTimestamp(st.Timestamp)
				if err != nil {
					at = time.Now()
				}
				r := dispatcher.Report{Kind: kind, Key: dispatcher.Key{Campaign: campaign, Contact: contact}, Variant: variant,
					Channel: "whatsapp", SenderRef: phoneID, MessageID: st.ID, Time: at}
				if kind == events.Failed && len(st.Errors) > 0 {
					r.Code = st.Errors[0].Code
					cl := whatsapp.ClassifyCode(r.Code)
					r.Action, r.Signal = cl.Action.String(), cl.Signal
				}
				b.Reports = append(b.Reports, r)
			}
			// A user who taps "Stop promotions" (or resumes them) in WhatsApp: Meta tells the
			// business, and Herald records it in the ledger like a STOP or START keyword.
			for _, up := range v.UserPreferences {
				if up.Category != "marketing_messages" || (up.Value != "stop" && up.Value != "resume") {
					continue
				}
				proof := "whatsapp user_preferences " + up.Value + " at " + strconv.FormatInt(up.Timestamp, 10)
				if up.Detail != "" {
					proof += ": " + up.Detail
				}
				b.Preferences = append(b.Preferences, dispatcher.Preference{Channel: "whatsapp", From: "+" + strings.TrimPrefix(up.WaID, "+"),
					SenderRef: phoneID, OptIn: up.Value == "resume", ID: "user_preferences:" + strconv.FormatInt(up.Timestamp, 10), Proof: proof})
			}
			for _, m := range v.Messages {
				at, err := whatsapp.ParseTimestamp(m.Timestamp)
				if err != nil {
					at = time.Now()
				}
				in := dispatcher.Inbound{Channel: "whatsapp", From: "+" + strings.TrimPrefix(m.From, "+"), SenderRef: phoneID,
					MessageID: m.ID, Type: m.Type, Text: inboundText(m), Time: at}
				if m.Context != nil {
					in.ReplyTo = m.Context.ID
				}
				b.Inbound = append(b.Inbound, in)
			}
		}
	}
	return b
}

func inboundText(m whatsapp.InboundMessage) string {
	switch {
	case m.Text != nil:
		return m.Text.Body
	case m.Button != nil:
		return m.Button.Text
	case m.Interactive != nil && m.Interactive.ButtonReply != nil:
		return m.Interactive.ButtonReply.Title
	case m.Interactive != nil && m.Interactive.ListReply != nil:
		return m.Interactive.ListReply.Title
	}
	return ""
}

var (
	errNotFound = errors.New("not found")
	errNoLedger = errors.New("consent changes arrived but no consent ledger is configured")
)

func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, errNotFound) || strings.Contains(err.Error(), "not found"))
}
