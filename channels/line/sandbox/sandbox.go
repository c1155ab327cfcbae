// Package sandbox is a local LINE Messaging API that behaves like LINE's: push and
// multicast with the bearer channel access token and LINE's JSON shapes, X-Line-Retry-Key
// semantics (a key accepted within 24 h answers 409 with x-line-accepted-request-id and
// sends nothing again), rate limits per endpoint (push 2,000 req/s, multicast 200 req/s:
// 429 "Too Many Requests", nothing in the request sent), the monthly message quota (429
// "You have reached your monthly limit.") with the quota endpoints, the 2 MB body limit
// (413), invalid user ids (400 naming the "to" property), and users who blocked the
// account (LINE answers 200 and delivers nothing). It records the truth: every recipient
// of every accepted request, and whether it was delivered.
//
// It also plays LINE's webhook side: Follow, Unfollow and Message post signed events
// (X-Line-Signature under the channel secret) to Config.WebhookURL, and Redeliver posts
// one again with deliveryContext.isRedelivery.
//
// HTTP API (Handler):
//
//	POST /v2/bot/message/push                 {"to","messages"}  → {"sentMessages":[…]}
//	POST /v2/bot/message/multicast            {"to":[…],"messages"} → {}
//	GET  /v2/bot/message/quota                {"type":"limited","value":N} or {"type":"none"}
//	GET  /v2/bot/message/quota/consumption    {"totalUsage":N}
//	GET  /_sandbox/records                    accepted recipients
//	GET  /_sandbox/stats                      counters
//	POST /_sandbox/follow|unfollow|message    {"user_id","text"}: a user acts
//
// Choices where LINE is loose: each endpoint's limit is a token bucket on Config.Now
// holding one second's worth (as the WhatsApp sandbox's throughput), taken by the
// requests admitted (a refused one takes no token); the quota counts one message per
// recipient a request delivers to (LINE charges no message to a user who blocked the
// account); a refused request consumes no retry key.
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-dev/herald/channels/line"
)

// Config configures a Sandbox. Zero values take the defaults noted.
type Config struct {
	Token         string // the channel access token (Bearer); "" accepts any
	ChannelSecret string // signs webhooks; "" leaves them unsigned
	BotUserID     string // the webhook's destination (default derived from the token)
	WebhookURL    string // where events are POSTed; "" → none sent
	// PushRate and MulticastRate are the endpoints' limits in requests per second
	// (defaults line.PushRate and line.MulticastRate).
	PushRate, MulticastRate int
	// MonthlyQuota is the messages a month the plan allows (0: unlimited).
	MonthlyQuota int64
	// BlockedRate is the share of users, deterministic by user id (Blocked), who
	// blocked the account: sends to them are answered 200 and not delivered.
	BlockedRate float64
	// Fault, when set, is asked before each send request (after authentication) with the
	// endpoint's path and the recipients: a non-zero Status answers with it and Message.
	Fault   func(path string, to []string) Fault
	Latency time.Duration    // added to every send request
	Now     func() time.Time // the clock of rate windows, retry keys, months (default time.Now)
	Client  *http.Client     // posts webhooks (default 10 s timeout)
}

// Fault is an answer forced by Config.Fault.
type Fault struct {
	Status  int
	Message string
	// Accept: the request is accepted (recorded, key consumed) and the answer is
	// still the fault: a 500 or a timeout after LINE took it.
	Accept bool
}

// Record is one recipient of an accepted request.
type Record struct {
	RequestID  string            `json:"request_id"`
	Endpoint   string            `json:"endpoint"` // push or multicast
	RetryKey   string            `json:"retry_key,omitempty"`
	To         string            `json:"to"`
	Index      int               `json:"index"`       // in the request's "to"
	MessageIDs []string          `json:"message_ids"` // one per message object
	Messages   []json.RawMessage `json:"messages"`
	Delivered  bool              `json:"delivered"` // false: the user blocked the account
	At         time.Time         `json:"at"`
}

// ProviderID is the id Herald's adapter reports for this recipient: the first message id
// of a push, "<request id>:<index>" of a multicast.
func (r Record) ProviderID() string {
	if r.Endpoint == "push" && len(r.MessageIDs) > 0 {
		return r.MessageIDs[0]
	}
	return r.RequestID + ":" + strconv.Itoa(r.Index)
}

