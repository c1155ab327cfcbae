package dispatcher

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/throttle"
)

// State is a campaign's lifecycle state.
type State string

// Campaign states.
const (
	Draft     State = "draft"
	Scheduled State = "scheduled" // launches by itself at ScheduledAt (the scheduler role)
	Running   State = "running"
	Completed State = "completed"
	Cancelled State = "cancelled"
	Paused    State = "paused"
)

// Campaign is what a marketer creates: who (segment), what (template), from where (senders).
type Campaign struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Segment  string `json:"segment"`
	Template string `json:"template"`
	// FallbackTemplate is an approved (non free-form) template sent instead of a free-form
	// Template to contacts outside the 24h window, whether Herald's window record or the
	// provider (131047) says so; "": such contacts are skipped outside_window.
	FallbackTemplate string   `json:"fallback_template,omitempty"`
	Senders          []string `json:"senders"`
	Routing          string   `json:"routing,omitempty"` // round_robin (default) or country
	Channel          string   `json:"channel"`
	Purpose          string   `json:"purpose"` // consent purpose: marketing, utility
	// CapCategory is the frequency-cap category of its sends when not Purpose (journeys'
	// campaigns: "automated").
	CapCategory string `json:"cap_category,omitempty"`
	// TrackLinks turns URLs in the message into signed click-tracking links.
	TrackLinks bool `json:"track_links,omitempty"`
	// MaxErrorRate pauses the campaign (reason error_rate) when the share of failed sends
	// crosses it, once enough sends were tried to judge; 0 uses the worker's default and a
	// negative value never pauses.
	MaxErrorRate float64 `json:"max_error_rate,omitempty"`
	// QuietHours ("21:00-08:00") and AllowedDays ("mon-sat") in each recipient's local
	// time: sends due then wait for the next allowed moment. Empty: the policy's defaults.
	// Holdout is the share of the audience (0 to 0.5) kept out as a control group: they
	// are skipped with reason holdout, chosen by a hash of (campaign, contact) so a
	// resend or an audit picks the same people; `herald report lift` compares them.
	Holdout     float64 `json:"holdout,omitempty"`
	QuietHours  string  `json:"quiet_hours,omitempty"`
	AllowedDays string  `json:"allowed_days,omitempty"`
	// Fallback are the channels tried after Channel, in order, each with its senders (and
	// its template when not Template): with them the campaign has a channel policy
	// (failover.go). FallbackOn lists the triggers (FallbackTriggers; default
	// permanent_failure and circuit_open, plus not_delivered_within when
	// NotDeliveredWithinMS is set); NotDeliveredWithinMS is how long a first send may go
	// without a delivery or read report before the next channel is tried.
	Fallback             []ChannelSenders `json:"fallback"`
	FallbackOn           []string         `json:"fallback_on"`
	NotDeliveredWithinMS int64            `json:"not_delivered_within_ms,omitempty"`
	Created              time.Time        `json:"created_at,omitzero"`
}

