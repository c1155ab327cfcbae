package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"
)

// Idempotency keeps, per API key and Idempotency-Key, the fingerprint of the first
// request (method, route, path and body) and, once answered, its response, for
// IdempotencyTTL. A retry with the same key and request gets the stored response; the
// same key with another request is refused (422); a retry while the first is still
// running is refused (409). A first request that failed with a 5xx is forgotten, so its
// retry runs again.
//
//	P idem:{KEYID}:SHA256(Idempotency-Key)   HASH: fp, state (pending, done), status,
//	                                         headers (JSON), body
type idempotency struct {
	rdb     redis.UniversalClient
	prefix  string
	ttl     time.Duration // of a stored response (24 h)
	pending time.Duration // of a request in progress: a process that died mid-request frees its key after this
}

// IdempotencyTTL is how long a response is kept for replays.
const IdempotencyTTL = 24 * time.Hour

const maxIdempotencyKey = 255

type storedResponse struct {
	Status   int               `json:"status"`
	Resource string            `json:"resource,omitempty"` // for the replay's audit record
	Headers  map[string]string `json:"headers"`
	Body     []byte            `json:"body"`
}

// idemState is what begin found.
type idemState int

const (
	idemNew      idemState = iota // this request runs; save or release it afterwards
	idemReplay                    // the stored response answers it
	idemPending                   // the first request with this key is still running
	idemMismatch                  // the key was used with another request
)

func (s *idempotency) key(keyID, idemKey string) string {
	sum := sha256.Sum256([]byte(idemKey))
	return s.prefix + "idem:{" + keyID + "}:" + hex.EncodeToString(sum[:])
}

func fingerprint(method, route, path string, body []byte) string {
	h := sha256.New()
	for _, p := range []string{method, route, path} {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// beginScript claims an Idempotency-Key. KEYS[1]; ARGV: fingerprint, pending ttl ms.
// Returns {'new'} or {state, fp, response}.
var beginScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
local v = redis.call('HMGET', KEYS[1], 'state', 'fp', 'response')
return {v[1] or '', v[2] or '', v[3] or ''}
`)

func (s *idempotency) begin(ctx context.Context, keyID, idemKey, fp string) (idemState, *storedResponse, error) {
	res, err := beginScript.Run(ctx, s.rdb, []string{s.key(keyID, idemKey)}, fp, s.pending.Milliseconds()).StringSlice()
	if err != nil {
		return 0, nil, fmt.Errorf("idempotency: %w", err)
	}
	if res[0] == "new" {
		return idemNew, nil, nil
	}
	if len(res) < 3 || res[1] != fp {
		return idemMismatch, nil, nil
	}
	if res[0] != "done" {
		return idemPending, nil, nil
	}
	var sr storedResponse
	if err := json.Unmarshal([]byte(res[2]), &sr); err != nil {
		return 0, nil, fmt.Errorf("idempotency: stored response: %w", err)
	}
	return idemReplay, &sr, nil
}

// saveScript stores the response of the request that holds the key. KEYS[1]; ARGV:
// fingerprint, response, ttl ms.
var saveScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'response', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// releaseScript forgets a key whose request failed (5xx), if it still holds it.
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') == 'pending' then
  redis.call('DEL', KEYS[1])
end
return 1
`)

func (s *idempotency) finish(ctx context.Context, keyID, idemKey, fp string, status int, h http.Header, body []byte, resource string) error {
	k := s.key(keyID, idemKey)
	if status >= 500 {
		return releaseScript.Run(ctx, s.rdb, []string{k}, fp).Err()
	}
	sr := storedResponse{Status: status, Resource: resource, Headers: map[string]string{}, Body: body}
	for _, name := range []string{"Content-Type", "Location"} {
		if v := h.Get(name); v != "" {
			sr.Headers[name] = v
		}
	}
	b, err := json.Marshal(sr)
	if err != nil {
		return err
	}
	return saveScript.Run(ctx, s.rdb, []string{k}, fp, b, s.ttl.Milliseconds()).Err()
}
