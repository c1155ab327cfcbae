package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/throttle"
)

// Sender is an account Herald sends from: for WhatsApp, a Cloud API phone number.
type Sender struct {
	ID            string  `json:"id"`      // Herald's id; for WhatsApp the phone-number id by default
	Channel       string  `json:"channel"` // whatsapp
	PhoneNumberID string  `json:"phone_number_id"`
	Token         string  `json:"-"`    // never printed
	Rate          float64 `json:"rate"` // messages per second
	Name          string  `json:"name,omitempty"`
	// Countries the sender serves when a campaign routes by country (ISO 3166 alpha-2).
	Countries []string `json:"countries"`
	// PerMinute caps sends in any 60 s window (0: only Rate).
	PerMinute int `json:"per_minute,omitempty"`
	// PerHour caps sends in any sliding hour (0: none): an email provider's hourly quota.
	// A sender takes a per-minute or a per-hour cap, not both.
	PerHour int `json:"per_hour,omitempty"`
	// Tier is the number's daily unique-recipient limit from Meta's messaging tiers
	// (250, 2000, 10000, 100000; 0: unlimited).
	Tier int `json:"tier,omitempty"`
	// WarmUp paces a new number in bursts of WarmUpBurst sends with pauses of WarmUpPause
	// (± a quarter of it) in between (0: off).
	// Settings are the channel's own settings of the sender (email: smtp_addr, from,
	// username…; sms: account_sid, from…); the secret (SMTP password, auth token) is
	// Token, never printed.
	Settings    map[string]string `json:"settings"`
	WarmUpBurst int               `json:"warm_up_burst,omitempty"`
	WarmUpPause time.Duration     `json:"-"` // printed as warm_up_pause_ms (json.go)
}

// Ref is the sender's provider-side identity, which keys what the provider keys by its
// sender (the 24h window, recipient back-off, country restrictions): the WhatsApp
// phone-number id, else Herald's id.
func (s Sender) Ref() string {
	if s.PhoneNumberID != "" {
		return s.PhoneNumberID
	}
	return s.ID
}

// Limits are the sender's pacing limits for the governor.
func (s Sender) Limits() throttle.Limits {
	l := throttle.Limits{Rate: s.Rate, PerMinute: s.PerMinute, PerHour: s.PerHour}
	if s.WarmUpBurst > 0 && s.WarmUpPause > 0 {
		l.WarmUp = throttle.WarmUp{Burst: s.WarmUpBurst, Pause: s.WarmUpPause, Jitter: s.WarmUpPause / 4}
	}
	return l
}

// ErrNotFound is returned for an unknown campaign or sender.
var ErrNotFound = errors.New("not found")

var (
	senderIDRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	countryRe  = regexp.MustCompile(`^[A-Z]{2}$`)
)

// requiredSettings are the settings each channel's senders must have ("a|b": either).
var requiredSettings = map[string][]string{
	"whatsapp": nil,
	"email":    {"smtp_addr", "from"},
	"sms":      {"account_sid", "from|messaging_service_sid"},
	// telegram: the bot token is Token; the setting paid_broadcast is optional.
	"telegram": {},
	// line: the channel access token is Token; channel_secret verifies webhooks.
	"line": {"channel_secret"},
}

// Validate checks a sender before it is saved.
func (s Sender) Validate() error {
	switch {
	case !senderIDRe.MatchString(s.ID):
		return fmt.Errorf("sender id %q: use 1-64 letters, digits, '_', '.', '-'", s.ID)
	case requiredSettings[s.Channel] == nil && s.Channel != "whatsapp":
		return fmt.Errorf("sender %s: channel %q: want whatsapp, email, sms, telegram or line", s.ID, s.Channel)
	case s.Channel == "sms" && s.Token == "":
		return fmt.Errorf("sender %s: the SMS provider's auth token is required (--token)", s.ID)
	case s.Channel == "telegram" && s.Token == "":
		return fmt.Errorf("sender %s: the Telegram bot token is required (--token)", s.ID)
	case s.Channel == "line" && s.Token == "":
		return fmt.Errorf("sender %s: the LINE channel access token is required (--token)", s.ID)
	case s.Channel == "whatsapp" && s.PhoneNumberID == "":
		return fmt.Errorf("sender %s: the WhatsApp phone-number id is required", s.ID)
	case s.Channel == "whatsapp" && s.Token == "":
		return fmt.Errorf("sender %s: an access token is required", s.ID)
	case !(s.Rate > 0 && s.Rate <= 10000):
		return fmt.Errorf("sender %s: rate must be between 0 and 10000 msg/s, got %v", s.ID, s.Rate)
	}
	if s.PerMinute < 0 || s.PerHour < 0 || s.Tier < 0 || s.WarmUpBurst < 0 || s.WarmUpPause < 0 {
		return fmt.Errorf("sender %s: per-minute and per-hour caps, tier and warm-up must not be negative", s.ID)
	}
	if err := s.Limits().Validate(); err != nil {
		return fmt.Errorf("sender %s: %w", s.ID, err)
	}
	for _, k := range requiredSettings[s.Channel] {
		if alt, _, either := strings.Cut(k, "|"); either {
			if s.Settings[alt] == "" && s.Settings[k[len(alt)+1:]] == "" {
				return fmt.Errorf("sender %s: %s needs the setting %s or %s (--setting KEY=VALUE)", s.ID, s.Channel, alt, k[len(alt)+1:])
			}
		} else if s.Settings[k] == "" {
			return fmt.Errorf("sender %s: %s needs the setting %s (--setting %s=…)", s.ID, s.Channel, k, k)
		}
	}
	if v, ok := s.Settings["paid_broadcast"]; ok && s.Channel == "telegram" {
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("sender %s: setting paid_broadcast %q: want true or false", s.ID, v)
		}
	}
	for _, cc := range s.Countries {
		if !countryRe.MatchString(cc) {
			return fmt.Errorf("sender %s: country %q: want an ISO 3166 alpha-2 code such as TH", s.ID, cc)
		}
	}
	return nil
}