// Status is a campaign's state and progress.
type Status struct {
	Campaign
	State       State     `json:"state"`
	Audience    int64     `json:"audience"`
	Queued      int64     `json:"queued"`
	Sent        int64     `json:"sent"`
	Skipped     int64     `json:"skipped"`
	Failed      int64     `json:"failed"`
	Done        int64     `json:"done"`
	FanoutDone  bool      `json:"fanout_done"`
	PauseReason string    `json:"pause_reason,omitempty"` // why a paused campaign was paused
	ScheduledAt time.Time `json:"scheduled_at,omitzero"`  // when a scheduled campaign launches
	LaunchedAt  time.Time `json:"launched_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// Segments evaluates a segment expression to the ids of its members.
type Segments interface {
	Evaluate(ctx context.Context, expr string) (*roaring.Bitmap, error)
}

// Publisher writes messages to one Kafka topic (a *kafka.Writer).
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Campaigns stores campaigns and runs their launch (snapshot and fan-out).
type Campaigns struct {
	rdb      redis.UniversalClient
	prefix   string
	segments Segments
	outbound Publisher
	events   Publisher
	now      func() time.Time
	chunk    int
	// fanoutLease is how long a fan-out's lease outlives its last checkpoint.
	fanoutLease time.Duration
}

// CampaignsConfig wires a Campaigns.
type CampaignsConfig struct {
	Redis    redis.UniversalClient
	Prefix   string
	Segments Segments  // needed by Launch
	Outbound Publisher // herald.outbound, needed by Launch
	Events   Publisher // herald.events, needed by Launch
	Chunk    int       // jobs per fan-out write and checkpoint (default 5000)
	// FanoutLease is how long a fan-out whose process died waits before the scheduler
	// finishes it (default 30 s); the fan-out renews it at every checkpoint.
	FanoutLease time.Duration
}

// NewCampaigns returns the campaign store.
func NewCampaigns(c CampaignsConfig) *Campaigns {
	if c.Chunk <= 0 {
		c.Chunk = 5000
	}
	if c.FanoutLease <= 0 {
		c.FanoutLease = 30 * time.Second
	}
	return &Campaigns{rdb: c.Redis, prefix: c.Prefix, segments: c.Segments, outbound: c.Outbound, events: c.Events, now: time.Now, chunk: c.Chunk,
		fanoutLease: c.FanoutLease}
}

func (c *Campaigns) key(id string) string { return c.prefix + "{cmp:" + id + "}" }

// Create validates and stores a draft campaign, returning it with its new id.
func (c *Campaigns) Create(ctx context.Context, cp Campaign, senders *Senders) (Campaign, error) {
	if strings.TrimSpace(cp.Segment) == "" {
		return cp, errors.New("campaign: a segment expression is required (--segment)")
	}
	if cp.Template == "" {
		return cp, errors.New("campaign: a template name is required (--template)")
	}
	if len(cp.Senders) == 0 {
		return cp, errors.New("campaign: at least one sender is required (--sender)")
	}
	for _, id := range cp.Senders {
		s, err := senders.Get(ctx, id)
		if err != nil {
			return cp, fmt.Errorf("campaign: sender %q: %w (add it with `herald senders add`)", id, err)
		}
		if cp.Channel == "" {
			cp.Channel = s.Channel
		}
		if s.Channel != cp.Channel {
			return cp, fmt.Errorf("campaign: sender %q sends %s, not %s: a campaign's senders are all of its channel", id, s.Channel, cp.Channel)
		}
	}
	if cp.Channel == "" {
		cp.Channel = "whatsapp"
	}
	if cp.Purpose == "" {
		cp.Purpose = "marketing"
	}
	if err := cp.ValidatePolicy(func(id string) (Sender, error) { return senders.Get(ctx, id) }); err != nil {
		return cp, err
	}
	if !(cp.Holdout >= 0 && cp.Holdout <= 0.5) {
		return cp, fmt.Errorf("campaign: holdout %v: want a share between 0 and 0.5", cp.Holdout)
	}
	if _, err := cp.Quiet(); err != nil {
		return cp, fmt.Errorf("campaign: %w", err)
	}
	switch cp.Routing {
	case "", RouteRoundRobin, RouteCountry:
	default:
		return cp, fmt.Errorf("campaign: routing %q: want %s or %s", cp.Routing, RouteRoundRobin, RouteCountry)
	}
	n, err := c.rdb.Incr(ctx, c.prefix+"campaign:seq").Result()
	if err != nil {
		return cp, fmt.Errorf("create campaign: %w", err)
	}
	cp.ID = strconv.FormatInt(n, 10)
	cp.Created = c.now().UTC().Truncate(time.Millisecond)
	if cp.Name == "" {
		cp.Name = "campaign " + cp.ID
	}
	spec, _ := json.Marshal(cp)
	pipe := txPipeline(c.rdb)
	pipe.HSet(ctx, c.key(cp.ID), "spec", spec, "state", string(Draft))
	pipe.ZAdd(ctx, c.prefix+"campaigns", redis.Z{Score: float64(cp.Created.UnixMilli()), Member: cp.ID})
	(&Failover{prefix: c.prefix}).enable(ctx, pipe, cp)
	if _, err := pipe.Exec(ctx); err != nil {
		return cp, fmt.Errorf("create campaign: %w", err)
	}
	return cp, nil
}

// Get returns a campaign's spec.
func (c *Campaigns) Get(ctx context.Context, id string) (Campaign, error) {
	st, err := c.Status(ctx, id)
	return st.Campaign, err
}

// Status returns a campaign's spec, state and counters.
func (c *Campaigns) Status(ctx context.Context, id string) (Status, error) {
	m, err := c.rdb.HGetAll(ctx, c.key(id)).Result()
	if err != nil {
		return Status{}, fmt.Errorf("campaign %s: %w", id, err)
	}
	if len(m) == 0 {
		return Status{}, fmt.Errorf("campaign %s: %w", id, ErrNotFound)
	}
	var st Status
	if err := json.Unmarshal([]byte(m["spec"]), &st.Campaign); err != nil {
		return Status{}, fmt.Errorf("campaign %s: bad spec: %w", id, err)
	}
	if st.Created.IsZero() { // a spec written before the key was created_at
		var old struct {
			Created time.Time `json:"created"`
		}
		_ = json.Unmarshal([]byte(m["spec"]), &old)
		st.Created = old.Created
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	st.State = State(m["state"])
	st.Audience, st.Queued, st.Sent, st.Skipped, st.Failed, st.Done = num("audience"), num("queued"), num("sent"), num("skipped"), num("failed"), num("done")
	st.FanoutDone = m["fanout_done"] == "1"
	if st.State == Paused {
		st.PauseReason = m["pause_reason"]
	}
	if ms := num("scheduled_at"); ms > 0 && st.State == Scheduled {
		st.ScheduledAt = time.UnixMilli(ms).UTC()
	}
	if ms := num("launched_at"); ms > 0 {
		st.LaunchedAt = time.UnixMilli(ms).UTC()
	}
	if ms := num("completed_at"); ms > 0 {
		st.CompletedAt = time.UnixMilli(ms).UTC()
	}
	return st, nil
}

// List returns the most recent campaigns, newest first.
func (c *Campaigns) List(ctx context.Context, limit int64) ([]Status, error) {
	ids, err := c.rdb.ZRevRange(ctx, c.prefix+"campaigns", 0, limit-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	out := make([]Status, 0, len(ids))
	for _, id := range ids {
		st, err := c.Status(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// StateError is a lifecycle change the campaign's state does not allow (pausing a
// draft, resuming a completed campaign).
type StateError struct {
	ID    string
	State State  // the campaign's state
	Want  string // what the change needs
}

func (e *StateError) Error() string {
	return fmt.Sprintf("campaign %s is %s: %s", e.ID, e.State, e.Want)
}

// PageKey is where a page of List stops: the listing continues after it. The zero
// PageKey starts at the newest campaign.
type PageKey struct {
	CreatedMS int64
	ID        string
}

// ListPage returns up to limit campaigns created before after (newest first; the zero
// PageKey starts at the newest), and the key of the last one returned, to pass as after
// for the next page (zero when there are no more). Campaigns created meanwhile never
// shift a page: the listing is by creation time, then id.
func (c *Campaigns) ListPage(ctx context.Context, after PageKey, limit int64) ([]Status, PageKey, error) {
	if limit <= 0 {
		return []Status{}, PageKey{}, nil
	}
	max := "+inf"
	if after.ID != "" {
		max = strconv.FormatInt(after.CreatedMS, 10)
	}
	var ids []redis.Z
	for offset := int64(0); int64(len(ids)) <= limit; {
		zs, err := c.rdb.ZRevRangeByScoreWithScores(ctx, c.prefix+"campaigns", &redis.ZRangeBy{Max: max, Min: "-inf", Offset: offset, Count: limit + 1}).Result()
		if err != nil {
			return nil, PageKey{}, fmt.Errorf("list campaigns: %w", err)
		}
		for _, z := range zs {
			id, _ := z.Member.(string)
			// Equal scores list in reverse lexical order of the id: skip those up to after.
			if after.ID != "" && int64(z.Score) == after.CreatedMS && id >= after.ID {
				continue
			}
			ids = append(ids, z)
		}
		if int64(len(zs)) < limit+1 {
			break
		}
		offset += int64(len(zs))
	}
	more := int64(len(ids)) > limit
	if more {
		ids = ids[:limit]
	}
	out := make([]Status, 0, len(ids))
	for _, z := range ids {
		st, err := c.Status(ctx, z.Member.(string))
		if err != nil {
			return nil, PageKey{}, err
		}
		out = append(out, st)
	}
	var next PageKey
	if more {
		last := ids[len(ids)-1]
		next = PageKey{CreatedMS: int64(last.Score), ID: last.Member.(string)}
	}
	return out, next, nil
}

// startScript moves draft or scheduled → running. Returns the state after the call.
var startScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return '' end
if st == 'draft' or st == 'scheduled' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'launched_at', ARGV[1])
  return 'running'
end
return st
`)

var cancelScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return '' end
if st == 'draft' or st == 'running' or st == 'scheduled' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancelled_at', ARGV[1])
  return 'cancelled'
end
return st
`)

// scheduleScript moves draft → scheduled (or moves a scheduled campaign's time).
// KEYS[1] campaign; ARGV[1] at ms.
var scheduleScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return '' end
if st == 'draft' or st == 'scheduled' then
  redis.call('HSET', KEYS[1], 'state', 'scheduled', 'scheduled_at', ARGV[1])
  return 'scheduled'
end
return st
`)

func (c *Campaigns) scheduledKey() string { return c.prefix + "campaigns:scheduled" }

// Schedule makes a draft campaign launch by itself at at (the scheduler launches it,
// within a second or so). Scheduling again moves the time; launch starts it at once,
// cancel drops it.
func (c *Campaigns) Schedule(ctx context.Context, id string, at time.Time) (Status, error) {
	// The index of scheduled campaigns is written after the state (another slot on Redis
	// Cluster); LaunchDue re-checks the state, so a stale index entry is harmless.
	st, err := scheduleScript.Run(ctx, c.rdb, []string{c.key(id)}, at.UnixMilli()).Text()
	if err != nil {
		return Status{}, fmt.Errorf("schedule campaign %s: %w", id, err)
	}
	switch State(st) {
	case "":
		return Status{}, fmt.Errorf("campaign %s: %w", id, ErrNotFound)
	case Scheduled:
		if err := c.rdb.ZAdd(ctx, c.scheduledKey(), redis.Z{Score: float64(at.UnixMilli()), Member: id}).Err(); err != nil {
			return Status{}, fmt.Errorf("schedule campaign %s: %w", id, err)
		}
		return c.Status(ctx, id)
	default:
		return Status{}, fmt.Errorf("campaign %s is %s: only a draft (or scheduled) campaign can be scheduled", id, st)
	}
}

