// Package api is Herald's /v1 HTTP API, mounted by `herald serve` (and so by dev and
// demo): JSON over HTTP for CRMs, scripts and the console. It translates HTTP to the use
// cases of internal/app and the domain packages, the ones the CLI calls, and owns only
// what is HTTP's: API-key authentication and the role → permission check
// (internal/apikeys), per-key rate limits (429 with Retry-After), Idempotency-Key
// replays, request ids, strict JSON decoding, application/problem+json errors, cursor
// pagination, Server-Sent Events for live progress, and an audit record of every
// mutating call (events.APICall on herald.audit, then ClickHouse api_audit).
//
// The contract is openapi.yaml (OpenAPI 3.1), embedded and served at
// GET /v1/openapi.json. Every route in routes() has an entry there with the
// permission it needs (x-permission); tests fail when either lacks the other, and
// validate every request and response they make against the spec.
//
// Start with New and routes(); handlers are in contacts.go, campaigns.go, reads.go.
package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/jsonx"
)

// Publisher writes to one Kafka topic.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Config wires the API.
type Config struct {
	Deps       *app.Deps
	Components *app.Components
	Redis      redis.UniversalClient // idempotency records and rate limits
	Prefix     string                // of those Redis keys
	Audit      Publisher             // herald.audit
	// ClickHouse opens the connection reports and the audit list read (when first needed).
	ClickHouse func(ctx context.Context) (driver.Conn, error)

	Rate  float64 // requests per second per API key (a key's own rate wins); default 20
	Burst int     // requests a key may make at once; default 2 × Rate
	// MaxBody is the largest request body accepted (413 above it); default 4 MiB.
	MaxBody int64
	// MaxImportBody is the largest file POST /v1/imports accepts; default 256 MiB (about
	// 4M contacts of a typical CRM export). The file is held in memory while it imports.
	MaxImportBody int64
	// ImportBodyTimeout bounds the time an import's file may take to arrive; default 10 min.
	ImportBodyTimeout time.Duration
	// BodyTimeout bounds the time a request body may take to arrive (408 after it, so
	// a slow client cannot hold a connection); default 30 s.
	BodyTimeout time.Duration
	// ProgressEvery is how often a progress stream reads the campaign's counters; default 500 ms.
	ProgressEvery time.Duration
	// Heartbeat is how long a progress stream may stay silent before it sends a comment
	// (proxies close idle connections); default 15 s.
	Heartbeat time.Duration

	Logger   *slog.Logger
	Registry prometheus.Registerer // may be nil
}

// API serves /v1.
type API struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	routes  []route
	idem    *idempotency
	limiter *rateLimiter
	m       struct {
		requests *prometheus.CounterVec
		latency  *prometheus.HistogramVec
		audit    prometheus.Counter
	}
}

// route is one operation: method and path as the OpenAPI spec writes them, the
// permission it needs ("" for none: no API key asked), and its handler.
type route struct {
	method, path string
	perm         apikeys.Permission
	handle       func(*call) error
}

func (rt route) pattern() string { return rt.method + " " + rt.path }

// mutating reports whether calls of the route change something: they are audited and
// take an Idempotency-Key (POST).
func (rt route) mutating() bool { return rt.method != http.MethodGet && rt.method != http.MethodHead }

// New builds the API.
func New(cfg Config) (*API, error) {
	if cfg.Components == nil || cfg.Redis == nil || cfg.Audit == nil {
		return nil, errors.New("api: Components, Redis and Audit are required")
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 20
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(2*cfg.Rate))
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 4 << 20
	}
	if cfg.MaxImportBody <= 0 {
		cfg.MaxImportBody = 256 << 20
	}
	if cfg.ImportBodyTimeout <= 0 {
		cfg.ImportBodyTimeout = 10 * time.Minute
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 500 * time.Millisecond
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	a := &API{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(),
		idem:    &idempotency{rdb: cfg.Redis, prefix: cfg.Prefix, ttl: IdempotencyTTL, pending: time.Minute},
		limiter: &rateLimiter{rdb: cfg.Redis, prefix: cfg.Prefix}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("component", "api")
	var reg prometheus.Registerer = prometheus.NewRegistry()
	if cfg.Registry != nil {
		reg = cfg.Registry
	}
	f := promauto.With(reg)
	a.m.requests = f.NewCounterVec(prometheus.CounterOpts{Name: "herald_api_requests_total", Help: "API requests by route pattern and status code."}, []string{"route", "code"})
	a.m.latency = f.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_api_request_seconds", Help: "API request handling time by route pattern.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"route"})
	a.m.audit = f.NewCounter(prometheus.CounterOpts{Name: "herald_api_audit_failures_total", Help: "Audit records of mutating API calls that could not be published."})
	a.routes = a.routeTable()
	a.register()
	return a, nil
}

