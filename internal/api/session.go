package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/apikeys"
)

// Console sessions: a browser exchanges an API key for a session cookie (POST
// /v1/session), so the key is not kept in the page's JavaScript and EventSource (which
// sends no Authorization header) can follow progress streams. The API keeps accepting
// Authorization: Bearer keys; a request with that header is authenticated by it alone.
//
// The cookie (SessionCookie) holds a random 256-bit session id; Redis holds only its
// SHA-256, with the key id and the CSRF token, under P{sessions}:s:<hex digest> with
// SessionTTL expiry. A request with the cookie acts as the key, with the key's role
// and rate limit, as long as the key is not revoked.
//
// CSRF: a cookie-authenticated request that changes something (any method but GET and
// HEAD, DELETE /v1/session included) must carry the session's token in the
// X-CSRF-Token header (the console reads it from POST or GET /v1/session: a page of
// another site cannot), and, when the browser sends an Origin header, come from the
// API's own origin. Otherwise 403 csrf. The cookie is SameSite=Strict too.

// SessionCookie is the console session cookie's name.
const SessionCookie = "herald_session"

// CSRFHeader carries a session's CSRF token on mutating cookie-authenticated requests.
const CSRFHeader = "X-CSRF-Token"

// SessionTTL is how long a session lasts after login.
const SessionTTL = 12 * time.Hour

// session is what a login answers and GET /v1/session repeats.
type session struct {
	KeyID       string               `json:"key_id"`
	KeyName     string               `json:"key_name"`
	Role        apikeys.Role         `json:"role"`
	Permissions []apikeys.Permission `json:"permissions"`
	CSRFToken   string               `json:"csrf_token"`
	ExpiresAt   time.Time            `json:"expires_at"`
}

func (a *API) sessionKey(digest string) string { return a.cfg.Prefix + "{sessions}:s:" + digest }

func sessionDigest(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// secureRequest reports whether the client reached us over TLS (directly, or through
// a proxy that says so).
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setSessionCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secureRequest(r)})
}

type loginRequest struct {
	APIKey string `json:"api_key"`
}

// login exchanges an API key for a session cookie (POST /v1/session).
func (a *API) login(c *call) error {
	start := time.Now()
	body, err := io.ReadAll(io.LimitReader(c.r.Body, 64<<10))
	if err != nil {
		return problem("invalid-body", "the body could not be read: "+err.Error())
	}
	if mt, _, err := mime.ParseMediaType(c.r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return problem("unsupported-media-type", "send the body as Content-Type: application/json",
			FieldProblem{Header: "Content-Type", Detail: "want application/json"})
	}
	c.body = body
	var req loginRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	k, err := a.cfg.Components.Keys.Authenticate(c.r.Context(), strings.TrimSpace(req.APIKey))
	if errors.Is(err, apikeys.ErrUnauthorized) {
		return problem("unauthorized", "the API key is unknown, malformed or revoked", FieldProblem{Pointer: "/api_key", Detail: "not a valid API key"})
	}
	if err != nil {
		return err
	}
	id, csrf := randomToken(), randomToken()
	exp := time.Now().Add(SessionTTL).UTC().Truncate(time.Second)
	key := a.sessionKey(sessionDigest(id))
	pipe := a.cfg.Redis.TxPipeline()
	pipe.HSet(c.r.Context(), key, "key_id", k.ID, "csrf", csrf, "expires", exp.Unix())
	pipe.ExpireAt(c.r.Context(), key, exp)
	if _, err := pipe.Exec(c.r.Context()); err != nil {
		return err
	}
	c.key, c.resource = k, k.ID
	setSessionCookie(c.w, c.r, id, int(SessionTTL/time.Second))
	c.w.Header().Set("Cache-Control", "no-store")
	a.audit(c, &buffer{under: c.w, status: http.StatusCreated}, start) // a session is a change: audited like one
	a.log.Info("console session opened", "key_id", k.ID, "role", k.Role, "request_id", c.w.Header().Get(requestIDHeader))
	return c.json(http.StatusCreated, session{KeyID: k.ID, KeyName: k.Name, Role: k.Role, Permissions: k.Permissions, CSRFToken: csrf, ExpiresAt: exp})
}