// Senders stores senders in Redis and caches them for the worker.
type Senders struct {
	rdb    redis.UniversalClient
	prefix string

	mu    sync.Mutex
	cache map[string]cachedSender
}

type cachedSender struct {
	s  Sender
	at time.Time
}

// NewSenders returns the sender registry under prefix.
func NewSenders(rdb redis.UniversalClient, prefix string) *Senders {
	return &Senders{rdb: rdb, prefix: prefix, cache: map[string]cachedSender{}}
}

func (r *Senders) key(id string) string { return r.prefix + "sender:" + id }

// Put validates and saves (creates or replaces) a sender.
func (r *Senders) Put(ctx context.Context, s Sender) error {
	if err := s.Validate(); err != nil {
		return err
	}
	pipe := r.rdb.TxPipeline()
	pipe.HSet(ctx, r.key(s.ID), "channel", s.Channel, "phone_number_id", s.PhoneNumberID, "token", s.Token,
		"rate", strconv.FormatFloat(s.Rate, 'f', -1, 64), "name", s.Name, "countries", strings.Join(s.Countries, ","),
		"per_minute", s.PerMinute, "per_hour", s.PerHour, "tier", s.Tier, "warm_up_burst", s.WarmUpBurst, "warm_up_pause_ms", s.WarmUpPause.Milliseconds(),
		"settings", settingsJSON(s.Settings))
	pipe.SAdd(ctx, r.prefix+"senders", s.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("save sender %s: %w", s.ID, err)
	}
	return nil
}

// Get loads a sender from Redis.
func (r *Senders) Get(ctx context.Context, id string) (Sender, error) {
	m, err := r.rdb.HGetAll(ctx, r.key(id)).Result()
	if err != nil {
		return Sender{}, fmt.Errorf("load sender %s: %w", id, err)
	}
	if len(m) == 0 {
		return Sender{}, fmt.Errorf("sender %s: %w", id, ErrNotFound)
	}
	rate, _ := strconv.ParseFloat(m["rate"], 64)
	s := Sender{ID: id, Channel: m["channel"], PhoneNumberID: m["phone_number_id"], Token: m["token"], Rate: rate, Name: m["name"]}
	s.PerMinute, _ = strconv.Atoi(m["per_minute"])
	s.PerHour, _ = strconv.Atoi(m["per_hour"])
	s.Tier, _ = strconv.Atoi(m["tier"])
	s.WarmUpBurst, _ = strconv.Atoi(m["warm_up_burst"])
	if ms, err := strconv.ParseInt(m["warm_up_pause_ms"], 10, 64); err == nil {
		s.WarmUpPause = time.Duration(ms) * time.Millisecond
	}
	if m["countries"] != "" {
		s.Countries = strings.Split(m["countries"], ",")
	}
	s.Settings = map[string]string{}
	if v := m["settings"]; v != "" {
		if err := json.Unmarshal([]byte(v), &s.Settings); err != nil {
			return Sender{}, fmt.Errorf("sender %s: settings: %w", id, err)
		}
	}
	return s, nil
}

func settingsJSON(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// Cached returns a sender, from a cache refreshed every few seconds so that rate changes
// reach running workers without a Redis read per job.
func (r *Senders) Cached(ctx context.Context, id string) (Sender, error) {
	r.mu.Lock()
	c, ok := r.cache[id]
	r.mu.Unlock()
	if ok && time.Since(c.at) < 5*time.Second {
		return c.s, nil
	}
	s, err := r.Get(ctx, id)
	if err != nil {
		return Sender{}, err
	}
	r.mu.Lock()
	r.cache[id] = cachedSender{s: s, at: time.Now()}
	r.mu.Unlock()
	return s, nil
}

// List returns every sender, sorted by id.
func (r *Senders) List(ctx context.Context) ([]Sender, error) {
	ids, err := r.rdb.SMembers(ctx, r.prefix+"senders").Result()
	if err != nil {
		return nil, fmt.Errorf("list senders: %w", err)
	}
	sort.Strings(ids)
	out := make([]Sender, 0, len(ids))
	for _, id := range ids {
		s, err := r.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