// Handler builds the API on d, for app.Config.API.
func Handler(d *app.Deps) (http.Handler, error) {
	comp, err := d.Components()
	if err != nil {
		return nil, err
	}
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	if len(d.Cfg.KafkaBrokers) == 0 {
		return nil, errors.New("the API's audit records go to Kafka: set HERALD_KAFKA_BROKERS")
	}
	return New(Config{Deps: d, Components: comp, Redis: rdb, Prefix: d.Cfg.Prefix, Audit: d.Writer(d.Topics.Audit),
		ClickHouse: d.ClickHouse, Rate: d.Cfg.APIRate, Burst: d.Cfg.APIBurst, MaxImportBody: d.Cfg.APIMaxImportBytes, Logger: d.Cfg.Logger, Registry: d.Cfg.Registry})
}

// Routes lists the route patterns ("POST /v1/campaigns/{id}/launch") and the
// permission each needs.
func (a *API) Routes() map[string]apikeys.Permission {
	out := map[string]apikeys.Permission{}
	for _, rt := range a.routes {
		out[rt.pattern()] = rt.perm
	}
	return out
}

const requestIDHeader = "X-Request-Id"

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "req_" + hex.EncodeToString(b)
}

// ServeHTTP gives every request an id (the caller's X-Request-Id when it is short
// and plain, else a new one), answers unknown paths and methods with problems, and
// hands the rest to their route.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(requestIDHeader)
	if !requestIDRE.MatchString(id) {
		id = newRequestID()
	}
	w.Header().Set(requestIDHeader, id)
	if h, pattern := a.mux.Handler(r); pattern == "" {
		// ServeMux's own answer: 404, or 405 with Allow when the path has other methods.
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		p := problem("not-found", "no such route: "+r.Method+" "+r.URL.Path)
		if rec.Code == http.StatusMethodNotAllowed {
			p = problem("method-not-allowed", r.Method+" is not allowed on "+r.URL.Path)
			p.allow = rec.Header().Get("Allow")
		}
		a.m.requests.WithLabelValues("unmatched", strconv.Itoa(p.Status)).Inc()
		writeProblem(w, r, p)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// call is one request on its way through a route.
type call struct {
	a        *API
	w        http.ResponseWriter
	r        *http.Request
	rt       route
	key      apikeys.Key
	body     []byte
	resource string // the id of what the call named or created, for the audit
}

// json answers v (in the shape the CLI prints it: jsonx.Output) with status.
func (c *call) json(status int, v any) error {
	b, err := marshal(jsonx.Output(v))
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	_, err = c.w.Write(b)
	return err
}

// marshal encodes v as the CLI prints it: without escaping <, > and &; with a newline.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// decode reads the body into dst strictly (decodeStrict), or returns the 400 problem.
func (c *call) decode(dst any) error {
	if probs := decodeStrict(c.body, dst); len(probs) > 0 {
		return problem("invalid-body", probs[0].Detail, probs...)
	}
	return nil
}

// wrap runs a route: authentication, permission, rate limit, body, idempotency, the
// handler, the audit record; a mutating call's answer is held until its audit record
// is published, so none leaves without one.
func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{a: a, w: w, r: r, rt: rt}
		tw := &trackWriter{ResponseWriter: w, status: http.StatusOK}
		if rt.perm == "" {
			c.w = tw
			a.finish(c, tw, start, a.run(c))
			return
		}
		key, p := a.authenticate(r)
		if p != nil {
			// Not audited: without a valid key there is no one to name, and a flood of
			// them must not fill the audit. Logged with the route only.
			a.log.Info("API request refused: no valid API key", "route", rt.pattern(), "request_id", w.Header().Get(requestIDHeader), "remote", r.RemoteAddr)
			writeProblem(w, r, p)
			a.count(rt, p.Status, start)
			return
		}
		c.key = key
		if !rt.mutating() {
			c.w = tw
			a.finish(c, tw, start, a.authorized(c))
			return
		}
		buf := &buffer{under: w, status: http.StatusOK}
		c.w = buf
		c.r = r.WithContext(context.WithoutCancel(r.Context())) // a change runs to its end, its audit with it
		err := a.authorized(c)
		if err != nil {
			writeProblem(buf, c.r, a.problemFor(c, err))
		}
		a.audit(c, buf, start)
		buf.flush(w)
		a.count(rt, buf.status, start)
	})
}