// LaunchDue launches the scheduled campaigns whose time has come, and returns their ids.
func (c *Campaigns) LaunchDue(ctx context.Context, now time.Time) ([]string, error) {
	ids, err := c.rdb.ZRangeByScore(ctx, c.scheduledKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 100}).Result()
	if err != nil {
		return nil, fmt.Errorf("scheduled campaigns: %w", err)
	}
	var launched []string
	for _, id := range ids {
		st, err := c.Status(ctx, id)
		if err == nil && st.State == Scheduled && !st.ScheduledAt.After(now) {
			if _, err := c.Launch(ctx, id, nil); err != nil {
				return launched, err
			}
			launched = append(launched, id)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return launched, err
		}
		// Launched, cancelled, rescheduled later or gone: out of the index either way
		// (a later time was added again by Schedule).
		if err == nil && st.State == Scheduled && st.ScheduledAt.After(now) {
			continue
		}
		if err := c.rdb.ZRem(ctx, c.scheduledKey(), id).Err(); err != nil {
			return launched, err
		}
	}
	return launched, nil
}

// Cancel stops a draft or running campaign for good: fan-out stops at its next chunk and
// workers skip the remaining jobs with reason campaign_cancelled. A completed campaign
// cannot be cancelled.
func (c *Campaigns) Cancel(ctx context.Context, id string) (Status, error) {
	st, err := cancelScript.Run(ctx, c.rdb, []string{c.key(id)}, c.now().UnixMilli()).Text()
	if err != nil {
		return Status{}, fmt.Errorf("cancel campaign %s: %w", id, err)
	}
	switch State(st) {
	case "":
		return Status{}, fmt.Errorf("campaign %s: %w", id, ErrNotFound)
	case Cancelled:
		return c.Status(ctx, id)
	default:
		return Status{}, &StateError{ID: id, State: State(st), Want: "only draft or running campaigns can be cancelled"}
	}
}

var pauseScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return '' end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'paused', 'paused_at', ARGV[1], 'pause_reason', ARGV[2])
  return 'paused'
end
return st
`)

var resumeScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return '' end
if st == 'paused' then
  redis.call('HSET', KEYS[1], 'state', 'running')
  return 'running'
end
return st
`)

