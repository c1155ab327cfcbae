package journeys

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// States of a journey.
const (
	Active   = "active"   // entries and steps run
	Paused   = "paused"   // nobody enters; instances stay where they are and resume later
	Archived = "archived" // nobody enters; instances leave (reason archived) as their timers fire
)

// ErrNotFound is a journey (or version) that does not exist.
var ErrNotFound = errors.New("not found")

// Info is a journey's state and latest version.
type Info struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	State   string    `json:"state"`
	Version int       `json:"version"`
	Created time.Time `json:"created_at,omitzero"`
	Updated time.Time `json:"updated_at,omitzero"`
	Source  string    `json:"source,omitempty"`
	Steps   int       `json:"steps"`
	EntryOn string    `json:"entry_event"`
}

// Store keeps journey definitions, each save a new version (as templates do).
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewStore returns the store under prefix.
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix, now: time.Now}
}

// WithClock sets the clock (tests).
func (s *Store) WithClock(now func() time.Time) *Store { s.now = now; return s }

func (s *Store) key(id string) string { return s.prefix + "{jrn:" + id + "}" }
func (s *Store) listKey() string      { return s.prefix + "journeys" }

var saveScript = redis.NewScript(`
local v = redis.call('HINCRBY', KEYS[1], 'latest', 1)
redis.call('HSET', KEYS[1], 'v:' .. v, ARGV[1], 'updated_at', ARGV[2])
if redis.call('HSETNX', KEYS[1], 'created_at', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'active')
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
end
return v
`)

// Save parses src and stores it as the journey's next version (its first makes it
// active). check, when set, validates what needs the other stores (templates).
func (s *Store) Save(ctx context.Context, src []byte, check func(*Definition) error) (*Definition, int, error) {
	d, err := Parse(src)
	if err != nil {
		return nil, 0, err
	}
	if check != nil {
		if err := check(d); err != nil {
			return nil, 0, err
		}
	}
	st, err := s.rdb.HGet(ctx, s.key(d.ID), "state").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("save journey %s: %w", d.ID, err)
	}
	if st == Archived {
		return nil, 0, fmt.Errorf("save journey %s: it is archived; give the new one another id", d.ID)
	}
	v, err := saveScript.Run(ctx, s.rdb, []string{s.key(d.ID), s.listKey()}, src, s.now().UnixMilli(), d.ID).Int()
	if err != nil {
		return nil, 0, fmt.Errorf("save journey %s: %w", d.ID, err)
	}
	return d, v, nil
}

// Version returns one version's definition (0: the latest) and its number.
func (s *Store) Version(ctx context.Context, id string, version int) (*Definition, int, error) {
	if !idRE.MatchString(id) {
		return nil, 0, fmt.Errorf("journey %s: %w", id, ErrNotFound)
	}
	if version <= 0 {
		v, err := s.rdb.HGet(ctx, s.key(id), "latest").Int()
		if errors.Is(err, redis.Nil) {
			return nil, 0, fmt.Errorf("journey %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("journey %s: %w", id, err)
		}
		version = v
	}
	src, err := s.rdb.HGet(ctx, s.key(id), "v:"+strconv.Itoa(version)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("journey %s v%d: %w", id, version, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("journey %s: %w", id, err)
	}
	d, err := Parse(src)
	if err != nil {
		return nil, 0, fmt.Errorf("journey %s v%d: stored definition: %w", id, version, err)
	}
	return d, version, nil
}

// Info returns a journey's state and latest version (with its source).
func (s *Store) Info(ctx context.Context, id string) (Info, error) {
	if !idRE.MatchString(id) {
		return Info{}, fmt.Errorf("journey %s: %w", id, ErrNotFound)
	}
	m, err := s.rdb.HGetAll(ctx, s.key(id)).Result()
	if err != nil {
		return Info{}, fmt.Errorf("journey %s: %w", id, err)
	}
	if len(m) == 0 || m["latest"] == "" {
		return Info{}, fmt.Errorf("journey %s: %w", id, ErrNotFound)
	}
	in := Info{ID: id, State: m["state"]}
	in.Version, _ = strconv.Atoi(m["latest"])
	ms := func(k string) time.Time {
		n, _ := strconv.ParseInt(m[k], 10, 64)
		if n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	in.Created, in.Updated = ms("created_at"), ms("updated_at")
	in.Source = m["v:"+m["latest"]]
	if d, err := Parse([]byte(in.Source)); err == nil {
		in.Name, in.Steps, in.EntryOn = d.Name, len(d.Steps), d.Entry.Event
	}
	return in, nil
}

// List returns every journey, oldest first.
func (s *Store) List(ctx context.Context) ([]Info, error) {
	ids, err := s.rdb.ZRange(ctx, s.listKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list journeys: %w", err)
	}
	out := make([]Info, 0, len(ids))
	for _, id := range ids {
		in, err := s.Info(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// StateError is a change of state the journey's state does not allow.
type StateError struct {
	ID, State, Want string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("journey %s is %s: cannot %s it", e.ID, e.State, e.Want)
}

var setStateScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {0, ''} end
for i = 2, #ARGV do
  if st == ARGV[i] then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    return {1, st}
  end
end
return {0, st}
`)

// SetState moves a journey to state (pause: from active; resume: from paused; archive:
// from active or paused).
func (s *Store) SetState(ctx context.Context, id, state string) (Info, error) {
	var from []any
	verb := map[string]string{Paused: "pause", Active: "resume", Archived: "archive"}[state]
	switch state {
	case Paused:
		from = []any{Active}
	case Active:
		from = []any{Paused}
	case Archived:
		from = []any{Active, Paused}
	default:
		return Info{}, fmt.Errorf("journey state %q", state)
	}
	if !idRE.MatchString(id) {
		return Info{}, fmt.Errorf("journey %s: %w", id, ErrNotFound)
	}
	res, err := setStateScript.Run(ctx, s.rdb, []string{s.key(id)}, append([]any{state}, from...)...).Slice()
	if err != nil {
		return Info{}, fmt.Errorf("%s journey %s: %w", verb, id, err)
	}
	if res[0].(int64) == 0 {
		if res[1].(string) == "" {
			return Info{}, fmt.Errorf("journey %s: %w", id, ErrNotFound)
		}
		return Info{}, &StateError{ID: id, State: res[1].(string), Want: verb}
	}
	return s.Info(ctx, id)
}

// runnable is a journey the engine runs: its state and latest definition.
type runnable struct {
	def     *Definition
	version int
	state   string
	cares   map[string]bool // trigger kinds that matter to instances of any version
	segExpr string          // a segment- or tag-entered journey's segment ("" : other entries)
	segTags []string        // the tags segExpr names
}

// load reads every non-archived journey's latest definition, plus archived ones (their
// instances still leave as their timers fire).
func (s *Store) load(ctx context.Context) (map[string]*runnable, error) {
	ids, err := s.rdb.ZRange(ctx, s.listKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("load journeys: %w", err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, s.key(id), "state", "latest")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load journeys: %w", err)
	}
	out := map[string]*runnable{}
	for i, id := range ids {
		v := cmds[i].Val()
		st, _ := v[0].(string)
		ver, _ := strconv.Atoi(fmt.Sprint(v[1]))
		if ver == 0 {
			continue
		}
		out[id] = &runnable{state: st, version: ver}
	}
	return out, nil
}
