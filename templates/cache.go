package templates

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// CacheConfig configures a Cache.
type CacheConfig struct {
	// LatestTTL is how long Get trusts the latest version number it read; 0 reads it
	// from Redis on every Get (one GET; compiled versions are always reused).
	LatestTTL time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Cache is what a worker renders from: each (name, version) is fetched and compiled
// once, then shared. Versions never change, so compiled entries never go stale; only
// "which version is latest" is re-read (see CacheConfig.LatestTTL). Safe for concurrent
// use; concurrent misses on one version compile it once.
type Cache struct {
	store *Store
	ttl   time.Duration
	now   func() time.Time

	mu       sync.Mutex
	compiled map[cacheKey]*cacheEntry
	latest   map[string]latestEntry
	locales  map[string]localesEntry
}

type cacheKey struct {
	name    string
	version int
}

type cacheEntry struct {
	done chan struct{}
	c    *Compiled
	err  error
}

type latestEntry struct {
	version int
	at      time.Time
}

// NewCache returns a Cache over s.
func NewCache(s *Store, cfg CacheConfig) *Cache {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache{
		store:    s,
		ttl:      cfg.LatestTTL,
		now:      cfg.Now,
		compiled: map[cacheKey]*cacheEntry{},
		latest:   map[string]latestEntry{},
		locales:  map[string]localesEntry{},
	}
}

// Get returns the latest version of a template, compiled.
func (c *Cache) Get(ctx context.Context, name string) (*Compiled, error) {
	now := c.now()
	c.mu.Lock()
	l, ok := c.latest[name]
	c.mu.Unlock()
	if !ok || c.ttl <= 0 || now.Sub(l.at) >= c.ttl {
		v, err := c.store.Latest(ctx, name)
		if err != nil {
			return nil, err
		}
		l = latestEntry{version: v, at: now}
		c.mu.Lock()
		c.latest[name] = l
		c.mu.Unlock()
	}
	return c.GetVersion(ctx, name, l.version)
}

// GetFor returns the latest version of the template in the contact's locale: the exact
// locale if saved (en_US, en-us alike), else one of the same language (pt_BR for pt_PT),
// else the template's default locale.
func (c *Cache) GetFor(ctx context.Context, name, locale string) (*Compiled, error) {
	if locale == "" {
		return c.Get(ctx, name)
	}
	now := c.now()
	c.mu.Lock()
	l, ok := c.locales[name]
	c.mu.Unlock()
	if !ok || c.ttl <= 0 || now.Sub(l.at) >= c.ttl {
		m, err := c.store.Locales(ctx, name)
		if err != nil {
			return nil, err
		}
		l = localesEntry{byLocale: m, at: now}
		c.mu.Lock()
		c.locales[name] = l
		c.mu.Unlock()
	}
	want := localeKey(locale)
	stored, ok := l.byLocale[want]
	if !ok {
		lang, _, _ := strings.Cut(want, "_")
		best := ""
		for loc, n := range l.byLocale {
			if l2, _, _ := strings.Cut(loc, "_"); l2 == lang && (best == "" || loc < best) {
				best, stored = loc, n
			}
		}
	}
	if stored == "" {
		stored = name
	}
	return c.Get(ctx, stored)
}

type localesEntry struct {
	byLocale map[string]string
	at       time.Time
}

// GetVersion returns one version of a template, compiled: what a campaign pinned to a
// version renders from.
func (c *Cache) GetVersion(ctx context.Context, name string, version int) (*Compiled, error) {
	k := cacheKey{name, version}
	c.mu.Lock()
	e, ok := c.compiled[k]
	if !ok {
		e = &cacheEntry{done: make(chan struct{})}
		c.compiled[k] = e
	}
	c.mu.Unlock()
	if ok {
		select {
		case <-e.done:
			return e.c, e.err
		case <-ctx.Done():
			return nil, fmt.Errorf("get template %s v%d: %w", name, version, ctx.Err())
		}
	}
	e.c, e.err = c.load(ctx, name, version)
	close(e.done)
	if e.err != nil { // not cached: the next call tries again
		c.mu.Lock()
		if c.compiled[k] == e {
			delete(c.compiled, k)
		}
		c.mu.Unlock()
	}
	return e.c, e.err
}

func (c *Cache) load(ctx context.Context, name string, version int) (*Compiled, error) {
	t, err := c.store.GetVersion(ctx, name, version)
	if err != nil {
		return nil, err
	}
	comp, err := Compile(t)
	if err != nil {
		return nil, fmt.Errorf("compile template %s v%d: %w", name, version, err)
	}
	return comp, nil
}