// Pause stops a running campaign's sends within a couple of seconds on every worker:
// jobs not yet started are parked in Redis (and leave Kafka); sends already started
// finish. Pausing a paused campaign is a no-op.
func (c *Campaigns) Pause(ctx context.Context, id string) (Status, error) {
	return c.PauseFor(ctx, id, "operator")
}

// PauseFor pauses a running campaign and records why (operator, error_rate, template…):
// `campaigns status` shows the reason until the campaign is resumed.
func (c *Campaigns) PauseFor(ctx context.Context, id, reason string) (Status, error) {
	st, err := pauseScript.Run(ctx, c.rdb, []string{c.key(id)}, c.now().UnixMilli(), reason).Text()
	if err != nil {
		return Status{}, fmt.Errorf("pause campaign %s: %w", id, err)
	}
	switch State(st) {
	case "":
		return Status{}, fmt.Errorf("campaign %s: %w", id, ErrNotFound)
	case Paused:
		return c.Status(ctx, id)
	default:
		return Status{}, &StateError{ID: id, State: State(st), Want: "only a running campaign can be paused"}
	}
}

// Resume continues a paused campaign where it stopped: parked jobs go back to
// herald.outbound, a fan-out cut off by the pause continues from its checkpoint. Jobs
// already done are never sent again (their claims say so).
func (c *Campaigns) Resume(ctx context.Context, id string) (Status, error) {
	st, err := resumeScript.Run(ctx, c.rdb, []string{c.key(id)}).Text()
	if err != nil {
		return Status{}, fmt.Errorf("resume campaign %s: %w", id, err)
	}
	switch State(st) {
	case "":
		return Status{}, fmt.Errorf("campaign %s: %w", id, ErrNotFound)
	case Running:
	default:
		return Status{}, &StateError{ID: id, State: State(st), Want: "only a paused campaign can be resumed"}
	}
	if err := c.unpark(ctx, id); err != nil {
		return Status{}, err
	}
	cp, err := c.Get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	audience, err := c.snapshot(ctx, cp)
	if err != nil {
		return Status{}, err
	}
	// Finish an interrupted fan-out (a no-op apart from the completion check otherwise),
	// unless another process is at it.
	return c.underLease(ctx, id, func(lease *fanoutLease) error {
		return c.fanout(ctx, cp, audience, nil, lease)
	})
}

func (c *Campaigns) parkedKey(id string) string { return c.key(id) + ":parked" }

// unpark moves parked jobs back to herald.outbound in chunks: each chunk is published
// before it is removed, so a crash in between re-publishes it (harmless: claims).
func (c *Campaigns) unpark(ctx context.Context, id string) error {
	key := c.parkedKey(id)
	for {
		raw, err := c.rdb.LRange(ctx, key, 0, int64(c.chunk)-1).Result()
		if err != nil {
			return fmt.Errorf("campaign %s: read parked jobs: %w", id, err)
		}
		if len(raw) == 0 {
			return nil
		}
		msgs := make([]kafka.Message, 0, len(raw))
		for _, v := range raw {
			j, err := UnmarshalJob([]byte(v))
			if err != nil {
				continue // cannot happen unless someone wrote garbage there; drop it
			}
			msgs = append(msgs, kafka.Message{Key: []byte(j.Sender), Value: []byte(v)})
		}
		if err := c.outbound.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("campaign %s: re-queue parked jobs: %w", id, err)
		}
		if err := c.rdb.LTrim(ctx, key, int64(len(raw)), -1).Err(); err != nil {
			return fmt.Errorf("campaign %s: %w", id, err)
		}
	}
}

// States returns the current state of each campaign, one round trip.
func (c *Campaigns) States(ctx context.Context, ids []string) ([]State, error) {
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, c.key(id), "state")
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("campaign states: %w", err)
	}
	out := make([]State, len(ids))
	for i, cmd := range cmds {
		out[i] = State(cmd.Val())
	}
	return out, nil
}

// fanoutDoneScript records the end of fan-out and completes the campaign if every job is already done.
var fanoutDoneScript = redis.NewScript(`
redis.call('HSET', KEYS[1], 'fanout_done', '1')
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
local aud = tonumber(redis.call('HGET', KEYS[1], 'audience') or '0')
if done >= aud and redis.call('HGET', KEYS[1], 'state') == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'completed_at', ARGV[1])
end
return 1
`)

