package recurring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store keeps schedules and their runs in Redis. Every key carries the hash tag
// {P sched}, so the scripts that claim an instant touch one Redis Cluster slot:
//
//	P{P sched}:seq          INCR: ids of schedules created without one (s1, s2…)
//	P{P sched}:all          ZSET: schedule ids by creation time
//	P{P sched}:due          ZSET: active schedule ids by their next instant (ms)
//	P{P sched}:pending      ZSET: "id|instant ms" claimed and not launched yet, by instant
//	P{P sched}:s:ID         HASH: spec (JSON), state, next (ms), runs, end_reason
//	P{P sched}:runs:ID      HASH: instant ms → the run's record (JSON)
//	P{P sched}:runidx:ID    ZSET: instant ms by instant (the runs in order)
//	P{P sched}:launching:M  STRING: a process launching pending run M (a lock with a TTL)
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewStore returns the schedule store under prefix; now may be nil (time.Now).
func NewStore(rdb redis.UniversalClient, prefix string, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{rdb: rdb, prefix: prefix + "{" + prefix + "sched}:", now: now}
}

func (s *Store) seqKey() string               { return s.prefix + "seq" }
func (s *Store) allKey() string               { return s.prefix + "all" }
func (s *Store) dueKey() string               { return s.prefix + "due" }
func (s *Store) pendingKey() string           { return s.prefix + "pending" }
func (s *Store) key(id string) string         { return s.prefix + "s:" + id }
func (s *Store) runsKey(id string) string     { return s.prefix + "runs:" + id }
func (s *Store) runIdxKey(id string) string   { return s.prefix + "runidx:" + id }
func (s *Store) lockKey(member string) string { return s.prefix + "launching:" + member }

// RunStatus is where a run stands.
type RunStatus string

// Run statuses.
const (
	RunPending  RunStatus = "pending"  // claimed; its campaign is being created and launched
	RunLaunched RunStatus = "launched" // its campaign was launched
	RunSkipped  RunStatus = "skipped"  // not run (Reason says why)
)

// Skip reasons.
const (
	ReasonMissed     = "missed"     // the instant passed while no scheduler ran, beyond the catch-up window
	ReasonSuperseded = "superseded" // missed, within the window, but a later missed instant ran instead
	ReasonDeleted    = "schedule_deleted"
	ReasonFailed     = "launch_failed" // the run's campaign could not be built (its segment no longer parses…)
)

// Run is one instant of a schedule: the campaign it launched (ID) or why it did not run.
type Run struct {
	ID          string    `json:"id"` // the run's campaign id, <schedule>-<yyyymmddThhmm>
	Schedule    string    `json:"schedule_id"`
	ScheduledAt time.Time `json:"scheduled_at,omitzero"`
	Status      RunStatus `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	Detail      string    `json:"detail,omitempty"`
	ClaimedAt   time.Time `json:"claimed_at,omitzero"`
	LaunchedAt  time.Time `json:"launched_at,omitzero"`
	LateMS      int64     `json:"late_ms,omitempty"`  // how long after its instant the run was claimed
	Audience    int64     `json:"audience,omitempty"` // contacts in the run's snapshot
	Excluded    int64     `json:"excluded,omitempty"` // segment members left out: reached within the window
}

// Create stores a new schedule (active, or paused when paused is true) and returns it.
// The caller has validated the spec and its campaign.
func (s *Store) Create(ctx context.Context, sp Spec, paused bool) (Schedule, error) {
	if err := sp.Validate(); err != nil {
		return Schedule{}, err
	}
	w, _ := sp.parseWhen()
	if sp.ID == "" {
		n, err := s.rdb.Incr(ctx, s.seqKey()).Result()
		if err != nil {
			return Schedule{}, fmt.Errorf("create schedule: %w", err)
		}
		sp.ID = "s" + strconv.FormatInt(n, 10)
	}
	now := s.now()
	sp.Created = now.UTC().Truncate(time.Millisecond)
	sch := Schedule{Spec: sp, State: Active}
	if paused {
		sch.State = Paused
	}
	next := w.next(now)
	if next.IsZero() || (!sp.Until.IsZero() && next.After(sp.Until)) {
		return Schedule{}, fieldErr("until", "the schedule would never run: its first instant after now is past --until")
	}
	sch.NextRunAt = next
	spec, _ := json.Marshal(sp)
	n, err := createScript.Run(ctx, s.rdb, []string{s.key(sp.ID), s.allKey(), s.dueKey()},
		sp.ID, spec, string(sch.State), next.UnixMilli(), sp.Created.UnixMilli()).Int()
	if err != nil {
		return Schedule{}, fmt.Errorf("create schedule: %w", err)
	}
	if n == 0 {
		return Schedule{}, fieldErr("id", "schedule %q exists: pick another id or delete it first", sp.ID)
	}
	return sch, nil
}

// createScript: KEYS schedule, all, due; ARGV id, spec, state, next ms, created ms.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'state', ARGV[3], 'next', ARGV[4], 'runs', 0)
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
if ARGV[3] == 'active' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1]) end
return 1
`)