// finish answers a GET's error (unless the handler had begun its answer, a stream)
// and counts it.
func (a *API) finish(c *call, w *trackWriter, start time.Time, err error) {
	if err != nil {
		p := a.problemFor(c, err)
		if !w.written {
			writeProblem(w, c.r, p)
		} else if !errors.Is(err, context.Canceled) {
			a.log.Warn("API stream ended by an error", "route", c.rt.pattern(), "err", err)
		}
	}
	a.count(c.rt, w.status, start)
}

func (a *API) problemFor(c *call, err error) *Problem {
	p := problemOf(err)
	if p.Status >= 500 {
		a.log.Error("API request failed", "route", c.rt.pattern(), "request_id", c.w.Header().Get(requestIDHeader), "key_id", c.key.ID, "err", err)
		p.Detail = "the server could not complete the request; quote request id " + c.w.Header().Get(requestIDHeader)
	}
	return p
}

func (a *API) count(rt route, status int, start time.Time) {
	a.m.requests.WithLabelValues(rt.pattern(), strconv.Itoa(status)).Inc()
	a.m.latency.WithLabelValues(rt.pattern()).Observe(time.Since(start).Seconds())
}

// authenticate finds the API key of the Authorization header. Its secret is never
// logged or echoed: the problem says only that it is missing or invalid.
func (a *API) authenticate(r *http.Request) (apikeys.Key, *Problem) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if _, err := r.Cookie(SessionCookie); err == nil {
			return a.authenticateSession(r) // a console session (session.go)
		}
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return apikeys.Key{}, problem("unauthorized", "send the API key as Authorization: Bearer <key> (herald keys create makes one)")
	}
	k, err := a.cfg.Components.Keys.Authenticate(r.Context(), strings.TrimSpace(token))
	if errors.Is(err, apikeys.ErrUnauthorized) {
		return apikeys.Key{}, problem("unauthorized", "the API key is unknown, malformed or revoked")
	}
	if err != nil {
		a.log.Error("API key check failed", "err", err)
		return apikeys.Key{}, problem("internal", "the API key could not be checked; try again")
	}
	return k, nil
}

// authorized runs the rest of an authenticated call: permission, rate limit, body,
// idempotency and the handler.
func (a *API) authorized(c *call) error {
	if !c.key.Can(c.rt.perm) {
		return problem("forbidden", fmt.Sprintf("a %s key may not do this: it needs the permission %s", c.key.Role, c.rt.perm))
	}
	rate := a.cfg.Rate
	burst := a.cfg.Burst
	if c.key.RatePerSecond > 0 {
		rate, burst = c.key.RatePerSecond, max(1, int(2*c.key.RatePerSecond))
	}
	wait, err := a.limiter.allow(c.r.Context(), c.key.ID, rate, burst)
	if err != nil {
		return err
	}
	if wait > 0 {
		p := problem("rate-limited", fmt.Sprintf("this key may make %g requests a second; retry after the Retry-After seconds", rate))
		p.retryAfter = int((wait + 999) / 1000)
		return p
	}
	if !c.rt.mutating() {
		return a.run(c)
	}
	if err := a.readBody(c); err != nil {
		return err
	}
	idemKey := c.r.Header.Get("Idempotency-Key")
	if idemKey == "" || c.rt.method != http.MethodPost {
		return a.run(c)
	}
	if len(idemKey) > maxIdempotencyKey || strings.ContainsFunc(idemKey, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return problem("invalid-parameter", "Idempotency-Key: want 1 to 255 visible ASCII characters (a UUID is fine)",
			FieldProblem{Header: "Idempotency-Key", Detail: "want 1 to 255 visible ASCII characters"})
	}
	fp := fingerprint(c.rt.method, c.rt.pattern(), c.r.URL.RequestURI(), c.body)
	state, stored, err := a.idem.begin(c.r.Context(), c.key.ID, idemKey, fp)
	if err != nil {
		return err
	}
	switch state {
	case idemMismatch:
		return problem("idempotency-key-reused", "this Idempotency-Key was first used with another method, path or body; use a new key for a new request",
			FieldProblem{Header: "Idempotency-Key", Detail: "used before with another request"})
	case idemPending:
		p := problem("idempotency-key-in-use", "the first request with this Idempotency-Key has not finished; retry shortly")
		p.retryAfter = 1
		return p
	case idemReplay:
		for k, v := range stored.Headers {
			c.w.Header().Set(k, v)
		}
		c.w.Header().Set("Idempotent-Replayed", "true")
		c.w.WriteHeader(stored.Status)
		_, _ = c.w.Write(stored.Body)
		c.resource = stored.Resource
		if buf, ok := c.w.(*buffer); ok {
			buf.replayed = true
		}
		return nil
	}
	err = a.run(c)
	buf := c.w.(*buffer)
	if err != nil {
		writeProblem(buf, c.r, a.problemFor(c, err))
	}
	if ferr := a.idem.finish(c.r.Context(), c.key.ID, idemKey, fp, buf.status, buf.Header(), buf.body.Bytes(), c.resource); ferr != nil {
		a.log.Error("idempotency record not saved", "err", ferr, "request_id", c.w.Header().Get(requestIDHeader))
	}
	return nil
}

