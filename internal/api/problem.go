package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
)

// Problem is an error answer, application/problem+json (RFC 9457): Type names the kind
// of problem (urn:herald:problem:<slug>, listed in the README), Title says it in words,
// Detail says what was wrong with this request, Errors points at the offending values.
type Problem struct {
	Type      string         `json:"type"`
	Title     string         `json:"title"`
	Status    int            `json:"status"`
	Detail    string         `json:"detail,omitempty"`
	Instance  string         `json:"instance,omitempty"` // the request's path
	RequestID string         `json:"request_id,omitempty"`
	Errors    []FieldProblem `json:"errors"`

	retryAfter int    // seconds, for 429 and 409 in-use
	allow      string // for 405
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

const problemPrefix = "urn:herald:problem:"

// problemKinds are the problem types: slug → status and title.
var problemKinds = map[string]struct {
	status int
	title  string
}{
	"not-found":              {http.StatusNotFound, "Not found"},
	"method-not-allowed":     {http.StatusMethodNotAllowed, "Method not allowed"},
	"unauthorized":           {http.StatusUnauthorized, "Missing or invalid API key"},
	"forbidden":              {http.StatusForbidden, "The API key's role does not allow this"},
	"csrf":                   {http.StatusForbidden, "The session's CSRF token is missing or wrong, or the request came from another origin"},
	"rate-limited":           {http.StatusTooManyRequests, "Too many requests for this API key"},
	"invalid-body":           {http.StatusBadRequest, "The request body is not valid"},
	"invalid-parameter":      {http.StatusBadRequest, "A parameter is not valid"},
	"unsupported-media-type": {http.StatusUnsupportedMediaType, "The request body must be application/json"},
	"body-too-large":         {http.StatusRequestEntityTooLarge, "The request body is too large"},
	"body-timeout":           {http.StatusRequestTimeout, "The request body did not arrive in time"},
	"validation":             {http.StatusUnprocessableEntity, "The request is not valid"},
	"conflict":               {http.StatusConflict, "The request conflicts with the resource's state"},
	"idempotency-key-in-use": {http.StatusConflict, "A request with this Idempotency-Key is in progress"},
	"idempotency-key-reused": {http.StatusUnprocessableEntity, "This Idempotency-Key was used with another request"},
	"internal":               {http.StatusInternalServerError, "Internal error"},
}

func problem(slug, detail string, errs ...FieldProblem) *Problem {
	k, ok := problemKinds[slug]
	if !ok {
		panic("api: unknown problem " + slug)
	}
	if errs == nil {
		errs = []FieldProblem{}
	}
	return &Problem{Type: problemPrefix + slug, Title: k.title, Status: k.status, Detail: detail, Errors: errs}
}

func paramProblem(param, detail string) *Problem {
	return problem("invalid-parameter", param+": "+detail, FieldProblem{Parameter: param, Detail: detail})
}

// problemOf maps what a handler returned to the answer: domain errors by their kind,
// anything unknown to 500 without its text (it may name internals; the log has it).
func problemOf(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var fe *app.FieldError
	var se *dispatcher.StateError
	switch {
	case errors.Is(err, segments.ErrIdentityConflict):
		ptr := ""
		if errors.As(err, &fe) {
			ptr = "/" + fe.Field
		}
		return problem("conflict", err.Error(), FieldProblem{Pointer: ptr, Detail: err.Error()})
	case errors.As(err, &fe):
		return problem("validation", fe.Err.Error(), FieldProblem{Pointer: "/" + fe.Field, Detail: fe.Err.Error()})
	case errors.As(err, &se):
		return problem("conflict", se.Error())
	case errors.Is(err, dispatcher.ErrNotFound), errors.Is(err, segments.ErrNotFound), errors.Is(err, templates.ErrNotFound),
		errors.Is(err, apikeys.ErrNotFound):
		return problem("not-found", err.Error())
	}
	return problem("internal", "")
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	q := *p
	q.Instance = r.URL.Path
	q.RequestID = w.Header().Get(requestIDHeader)
	if q.Errors == nil {
		q.Errors = []FieldProblem{}
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if q.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(q.retryAfter))
	}
	if q.allow != "" {
		h.Set("Allow", q.allow)
	}
	if q.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="herald"`)
	}
	b, _ := marshal(q)
	w.WriteHeader(q.Status)
	_, _ = w.Write(b)
}
