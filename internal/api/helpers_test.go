package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestMain(m *testing.M) {
	// Progress streams are validated as the text they are.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.FileBodyDecoder)
	testenv.Main(m)
}

// loadSpec loads the served contract with kin-openapi (which validates OpenAPI 3.1
// documents with its JSON Schema 2020-12 validator) and a router on it.
func loadSpec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	b, err := SpecJSON()
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	doc.Servers = nil // match requests to any test server
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// env is the API on this test's own Redis prefix, Kafka and ClickHouse database, with
// a key per role.
type env struct {
	t      testing.TB
	ctx    context.Context
	d      *app.Deps
	comp   *app.Components
	api    *API
	base   string // the API's origin
	router routers.Router
	keys   map[string]string // role name (and marketer+launch, revoked) → secret
	ids    map[string]string // the same → key id
}

type envOpt func(*Config)

func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	_, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)
	brokers, topics := testenv.Kafka(t, 2)
	cfg := app.Config{KafkaBrokers: brokers, TopicPrefix: strings.TrimSuffix(topics.Outbound, "outbound"),
		RedisURL: "redis://" + testenv.RedisAddr(t) + "/0", Prefix: prefix, ClickHouseDSN: testenv.ClickHouseDSN(t, db), Partitions: 2}
	d := app.NewDeps(cfg)
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	if _, err := app.Migrate(ctx, d); err != nil {
		t.Fatal(err)
	}
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	rdb, _ := d.Redis()
	c := Config{Deps: d, Components: comp, Redis: rdb, Prefix: prefix, Audit: d.Writer(d.Topics.Audit), ClickHouse: d.ClickHouse,
		Rate: 1000, Burst: 1000, MaxBody: 64 << 10, BodyTimeout: 2 * time.Second, ProgressEvery: 50 * time.Millisecond}
	for _, o := range opts {
		o(&c)
	}
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, d: d, comp: comp, api: a, keys: map[string]string{}, ids: map[string]string{}}
	_, e.router = loadSpec(t)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	e.base = srv.URL
	e.addKeys()
	return e
}

// addKeys makes a key per role, a marketer's that may launch, and a revoked one.
func (e *env) addKeys() {
	e.t.Helper()
	for _, k := range []struct {
		name   string
		role   apikeys.Role
		launch bool
	}{{"admin", apikeys.Admin, false}, {"marketer", apikeys.Marketer, false}, {"launcher", apikeys.Marketer, true},
		{"analyst", apikeys.Analyst, false}, {"auditor", apikeys.Auditor, false}, {"revoked", apikeys.Admin, false}} {
		e.addKey(k.name, k.role, k.launch, 0)
	}
	if _, err := e.comp.Keys.Revoke(e.ctx, "revoked"); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) addKey(name string, role apikeys.Role, launch bool, rate float64) string {
	e.t.Helper()
	k, err := e.comp.Keys.Create(e.ctx, apikeys.Spec{Name: name, Role: role, CanLaunch: launch, RatePerSecond: rate})
	if err != nil {
		e.t.Fatal(err)
	}
	e.keys[name], e.ids[name] = k.Secret, k.ID
	return k.Secret
}

// req is one request a test makes.
type req struct {
	method, path string
	key          string // a role's name in env.keys, "" for none, or "raw:<Authorization value>"
	body         any    // JSON-encoded unless []byte or string
	header       map[string]string
	// invalid marks a request that breaks the contract on purpose (bad input): only
	// its response is validated against the spec.
	invalid bool
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d %s: %v", r.status, r.body, err)
	}
}

func (r resp) problem(t testing.TB) Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json: %s", r.status, ct, r.body)
	}
	var p Problem
	r.decode(t, &p)
	return p
}

// do sends a request to the API and validates it (unless marked invalid) and its
// response against the OpenAPI document.
func (e *env) do(q req) resp {
	e.t.Helper()
	var body []byte
	switch b := q.body.(type) {
	case nil:
	case []byte:
		body = b
	case string:
		body = []byte(b)
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			e.t.Fatal(err)
		}
	}
	hr, err := http.NewRequestWithContext(e.ctx, q.method, e.base+q.path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	switch {
	case strings.HasPrefix(q.key, "raw:"):
		hr.Header.Set("Authorization", strings.TrimPrefix(q.key, "raw:"))
	case q.key != "":
		secret, ok := e.keys[q.key]
		if !ok {
			e.t.Fatalf("no key %q", q.key)
		}
		hr.Header.Set("Authorization", "Bearer "+secret)
	}
	for k, v := range q.header {
		hr.Header.Set(k, v)
	}
	route, params, rerr := e.router.FindRoute(hr)
	var in *openapi3filter.RequestValidationInput
	if rerr == nil {
		in = &openapi3filter.RequestValidationInput{Request: hr, PathParams: params, Route: route,
			// SkipSettingDefaults: the server gets the body as sent (the spec's defaults are its own to apply).
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, SkipSettingDefaults: true}}
		if !q.invalid {
			if err := openapi3filter.ValidateRequest(e.ctx, in); err != nil {
				e.t.Fatalf("%s %s: the request breaks the spec: %v", q.method, q.path, err)
			}
			hr.Body = io.NopCloser(bytes.NewReader(body)) // ValidateRequest read it
		}
	} else if !q.invalid {
		e.t.Fatalf("%s %s: no operation in the spec: %v", q.method, q.path, rerr)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	defer res.Body.Close()
	rb, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.Header.Get("X-Request-Id") == "" {
		e.t.Errorf("%s %s: no X-Request-Id", q.method, q.path)
	}
	if in != nil {
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
			Options: in.Options}
		out.SetBodyBytes(rb)
		if err := openapi3filter.ValidateResponse(e.ctx, out); err != nil {
			e.t.Fatalf("%s %s → %d: the response breaks the spec: %v\n%s", q.method, q.path, res.StatusCode, err, rb)
		}
	}
	return resp{status: res.StatusCode, header: res.Header, body: rb}
}

// storeDigest is a digest of every Redis key of the test's prefix and its value,
// leaving out the API's own bookkeeping (rate limits, idempotency records, keys' last
// use): equal digests mean a request changed nothing.
func (e *env) storeDigest() string {
	e.t.Helper()
	rdb, _ := e.d.Redis()
	var keys []string
	iter := rdb.Scan(e.ctx, 0, e.d.Cfg.Prefix+"*", 1000).Iterator()
	for iter.Next(e.ctx) {
		k := iter.Val()
		if strings.Contains(k, "ratelimit:") || strings.Contains(k, "idem:") || strings.Contains(k, "{apikeys}") {
			continue
		}
		keys = append(keys, k)
	}
	if err := iter.Err(); err != nil {
		e.t.Fatal(err)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		v, err := rdb.Dump(e.ctx, k).Result()
		if err != nil {
			e.t.Fatal(err)
		}
		h.Write([]byte(k + "\x00" + v + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// waitFor polls f until it is true or the time runs out.
func waitFor(t testing.TB, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