// Launch starts a campaign: it snapshots the audience (once: a relaunch reuses the
// snapshot) and fans out one job per member from the last checkpoint. Launching a
// campaign whose fan-out is finished is a no-op; launching one whose fan-out was cut off
// resumes it. While another process fans the campaign out (it holds the fan-out lease),
// Launch changes nothing and returns the status. progress, if not nil, is told how many
// jobs have been queued.
func (c *Campaigns) Launch(ctx context.Context, id string, progress func(queued, audience int64)) (Status, error) {
	cp, err := c.Get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	return c.underLease(ctx, id, func(lease *fanoutLease) error {
		state, err := startScript.Run(ctx, c.rdb, []string{c.key(id)}, c.now().UnixMilli()).Text()
		if err != nil {
			return fmt.Errorf("launch campaign %s: %w", id, err)
		}
		if State(state) != Running {
			return nil
		}
		// Listed before the fan-out starts: if this process dies, the scheduler finishes it.
		if err := c.rdb.SAdd(ctx, c.fanoutsKey(), id).Err(); err != nil {
			return fmt.Errorf("launch campaign %s: %w", id, err)
		}
		audience, err := c.snapshot(ctx, cp)
		if err != nil {
			return err
		}
		return c.fanout(ctx, cp, audience, progress, lease)
	})
}

// snapshot stores the campaign's audience the first time and loads it afterwards.
func (c *Campaigns) snapshot(ctx context.Context, cp Campaign) (*roaring.Bitmap, error) {
	key := c.key(cp.ID) + ":audience"
	if bm, err := c.loadSnapshot(ctx, cp.ID); err != nil || bm != nil {
		return bm, err
	}
	bm, err := c.segments.Evaluate(ctx, cp.Segment)
	if err != nil {
		return nil, fmt.Errorf("campaign %s: segment %q: %w", cp.ID, cp.Segment, err)
	}
	bm.RunOptimize()
	var buf bytes.Buffer
	if _, err := bm.WriteTo(&buf); err != nil {
		return nil, err
	}
	ok, err := c.rdb.SetNX(ctx, key, buf.Bytes(), 0).Result()
	if err != nil {
		return nil, fmt.Errorf("campaign %s: store audience: %w", cp.ID, err)
	}
	if !ok { // another launcher stored it first: use theirs
		return c.snapshot(ctx, cp)
	}
	if err := c.rdb.HSet(ctx, c.key(cp.ID), "audience", bm.GetCardinality()).Err(); err != nil {
		return nil, fmt.Errorf("campaign %s: %w", cp.ID, err)
	}
	return bm, nil
}

// SenderFor routes a contact to one of the campaign's senders (round-robin by contact id).
func (cp Campaign) SenderFor(contact uint32) string {
	return cp.Senders[int(contact)%len(cp.Senders)]
}