// Get returns a schedule.
func (s *Store) Get(ctx context.Context, id string) (Schedule, error) {
	m, err := s.rdb.HGetAll(ctx, s.key(id)).Result()
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %s: %w", id, err)
	}
	if len(m) == 0 || m["spec"] == "" {
		return Schedule{}, fmt.Errorf("schedule %s: %w", id, ErrNotFound)
	}
	var sch Schedule
	if err := json.Unmarshal([]byte(m["spec"]), &sch.Spec); err != nil {
		return Schedule{}, fmt.Errorf("schedule %s: bad spec: %w", id, err)
	}
	sch.State = State(m["state"])
	sch.Runs, _ = strconv.Atoi(m["runs"])
	sch.EndReason = m["end_reason"]
	if ms, _ := strconv.ParseInt(m["next"], 10, 64); ms > 0 && sch.State != Ended {
		sch.NextRunAt = time.UnixMilli(ms).UTC()
	}
	return sch, nil
}

// List returns up to limit schedules, newest first.
func (s *Store) List(ctx context.Context, limit int64) ([]Schedule, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.allKey(), 0, limit-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	out := make([]Schedule, 0, len(ids))
	for _, id := range ids {
		sch, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sch)
	}
	return out, nil
}

// StateError is a change the schedule's state does not allow.
type StateError struct {
	ID    string
	State State
	Want  string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("schedule %s is %s: %s", e.ID, e.State, e.Want)
}

// pauseScript: KEYS schedule, due. Active → paused.
var pauseScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return '' end
if st == 'active' then
  redis.call('HSET', KEYS[1], 'state', 'paused')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 'paused'
end
return st
`)

// resumeScript: KEYS schedule, due; ARGV id, next ms. Paused → active from next.
var resumeScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return '' end
if st == 'paused' then
  redis.call('HSET', KEYS[1], 'state', 'active', 'next', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 'active'
end
return st
`)

// Pause stops a schedule's runs (a run already launched goes on: pause its campaign).
// Pausing a paused schedule is a no-op.
func (s *Store) Pause(ctx context.Context, id string) (Schedule, error) {
	st, err := pauseScript.Run(ctx, s.rdb, []string{s.key(id), s.dueKey()}, id).Text()
	if err != nil {
		return Schedule{}, fmt.Errorf("pause schedule %s: %w", id, err)
	}
	switch State(st) {
	case "":
		return Schedule{}, fmt.Errorf("schedule %s: %w", id, ErrNotFound)
	case Paused:
		return s.Get(ctx, id)
	}
	return Schedule{}, &StateError{ID: id, State: State(st), Want: "only an active schedule can be paused"}
}