// Stats are the sandbox's counters.
type Stats struct {
	Requests   int64            `json:"requests"` // authenticated send requests
	Accepted   int64            `json:"accepted"` // requests accepted
	Recipients int64            `json:"recipients"`
	Delivered  int64            `json:"delivered"`
	Duplicates int64            `json:"duplicates"` // 409: the retry key was accepted before
	Rejected   map[string]int64 `json:"rejected"`   // by HTTP status and reason ("429 rate")
	Webhooks   int64            `json:"webhooks"`   // events posted
	Usage      int64            `json:"usage"`      // messages this month
}

type accepted struct {
	requestID string
	sent      []line.SentMessage
	at        time.Time
}

// Sandbox is a local LINE Messaging API. Serve Handler.
type Sandbox struct {
	cfg Config
	now func() time.Time
	mux *http.ServeMux
	hc  *http.Client
	bot string

	seq      atomic.Uint64
	idPrefix string

	mu      sync.Mutex
	keys    map[string]accepted // retry key → the accepted request
	buckets map[string]*bucket  // endpoint → its rate limit
	month   string              // "2026-03" in JST
	usage   int64
	records []Record
	blocked map[string]bool // users who unfollowed (true) or followed (false) through the sandbox
	stats   Stats

	eventsMu sync.Mutex
	events   map[string][]byte // webhook event id → the event, for Redeliver
}

// New returns a sandbox for cfg.
func New(cfg Config) *Sandbox {
	if cfg.PushRate <= 0 {
		cfg.PushRate = line.PushRate
	}
	if cfg.MulticastRate <= 0 {
		cfg.MulticastRate = line.MulticastRate
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	bot := cfg.BotUserID
	if bot == "" {
		bot = UserID("bot:" + cfg.Token)
	}
	var p [4]byte
	_, _ = rand.Read(p[:])
	s := &Sandbox{cfg: cfg, now: cfg.Now, hc: cfg.Client, bot: bot, idPrefix: hex.EncodeToString(p[:]),
		keys: map[string]accepted{}, buckets: map[string]*bucket{}, blocked: map[string]bool{},
		stats: Stats{Rejected: map[string]int64{}}, events: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+line.PushPath, s.send("push"))
	mux.HandleFunc("POST "+line.MulticastPath, s.send("multicast"))
	mux.HandleFunc("GET "+line.QuotaPath, s.quota)
	mux.HandleFunc("GET "+line.ConsumedPath, s.consumption)
	mux.HandleFunc("GET /_sandbox/records", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Records()) })
	mux.HandleFunc("GET /_sandbox/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
	for _, kind := range []string{"follow", "unfollow", "message"} {
		mux.HandleFunc("POST /_sandbox/"+kind, s.simulate(kind))
	}
	s.mux = mux
	return s
}

// Handler serves the Messaging API.
func (s *Sandbox) Handler() http.Handler { return s.mux }

// BotUserID is the bot's user id (webhooks' destination).
func (s *Sandbox) BotUserID() string { return s.bot }

// UserID is a LINE-shaped user id derived from seed ("U" and 32 hex digits).
func UserID(seed string) string {
	sum := sha256.Sum256([]byte("line-user\x00" + seed))
	return "U" + hex.EncodeToString(sum[:16])
}

// Blocked reports whether user id is among the share rate of users who blocked the
// account (deterministic by id).
func Blocked(id string, rate float64) bool {
	if rate <= 0 {
		return false
	}
	sum := sha256.Sum256([]byte("blocked\x00" + id))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11)/(1<<53) < rate
}

// Records returns every recipient of every accepted request, in order.
func (s *Sandbox) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records...)
}

// Stats returns the counters.
func (s *Sandbox) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Rejected = make(map[string]int64, len(s.stats.Rejected))
	for k, v := range s.stats.Rejected {
		st.Rejected[k] = v
	}
	s.rollMonth(s.now())
	st.Usage = s.usage
	return st
}

// Saturate empties the endpoint's bucket ("push" or "multicast"): the next request is
// refused 429 until time passes on Config.Now.
func (s *Sandbox) Saturate(endpoint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucket(endpoint, s.now())
	b.tokens = 0
}

// bucket is a token bucket of rate tokens a second, holding at most rate.
type bucket struct {
	rate, tokens float64
	at           time.Time
}