// sessionOf finds the request's session: its Redis key, key id, CSRF token and expiry.
func (a *API) sessionOf(ctx context.Context, r *http.Request) (rkey string, m map[string]string, p *Problem) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return "", nil, problem("unauthorized", "no session: log in (POST /v1/session) or send Authorization: Bearer <key>")
	}
	rkey = a.sessionKey(sessionDigest(ck.Value))
	m, err = a.cfg.Redis.HGetAll(ctx, rkey).Result()
	if err != nil {
		a.log.Error("session check failed", "err", err)
		return "", nil, problem("internal", "the session could not be checked; try again")
	}
	if m["key_id"] == "" {
		return "", nil, problem("unauthorized", "the session has expired or was closed: log in again")
	}
	return rkey, m, nil
}

// authenticateSession is authenticate for a request with the session cookie and no
// Authorization header: the session's key, if it is not revoked, after the CSRF check
// for mutating methods.
func (a *API) authenticateSession(r *http.Request) (apikeys.Key, *Problem) {
	_, m, p := a.sessionOf(r.Context(), r)
	if p != nil {
		return apikeys.Key{}, p
	}
	return a.sessionKeyOf(r, m)
}

// sessionKeyOf checks a session's CSRF token (for mutating methods) and returns its
// key, unless the key was revoked.
func (a *API) sessionKeyOf(r *http.Request, m map[string]string) (apikeys.Key, *Problem) {
	if p := checkCSRF(r, m["csrf"]); p != nil {
		return apikeys.Key{}, p
	}
	k, err := a.cfg.Components.Keys.Get(r.Context(), m["key_id"])
	if errors.Is(err, apikeys.ErrNotFound) || (err == nil && !k.Revoked.IsZero()) {
		return apikeys.Key{}, problem("unauthorized", "the session's API key was revoked: log in with another")
	}
	if err != nil {
		a.log.Error("session key check failed", "err", err)
		return apikeys.Key{}, problem("internal", "the session could not be checked; try again")
	}
	return k, nil
}

// checkCSRF refuses a mutating request without the session's token, or from another
// origin than the one it was sent to.
func checkCSRF(r *http.Request, token string) *Problem {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	got := r.Header.Get(CSRFHeader)
	if token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
		return problem("csrf", "a request authenticated by the session cookie that changes something must carry the session's csrf_token in "+CSRFHeader,
			FieldProblem{Header: CSRFHeader, Detail: "missing or not this session's token"})
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		host := r.Header.Get("X-Forwarded-Host")
		if host == "" {
			host = r.Host
		}
		if err != nil || !strings.EqualFold(u.Host, host) {
			return problem("csrf", "the request comes from another origin ("+o+") than the API's",
				FieldProblem{Header: "Origin", Detail: "not the API's origin"})
		}
	}
	return nil
}

// getSession answers the session's key, role, permissions and CSRF token (GET /v1/session).
func (a *API) getSession(c *call) error {
	_, m, p := a.sessionOf(c.r.Context(), c.r)
	if p != nil {
		return p
	}
	k, kp := a.sessionKeyOf(c.r, m)
	if kp != nil {
		return kp
	}
	exp := time.Now().Add(SessionTTL)
	if secs, err := strconv.ParseInt(m["expires"], 10, 64); err == nil && secs > 0 {
		exp = time.Unix(secs, 0)
	}
	c.w.Header().Set("Cache-Control", "no-store")
	return c.json(http.StatusOK, session{KeyID: k.ID, KeyName: k.Name, Role: k.Role, Permissions: k.Permissions, CSRFToken: m["csrf"], ExpiresAt: exp.UTC()})
}

// logout closes the session (DELETE /v1/session) and clears the cookie.
func (a *API) logout(c *call) error {
	rkey, m, p := a.sessionOf(c.r.Context(), c.r)
	if p != nil {
		return p
	}
	if p := checkCSRF(c.r, m["csrf"]); p != nil {
		return p
	}
	start := time.Now()
	if err := a.cfg.Redis.Del(c.r.Context(), rkey).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	setSessionCookie(c.w, c.r, "", -1)
	c.key = apikeys.Key{ID: m["key_id"]}
	if k, err := a.cfg.Components.Keys.Get(c.r.Context(), m["key_id"]); err == nil {
		c.key = k
	}
	c.resource = c.key.ID
	a.audit(c, &buffer{under: c.w, status: http.StatusNoContent}, start)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
