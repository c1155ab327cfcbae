package templates

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for a template or version that is not stored.
var ErrNotFound = errors.New("template not found")

// Store keeps templates in Redis, versioned: every save of changed source is a new
// version; versions are never changed or removed, so a campaign pinned to one renders
// the same forever.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewStore returns a Store using keys under prefix (see the package comment).
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix, now: time.Now}
}

// Summary describes one stored version.
type Summary struct {
	Name              string    `json:"name"`
	Version           int       `json:"version,omitempty"`
	Kind              Kind      `json:"kind"`
	Channel           string    `json:"channel"`
	Locale            string    `json:"locale"`
	Description       string    `json:"description,omitempty"`
	Variants          []string  `json:"variants"`
	WhatsAppTemplates []string  `json:"whatsapp_templates"` // approved template names used
	SHA256            string    `json:"sha256"`             // of the source
	SavedAt           time.Time `json:"saved_at,omitzero"`
}

// record is the JSON stored per version (the version is the hash field).
type record struct {
	Summary
	Source string `json:"source"`
}

func (s *Store) hashKey(name string) string    { return s.prefix + "tpl:{" + name + "}" }
func (s *Store) latestKey(name string) string  { return s.prefix + "tpl:{" + name + "}:latest" }
func (s *Store) setKey() string                { return s.prefix + "tpls" }
func (s *Store) localesKey(name string) string { return s.prefix + "tpl:{" + name + "}:locales" }

// localeKey normalizes a locale for matching: en_US, en-us and EN_us are one locale.
func localeKey(l string) string { return strings.ToLower(strings.ReplaceAll(l, "-", "_")) }

// alternateName is where another locale of a template is stored.
func alternateName(name, locale string) string { return name + "__" + localeKey(locale) }

// DefaultLocale is the locale of the template stored under name itself (the first one
// saved); other locales are alternates.
func (s *Store) DefaultLocale(ctx context.Context, name string) (string, error) {
	_, rec, err := s.latest(ctx, name)
	if err != nil {
		return "", err
	}
	var r record
	if err := json.Unmarshal(rec, &r); err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	return r.Summary.Locale, nil
}

// Locales maps each saved locale of a template (normalized: lower case, "_") to the
// stored name that holds it; the default locale maps to name itself.
func (s *Store) Locales(ctx context.Context, name string) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.localesKey(name)).Result()
	if err != nil {
		return nil, fmt.Errorf("template %s locales: %w", name, err)
	}
	return m, nil
}

// saveScript stores a new version unless the latest one has the same source hash.
// KEYS: hash, latest. ARGV: sha256, record. Returns {version, created (0/1)}.
var saveScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur > 0 then
  local rec = redis.call('HGET', KEYS[1], tostring(cur))
  if rec then
    local ok, r = pcall(cjson.decode, rec)
    if ok and r.sha256 == ARGV[1] then return {cur, 0} end
  end