// bucket returns the endpoint's bucket, refilled to now. Under s.mu.
func (s *Sandbox) bucket(endpoint string, now time.Time) *bucket {
	b := s.buckets[endpoint]
	if b == nil {
		r := float64(s.limit(endpoint))
		b = &bucket{rate: r, tokens: r, at: now}
		s.buckets[endpoint] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(b.rate, b.tokens+d.Seconds()*b.rate)
		b.at = now
	}
	return b
}

func (s *Sandbox) limit(endpoint string) int {
	if endpoint == "push" {
		return s.cfg.PushRate
	}
	return s.cfg.MulticastRate
}

// isBlocked: the user blocked the account (by Config.BlockedRate, or an Unfollow).
func (s *Sandbox) isBlocked(id string) bool {
	if b, ok := s.blocked[id]; ok {
		return b
	}
	return Blocked(id, s.cfg.BlockedRate)
}

var retryKeyRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// rollMonth resets the usage when the month (JST) changed. Under s.mu.
func (s *Sandbox) rollMonth(now time.Time) {
	m := now.In(time.FixedZone("JST", 9*3600)).Format("2006-01")
	if m != s.month {
		s.month, s.usage = m, 0
	}
}

func (s *Sandbox) reject(w http.ResponseWriter, status int, reason, msg string, details ...line.Detail) {
	s.mu.Lock()
	s.stats.Rejected[strconv.Itoa(status)+" "+reason]++
	s.mu.Unlock()
	body := map[string]any{"message": msg}
	if len(details) > 0 {
		body["details"] = details
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Sandbox) newID() string {
	return fmt.Sprintf("%s%012d", s.idPrefix[:6], s.seq.Add(1))
}

func (s *Sandbox) authorized(r *http.Request) bool {
	return s.cfg.Token == "" || r.Header.Get("Authorization") == "Bearer "+s.cfg.Token
}

// sendRequest is a push or multicast body.
type sendRequest struct {
	To       json.RawMessage   `json:"to"`
	Messages []json.RawMessage `json:"messages"`
}

func (s *Sandbox) send(endpoint string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Latency > 0 {
			time.Sleep(s.cfg.Latency)
		}
		reqID := newRequestID()
		w.Header().Set("X-Line-Request-Id", reqID)
		if !s.authorized(r) {
			s.reject(w, http.StatusUnauthorized, "token", "Authentication failed due to the following reason: invalid token. Confirm that the access token in the authorization header is valid.")
			return
		}
		s.mu.Lock()
		s.stats.Requests++
		s.mu.Unlock()
		body, err := io.ReadAll(io.LimitReader(r.Body, line.MaxBody+1))
		if err != nil {
			s.reject(w, http.StatusBadRequest, "body", "The request body could not be read")
			return
		}
		if len(body) > line.MaxBody {
			s.reject(w, http.StatusRequestEntityTooLarge, "size", "Request Entity Too Large")
			return
		}
		key := r.Header.Get(line.RetryKeyHeader)
		if key != "" && !retryKeyRe.MatchString(key) {
			s.reject(w, http.StatusBadRequest, "retry_key", "The value of the X-Line-Retry-Key header is invalid")
			return
		}
		var req sendRequest
		if err := json.Unmarshal(body, &req); err != nil {
			s.reject(w, http.StatusBadRequest, "json", "The request body has 1 error(s)", line.Detail{Message: "malformed JSON", Property: ""})
			return
		}
		var to []string
		var details []line.Detail
		if endpoint == "push" {
			var one string
			if json.Unmarshal(req.To, &one) != nil || !line.ValidUserID(one) {
				details = append(details, line.Detail{Message: "The property, 'to', in the request body is invalid", Property: "to"})
			}
			to = []string{one}
		} else {
			if json.Unmarshal(req.To, &to) != nil || len(to) == 0 || len(to) > line.MaxMulticast {
				s.reject(w, http.StatusBadRequest, "to", "The request body has 1 error(s)", line.Detail{Message: "Size must be between 1 and 500", Property: "to"})
				return
			}
			for i, id := range to {
				if !line.ValidUserID(id) {
					details = append(details, line.Detail{Message: "Invalid user id", Property: "to[" + strconv.Itoa(i) + "]"})
				}
			}
		}
		details = append(details, checkMessages(req.Messages)...)
		if len(details) > 0 {
			s.reject(w, http.StatusBadRequest, "invalid", fmt.Sprintf("The request body has %d error(s)", len(details)), details...)
			return
		}
		var fault Fault
		if s.cfg.Fault != nil {
			fault = s.cfg.Fault(r.URL.Path, to)
		}
		if fault.Status != 0 && !fault.Accept {
			s.reject(w, fault.Status, "fault", fault.Message)
			return
		}
		now := s.now()
		s.mu.Lock()
		// The retry key first: a retry of an accepted request is answered 409 whatever
		// the limits say now.
		if key != "" {
			if a, ok := s.keys[key]; ok && now.Sub(a.at) < 24*time.Hour {
				s.stats.Duplicates++
				s.mu.Unlock()
				w.Header().Set(line.AcceptedRequestIDHeader, a.requestID)
				body := map[string]any{"message": "The retry key is already accepted"}
				if endpoint == "push" {
					body["sentMessages"] = a.sent
				}
				writeJSON(w, http.StatusConflict, body)
				return
			}
		}
		bk := s.bucket(endpoint, now)
		if bk.tokens < 1 {
			s.stats.Rejected["429 rate"]++
			s.mu.Unlock()
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"message": "Too Many Requests"})
			return
		}
		s.rollMonth(now)
		deliver := 0
		for _, id := range to {
			if !s.isBlocked(id) {
				deliver++
			}
		}
		bk.tokens--
		if s.cfg.MonthlyQuota > 0 && s.usage+int64(deliver) > s.cfg.MonthlyQuota {
			s.stats.Rejected["429 monthly"]++
			s.mu.Unlock()
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"message": line.MonthlyLimitMessage})
			return
		}
		s.usage += int64(deliver)
		s.stats.Accepted++
		var sent []line.SentMessage
		for ri, id := range to {
			ids := make([]string, len(req.Messages))
			for mi := range req.Messages {
				ids[mi] = s.newID()
				if endpoint == "push" {
					sent = append(sent, line.SentMessage{ID: ids[mi], QuoteToken: "q" + ids[mi]})
				}
			}
			d := !s.isBlocked(id)
			s.records = append(s.records, Record{RequestID: reqID, Endpoint: endpoint, RetryKey: key, To: id, Index: ri,
				MessageIDs: ids, Messages: req.Messages, Delivered: d, At: now})
			s.stats.Recipients++
			if d {
				s.stats.Delivered++
			}
		}
		if key != "" {
			s.keys[key] = accepted{requestID: reqID, sent: sent, at: now}
		}
		s.mu.Unlock()
		if fault.Status != 0 {
			writeJSON(w, fault.Status, map[string]any{"message": fault.Message})
			return
		}
		if endpoint == "push" {
			writeJSON(w, http.StatusOK, map[string]any{"sentMessages": sent})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// checkMessages validates message objects as LINE does (the types Herald sends).
func checkMessages(msgs []json.RawMessage) []line.Detail {
	if len(msgs) == 0 || len(msgs) > line.MaxMessages {
		return []line.Detail{{Message: "Size must be between 1 and 5", Property: "messages"}}
	}
	var out []line.Detail
	for i, raw := range msgs {
		var m struct {
			Type     string          `json:"type"`
			Text     *string         `json:"text"`
			AltText  string          `json:"altText"`
			Template json.RawMessage `json:"template"`
			Contents json.RawMessage `json:"contents"`
		}
		p := "messages[" + strconv.Itoa(i) + "]"
		if json.Unmarshal(raw, &m) != nil {
			out = append(out, line.Detail{Message: "malformed message object", Property: p})
			continue
		}
		switch m.Type {
		case "text":
			if m.Text == nil || *m.Text == "" || len([]rune(*m.Text)) > line.MaxTextChars {
				out = append(out, line.Detail{Message: "Length must be between 1 and 5000", Property: p + ".text"})
			}
		case "template":
			if m.AltText == "" || len([]rune(m.AltText)) > 400 || len(m.Template) == 0 {
				out = append(out, line.Detail{Message: "altText and template are required (altText at most 400)", Property: p})
			}
		case "flex":
			if m.AltText == "" || len([]rune(m.AltText)) > 1500 || len(m.Contents) == 0 {
				out = append(out, line.Detail{Message: "altText and contents are required (altText at most 1500)", Property: p})
			}
		default:
			out = append(out, line.Detail{Message: "unsupported message type", Property: p + ".type"})
		}
	}
	return out
}

func (s *Sandbox) quota(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.reject(w, http.StatusUnauthorized, "token", "Authentication failed")
		return
	}
	if s.cfg.MonthlyQuota <= 0 {
		writeJSON(w, http.StatusOK, map[string]any{"type": "none"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"type": "limited", "value": s.cfg.MonthlyQuota})
}

func (s *Sandbox) consumption(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.reject(w, http.StatusUnauthorized, "token", "Authentication failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"totalUsage": s.Stats().Usage})
}

// Follow posts a follow event for user (they added the account as a friend; sends reach
// them again) and returns its webhookEventId.
func (s *Sandbox) Follow(ctx context.Context, user string) (string, error) {
	s.setBlocked(user, false)
	return s.post(ctx, map[string]any{"type": "follow", "follow": map[string]any{"isUnblocked": false}}, user)
}

// Unfollow posts an unfollow event for user (they blocked the account: sends to them are
// answered 200 and not delivered from now on).
func (s *Sandbox) Unfollow(ctx context.Context, user string) (string, error) {
	s.setBlocked(user, true)
	return s.post(ctx, map[string]any{"type": "unfollow"}, user)
}

// Message posts a text message event from user, quoting quoted (a message id; "" for none).
func (s *Sandbox) Message(ctx context.Context, user, text, quoted string) (string, error) {
	m := map[string]any{"id": s.newID(), "type": "text", "text": text, "quoteToken": "q"}
	if quoted != "" {
		m["quotedMessageId"] = quoted
	}
	return s.post(ctx, map[string]any{"type": "message", "replyToken": newRequestID(), "message": m}, user)
}

func (s *Sandbox) setBlocked(user string, b bool) {
	s.mu.Lock()
	s.blocked[user] = b
	s.mu.Unlock()
}

func (s *Sandbox) post(ctx context.Context, ev map[string]any, user string) (string, error) {
	id := fmt.Sprintf("01SANDBOX%s%013d", s.idPrefix, s.seq.Add(1))
	ev["mode"] = "active"
	ev["timestamp"] = s.now().UnixMilli()
	ev["source"] = map[string]any{"type": "user", "userId": user}
	ev["webhookEventId"] = id
	ev["deliveryContext"] = map[string]any{"isRedelivery": false}
	b, _ := json.Marshal(ev)
	s.eventsMu.Lock()
	s.events[id] = b
	s.eventsMu.Unlock()
	return id, s.deliver(ctx, b)
}

// Redeliver posts event id again, marked as a redelivery.
func (s *Sandbox) Redeliver(ctx context.Context, id string) error {
	s.eventsMu.Lock()
	b, ok := s.events[id]
	s.eventsMu.Unlock()
	if !ok {
		return fmt.Errorf("line sandbox: no event %s", id)
	}
	var ev map[string]any
	_ = json.Unmarshal(b, &ev)
	ev["deliveryContext"] = map[string]any{"isRedelivery": true}
	b, _ = json.Marshal(ev)
	return s.deliver(ctx, b)
}

func (s *Sandbox) deliver(ctx context.Context, event []byte) error {
	if s.cfg.WebhookURL == "" {
		return nil
	}
	var body bytes.Buffer
	body.WriteString(`{"destination":"` + s.bot + `","events":[`)
	body.Write(event)
	body.WriteString(`]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body.Bytes()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.ChannelSecret != "" {
		req.Header.Set(line.SignatureHeader, line.Sign(s.cfg.ChannelSecret, body.Bytes()))
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("line sandbox: post webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.mu.Lock()
	s.stats.Webhooks++
	s.mu.Unlock()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("line sandbox: webhook answered %s", resp.Status)
	}
	return nil
}

// simulate serves POST /_sandbox/follow|unfollow|message {"user_id","text"}.
func (s *Sandbox) simulate(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			UserID string `json:"user_id"`
			Text   string `json:"text"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil || !line.ValidUserID(in.UserID) {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": "want {\"user_id\": \"U…\", \"text\": \"…\"}"})
			return
		}
		var id string
		var err error
		switch kind {
		case "follow":
			id, err = s.Follow(r.Context(), in.UserID)
		case "unfollow":
			id, err = s.Unfollow(r.Context(), in.UserID)
		default:
			id, err = s.Message(r.Context(), in.UserID, in.Text, "")
		}
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]any{"message": err.Error(), "webhook_event_id": id})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"webhook_event_id": id})
	}
}