// run calls the handler; a panic becomes a 500.
func (a *API) run(c *call) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return c.rt.handle(c)
}

// readBody reads a mutating call's body: at most MaxBody bytes (413), arriving within
// BodyTimeout (408), JSON when there is one (415); an import's file may be larger and
// slower (MaxImportBody, ImportBodyTimeout).
func (a *API) readBody(c *call) error {
	maxBody, timeout := a.cfg.MaxBody, a.cfg.BodyTimeout
	if c.rt.path == importsPath {
		maxBody, timeout = a.cfg.MaxImportBody, a.cfg.ImportBodyTimeout
	}
	if c.r.ContentLength > maxBody {
		c.w.Header().Set("Connection", "close")
		_ = c.r.Body.Close()
		return problem("body-too-large", fmt.Sprintf("the body has %d bytes; at most %d are accepted", c.r.ContentLength, maxBody))
	}
	rc := http.NewResponseController(c.w.(*buffer).under)
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(io.LimitReader(c.r.Body, maxBody+1))
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	} else {
		// The rest of the body will not be read: close the connection after the answer
		// rather than wait for it.
		c.w.Header().Set("Connection", "close")
		_ = c.r.Body.Close()
	}
	if err != nil {
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return problem("body-timeout", fmt.Sprintf("the body did not arrive within %s", timeout))
		}
		return problem("invalid-body", "the body could not be read: "+err.Error())
	}
	if int64(len(body)) > maxBody {
		c.w.Header().Set("Connection", "close")
		_ = c.r.Body.Close()
		return problem("body-too-large", fmt.Sprintf("the body is larger than %d bytes", maxBody))
	}
	if len(body) > 0 {
		mt, _, err := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && !rawBodyAllowed(c.rt, mt)) {
			return problem("unsupported-media-type", "send the body as Content-Type: application/json",
				FieldProblem{Header: "Content-Type", Detail: "want application/json"})
		}
	}
	c.body = body
	return nil
}

// audit publishes the record of a mutating call before its answer leaves. If Kafka
// refuses it the answer still goes (what it did is done) and the failure is logged and
// counted (herald_api_audit_failures_total).
func (a *API) audit(c *call, buf *buffer, start time.Time) {
	rec := events.APICall{ID: "ac_" + newRequestID()[4:], Time: start.UTC(), RequestID: buf.Header().Get(requestIDHeader),
		KeyID: c.key.ID, KeyName: c.key.Name, Role: string(c.key.Role), Method: c.rt.method, Route: c.rt.pattern(),
		ResourceID: c.resource, Status: buf.status, IdempotencyKey: c.r.Header.Get("Idempotency-Key"), Replayed: buf.replayed,
		DurationMS: float64(time.Since(start).Microseconds()) / 1000}
	if len(rec.IdempotencyKey) > maxIdempotencyKey {
		rec.IdempotencyKey = rec.IdempotencyKey[:maxIdempotencyKey]
	}
	b, err := rec.Marshal()
	if err == nil {
		ctx, cancel := context.WithTimeout(c.r.Context(), 10*time.Second)
		err = a.cfg.Audit.WriteMessages(ctx, kafka.Message{Key: []byte(c.key.ID), Value: b})
		cancel()
	}
	if err != nil {
		a.m.audit.Inc()
		a.log.Error("API audit record not published", "err", err, "request_id", rec.RequestID, "route", rec.Route, "key_id", rec.KeyID, "status", rec.Status)
	}
}