// fanout writes one job (and one queued event) per audience member above the checkpoint,
// moving the checkpoint after each chunk and renewing the fan-out lease (nil: none). A
// crash between a write and its checkpoint re-queues at most one chunk, which the
// workers' claims make harmless.
func (c *Campaigns) fanout(ctx context.Context, cp Campaign, audience *roaring.Bitmap, progress func(int64, int64), lease *fanoutLease) error {
	key := c.key(cp.ID)
	cursor, err := c.rdb.HGet(ctx, key, "fanout_cursor").Int64()
	if err != nil && err != redis.Nil {
		return fmt.Errorf("campaign %s: read checkpoint: %w", cp.ID, err)
	}
	total := int64(audience.GetCardinality())
	queued := int64(0)
	if cursor > 0 {
		queued = int64(audience.Rank(uint32(cursor)))
	}
	it := audience.Iterator()
	if cursor > 0 {
		it.AdvanceIfNeeded(uint32(cursor) + 1)
	}
	jobs := make([]kafka.Message, 0, c.chunk)
	evs := make([]kafka.Message, 0, c.chunk)
	flush := func(last uint32) error {
		if len(jobs) == 0 {
			return nil
		}
		if err := c.events.WriteMessages(ctx, evs...); err != nil {
			return fmt.Errorf("campaign %s: publish queued events: %w", cp.ID, err)
		}
		if err := c.outbound.WriteMessages(ctx, jobs...); err != nil {
			return fmt.Errorf("campaign %s: publish jobs: %w", cp.ID, err)
		}
		queued += int64(len(jobs))
		if err := c.rdb.HSet(ctx, key, "fanout_cursor", last, "queued", queued).Err(); err != nil {
			return fmt.Errorf("campaign %s: checkpoint: %w", cp.ID, err)
		}
		if err := lease.renew(ctx); err != nil {
			return fmt.Errorf("campaign %s: %w", cp.ID, err)
		}
		if progress != nil {
			progress(queued, total)
		}
		jobs, evs = jobs[:0], evs[:0]
		return nil
	}
	route, err := c.routerFor(ctx, cp, NewSenders(c.rdb, c.prefix))
	if err != nil {
		return err
	}
	now := c.now()
	var last uint32
	for it.HasNext() {
		id := it.Next()
		last = id
		sender := route(id)
		jobs = append(jobs, kafka.Message{Key: []byte(sender), Value: Job{Campaign: cp.ID, Contact: id, Sender: sender}.Marshal()})
		ev := events.New(events.Queued, cp.ID, id, now)
		ev.SenderID, ev.Channel, ev.Template = sender, cp.Channel, cp.Template
		b, _ := ev.Marshal()
		evs = append(evs, kafka.Message{Key: kafkax.ContactKey(id), Value: b})
		if len(jobs) == c.chunk {
			if err := flush(last); err != nil {
				return err
			}
			if st, err := c.rdb.HGet(ctx, key, "state").Result(); err == nil && (State(st) == Cancelled || State(st) == Paused) {
				if State(st) == Cancelled {
					_ = c.rdb.SRem(ctx, c.fanoutsKey(), cp.ID).Err() // or the scheduler drops it later
				}
				return nil // cancelled or paused mid-fan-out: queue no more (resume continues)
			}
		}
	}
	if err := flush(last); err != nil {
		return err
	}
	if progress != nil && total == 0 {
		progress(0, 0)
	}
	if err := fanoutDoneScript.Run(ctx, c.rdb, []string{key}, c.now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("campaign %s: finish fan-out: %w", cp.ID, err)
	}
	if err := c.rdb.SRem(ctx, c.fanoutsKey(), cp.ID).Err(); err != nil {
		return fmt.Errorf("campaign %s: finish fan-out: %w", cp.ID, err)
	}
	return nil
}

// Quiet returns the campaign's own quiet hours, or nil when it has none (the policy's
// defaults apply).
func (cp Campaign) Quiet() (*throttle.QuietHours, error) {
	if cp.QuietHours == "" && cp.AllowedDays == "" {
		return nil, nil
	}
	q, err := throttle.ParseQuietHours(cp.QuietHours)
	if err != nil {
		return nil, err
	}
	if q.Days, err = throttle.ParseDays(cp.AllowedDays); err != nil {
		return nil, err
	}
	return &q, nil
}

// ReasonHoldout is the skip reason of the contacts a campaign keeps out as its control group.
const ReasonHoldout = "holdout"

// InHoldout reports whether contact is in the campaign's holdout group.
func (cp Campaign) InHoldout(contact uint32) bool {
	if cp.Holdout <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(cp.ID))
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], contact)
	h.Write(b[:])
	return float64(h.Sum64()>>11)/(1<<53) < cp.Holdout
}

func (c *Campaigns) restrictedKey(id string) string { return c.key(id) + ":restricted" }

// RestrictCountry records that the campaign must stop trying country (ISO 3166 alpha-2)
// on sender (its provider-side id): the provider refused it (WhatsApp 130497). Workers
// skip the campaign's other jobs there as country_restricted.
func (c *Campaigns) RestrictCountry(ctx context.Context, id, sender, country string) error {
	if err := c.rdb.SAdd(ctx, c.restrictedKey(id), sender+":"+country).Err(); err != nil {
		return fmt.Errorf("campaign %s: restrict country: %w", id, err)
	}
	return nil
}

// Restrictions returns, per campaign, the "sender:country" pairs it must not try (one
// round trip for all).
func (c *Campaigns) Restrictions(ctx context.Context, ids []string) (map[string]map[string]bool, error) {
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.SMembers(ctx, c.restrictedKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("campaign restrictions: %w", err)
	}
	out := map[string]map[string]bool{}
	for i, cmd := range cmds {
		for _, m := range cmd.Val() {
			if out[ids[i]] == nil {
				out[ids[i]] = map[string]bool{}
			}
			out[ids[i]][m] = true
		}
	}
	return out, nil
}