// Resume makes a paused schedule active again from its next instant after now: the
// instants that passed while it was paused do not run. Resuming an active schedule is a
// no-op.
func (s *Store) Resume(ctx context.Context, id string) (Schedule, error) {
	sch, err := s.Get(ctx, id)
	if err != nil {
		return Schedule{}, err
	}
	if sch.State == Active {
		return sch, nil
	}
	w, err := sch.parseWhen()
	if err != nil {
		return Schedule{}, err
	}
	next := w.next(s.now())
	if next.IsZero() || (!sch.Until.IsZero() && next.After(sch.Until)) {
		return Schedule{}, &StateError{ID: id, State: sch.State, Want: "its next instant is past its until: nothing left to run"}
	}
	st, err := resumeScript.Run(ctx, s.rdb, []string{s.key(id), s.dueKey()}, id, next.UnixMilli()).Text()
	if err != nil {
		return Schedule{}, fmt.Errorf("resume schedule %s: %w", id, err)
	}
	switch State(st) {
	case "":
		return Schedule{}, fmt.Errorf("schedule %s: %w", id, ErrNotFound)
	case Active:
		return s.Get(ctx, id)
	}
	return Schedule{}, &StateError{ID: id, State: State(st), Want: "only a paused schedule can be resumed"}
}

// Delete removes a schedule and its run history; the campaigns its runs launched stay
// (with their funnels), and a run claimed and not launched yet is dropped.
func (s *Store) Delete(ctx context.Context, id string) error {
	n, err := s.rdb.Exists(ctx, s.key(id)).Result()
	if err != nil {
		return fmt.Errorf("delete schedule %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("schedule %s: %w", id, ErrNotFound)
	}
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, s.key(id), s.runsKey(id), s.runIdxKey(id))
	pipe.ZRem(ctx, s.allKey(), id)
	pipe.ZRem(ctx, s.dueKey(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("delete schedule %s: %w", id, err)
	}
	return nil
}

// Runs returns up to limit runs of a schedule, newest first (skipped instants too).
func (s *Store) Runs(ctx context.Context, id string, limit int64) ([]Run, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	ms, err := s.rdb.ZRevRange(ctx, s.runIdxKey(id), 0, limit-1).Result()
	if err != nil {
		return nil, fmt.Errorf("runs of schedule %s: %w", id, err)
	}
	if len(ms) == 0 {
		return []Run{}, nil
	}
	raw, err := s.rdb.HMGet(ctx, s.runsKey(id), ms...).Result()
	if err != nil {
		return nil, fmt.Errorf("runs of schedule %s: %w", id, err)
	}
	out := make([]Run, 0, len(raw))
	for _, v := range raw {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var r Run
		if err := json.Unmarshal([]byte(str), &r); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// run returns one run record.
func (s *Store) run(ctx context.Context, id string, at int64) (Run, bool, error) {
	v, err := s.rdb.HGet(ctx, s.runsKey(id), strconv.FormatInt(at, 10)).Result()
	if err == redis.Nil {
		return Run{}, false, nil
	}
	if err != nil {
		return Run{}, false, err
	}
	var r Run
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return Run{}, false, fmt.Errorf("run %s@%d: %w", id, at, err)
	}
	return r, true, nil
}

// claimScript moves a schedule past the instants due and records them, if no one did it
// first. KEYS schedule, due, pending, runs, runidx. ARGV: id, expected next ms, new next
// ms ("" when the schedule ends), end reason, run instant ms ("" when none runs), run
// record, then (instant ms, record) pairs of skipped instants. Answers 1 when this call
// claimed, 0 when the schedule moved on (another process claimed) or is not active.
var claimScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return 0 end
if redis.call('HGET', KEYS[1], 'next') ~= ARGV[2] then return 0 end
for i = 7, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[5], ARGV[i], ARGV[i])
  end
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[5])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1] .. '|' .. ARGV[5])
  redis.call('HINCRBY', KEYS[1], 'runs', 1)
end
if ARGV[3] == '' then
  redis.call('HSET', KEYS[1], 'state', 'ended', 'end_reason', ARGV[4])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'next', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 1
`)

// finishRunScript records a run's final record and takes it off the pending list.
// KEYS runs, pending; ARGV instant ms, record, pending member.
// Answers 1 when the run was pending (this call finished it), else 0.
var finishRunScript = redis.NewScript(`
if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

func pendingMember(id string, at int64) string { return id + "|" + strconv.FormatInt(at, 10) }

func parsePending(m string) (string, int64, bool) {
	i := strings.LastIndexByte(m, '|')
	if i <= 0 {
		return "", 0, false
	}
	at, err := strconv.ParseInt(m[i+1:], 10, 64)
	return m[:i], at, err == nil
}