end
local v = cur + 1
redis.call('HSET', KEYS[1], tostring(v), ARGV[2])
redis.call('SET', KEYS[2], v)
return {v, 1}
`)

// latestScript returns {version, record} of the latest version, or nil.
var latestScript = redis.NewScript(`
local v = redis.call('GET', KEYS[2])
if not v then return false end
return {v, redis.call('HGET', KEYS[1], v)}
`)

// Save stores source as the next version of t's template and returns its version, or
// the latest version when the source is unchanged. source is re-parsed: it must be a
// valid template named t.Name. On success t.Version is set.
func (s *Store) Save(ctx context.Context, t *Template, source []byte) (int, error) {
	parsed, err := ParseFile(source, t.Name+".yaml")
	if err != nil {
		return 0, fmt.Errorf("save template: %w", err)
	}
	if strings.Contains(t.Name, "__") {
		return 0, fmt.Errorf("save template %s: names may not contain \"__\" (reserved for locale alternates)", t.Name)
	}
	if parsed.Name != t.Name {
		return 0, fmt.Errorf("save template %s: the source is template %q", t.Name, parsed.Name)
	}
	sum := sha256.Sum256(source)
	rec := record{Summary: summarize(parsed), Source: string(source)}
	rec.SHA256 = hex.EncodeToString(sum[:])
	rec.SavedAt = s.now().UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("save template %s: %w", t.Name, err)
	}
	// The first locale saved under a name is its default; another locale is stored as an
	// alternate that contacts of that locale get (see Cache.GetFor).
	target := t.Name
	def, err := s.DefaultLocale(ctx, t.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("save template %s: %w", t.Name, err)
	}
	if def != "" && localeKey(def) != localeKey(parsed.Locale) {
		target = alternateName(t.Name, parsed.Locale)
	}
	res, err := saveScript.Run(ctx, s.rdb, []string{s.hashKey(target), s.latestKey(target)}, rec.SHA256, b).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("save template %s: %w", t.Name, err)
	}
	if err := s.rdb.HSet(ctx, s.localesKey(t.Name), localeKey(parsed.Locale), target).Err(); err != nil {
		return 0, fmt.Errorf("save template %s: %w", t.Name, err)
	}
	// After the version: a failed SADD leaves the version stored, and saving again
	// (unchanged, so no new version) adds the name.
	if err := s.rdb.SAdd(ctx, s.setKey(), t.Name).Err(); err != nil {
		return 0, fmt.Errorf("save template %s: %w", t.Name, err)
	}
	t.Version = int(res[0])
	return t.Version, nil
}

func summarize(t *Template) Summary {
	sum := Summary{Name: t.Name, Kind: t.Kind, Channel: t.Channel, Locale: t.Locale, Description: t.Description, Variants: []string{}}
	for _, v := range t.Variants {
		sum.Variants = append(sum.Variants, v.Name)
		if v.WhatsApp != nil && !slices.Contains(sum.WhatsAppTemplates, v.WhatsApp.Name) {
			sum.WhatsAppTemplates = append(sum.WhatsAppTemplates, v.WhatsApp.Name)
		}
	}
	return sum
}

// Get returns the latest version of a template.
func (s *Store) Get(ctx context.Context, name string) (*Template, error) {
	v, rec, err := s.latest(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.parse(name, v, rec)
}

// GetVersion returns one version of a template.
func (s *Store) GetVersion(ctx context.Context, name string, version int) (*Template, error) {
	if !nameRE.MatchString(name) || version < 1 {
		return nil, fmt.Errorf("get template %s v%d: %w", name, version, ErrNotFound)
	}
	b, err := s.rdb.HGet(ctx, s.hashKey(name), strconv.Itoa(version)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get template %s v%d: %w", name, version, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get template %s v%d: %w", name, version, err)
	}
	return s.parse(name, version, b)
}

// Latest returns the latest version number of a template: what a campaign pins at launch.
func (s *Store) Latest(ctx context.Context, name string) (int, error) {
	if !nameRE.MatchString(name) {
		return 0, fmt.Errorf("get template %s: %w", name, ErrNotFound)
	}
	v, err := s.rdb.Get(ctx, s.latestKey(name)).Int()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("get template %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("get template %s: %w", name, err)
	}
	return v, nil
}

// Versions lists the stored versions of a template, oldest first.
func (s *Store) Versions(ctx context.Context, name string) ([]int, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("list versions of %s: %w", name, ErrNotFound)
	}
	keys, err := s.rdb.HKeys(ctx, s.hashKey(name)).Result()
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", name, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("list versions of %s: %w", name, ErrNotFound)
	}
	vs := make([]int, 0, len(keys))
	for _, k := range keys {
		if v, err := strconv.Atoi(k); err == nil {
			vs = append(vs, v)
		}
	}
	sort.Ints(vs)
	return vs, nil
}

// List summarizes the latest version of every template, by name.
func (s *Store) List(ctx context.Context) ([]Summary, error) {
	names, err := s.rdb.SMembers(ctx, s.setKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	sort.Strings(names)
	cmds := make([]*redis.Cmd, len(names))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = latestScript.Eval(ctx, p, // EVAL: in a pipeline EVALSHA has no NOSCRIPT fallback
				[]string{s.hashKey(n), s.latestKey(n)})
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	out := make([]Summary, 0, len(names))
	for i, n := range names {
		v, rec, err := latestResult(cmds[i])
		if errors.Is(err, redis.Nil) {
			continue // named but not stored: a save that failed halfway
		}
		if err != nil {
			return nil, fmt.Errorf("list templates: %s: %w", n, err)
		}
		var r record
		if err := json.Unmarshal(rec, &r); err != nil {
			return nil, fmt.Errorf("list templates: %s v%d: %w", n, v, err)
		}
		r.Version = v
		out = append(out, r.Summary)
	}
	return out, nil
}

func (s *Store) latest(ctx context.Context, name string) (int, []byte, error) {
	if !nameRE.MatchString(name) {
		return 0, nil, fmt.Errorf("get template %s: %w", name, ErrNotFound)
	}
	v, rec, err := latestResult(latestScript.Run(ctx, s.rdb, []string{s.hashKey(name), s.latestKey(name)}))
	if errors.Is(err, redis.Nil) {
		return 0, nil, fmt.Errorf("get template %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("get template %s: %w", name, err)
	}
	return v, rec, nil
}

func latestResult(cmd *redis.Cmd) (int, []byte, error) {
	res, err := cmd.Slice()
	if err != nil {
		return 0, nil, err
	}
	if len(res) != 2 {
		return 0, nil, redis.Nil
	}
	vs, _ := res[0].(string)
	rec, _ := res[1].(string)
	v, err := strconv.Atoi(vs)
	if err != nil || rec == "" {
		return 0, nil, redis.Nil
	}
	return v, []byte(rec), nil
}

func (s *Store) parse(name string, version int, b []byte) (*Template, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("get template %s v%d: %w", name, version, err)
	}
	t, err := ParseFile([]byte(r.Source), fmt.Sprintf("%s.yaml (v%d)", name, version))
	if err != nil {
		return nil, fmt.Errorf("get template %s v%d: %w", name, version, err)
	}
	t.Version = version
	return t, nil
}

// Source returns the summary and the file source of one stored version; version 0 is
// the latest.
func (s *Store) Source(ctx context.Context, name string, version int) (Summary, []byte, error) {
	var b []byte
	var err error
	if version == 0 {
		version, b, err = s.latest(ctx, name)
		if err != nil {
			return Summary{}, nil, err
		}
	} else {
		if !nameRE.MatchString(name) || version < 1 {
			return Summary{}, nil, fmt.Errorf("get template %s v%d: %w", name, version, ErrNotFound)
		}
		b, err = s.rdb.HGet(ctx, s.hashKey(name), strconv.Itoa(version)).Bytes()
		if errors.Is(err, redis.Nil) {
			return Summary{}, nil, fmt.Errorf("get template %s v%d: %w", name, version, ErrNotFound)
		}
		if err != nil {
			return Summary{}, nil, fmt.Errorf("get template %s v%d: %w", name, version, err)
		}
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return Summary{}, nil, fmt.Errorf("get template %s v%d: %w", name, version, err)
	}
	r.Version = version
	return r.Summary, []byte(r.Source), nil
}
