package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
)

// Delayed holds send jobs that may not go yet — deferred by the policy (quiet hours, pair
// rate, daily tier…), retries waiting out their backoff, a sender's overflow beyond what
// its rate allows soon — in one Redis sorted set scored by the time each job is due. The
// Scheduler moves due jobs back to herald.outbound. So a job that must wait never holds a
// worker, a batch or a Kafka partition: other senders' jobs keep flowing.
//
// A job is added before its Kafka offset is committed and removed only after it is back
// in Kafka, so a crash at any point loses nothing; it may duplicate a job, which the
// Tracker's claim turns into a no-op.
type Delayed struct {
	rdb redis.UniversalClient
	key string
}

// NewDelayed returns the delayed-job set under prefix.
func NewDelayed(rdb redis.UniversalClient, prefix string) *Delayed {
	return &Delayed{rdb: rdb, key: prefix + "{delayed}:jobs"}
}

// Add stores jobs, each due at its NotBefore (a zero NotBefore is due at once).
func (d *Delayed) Add(ctx context.Context, jobs []Job) error {
	if len(jobs) == 0 {
		return nil
	}
	zs := make([]redis.Z, len(jobs))
	for i, j := range jobs {
		var due int64
		if !j.NotBefore.IsZero() {
			due = j.NotBefore.UnixMilli()
		}
		zs[i] = redis.Z{Score: float64(due), Member: j.Marshal()}
	}
	for len(zs) > 0 {
		n := min(len(zs), 5000)
		if err := d.rdb.ZAdd(ctx, d.key, zs[:n]...).Err(); err != nil {
			return fmt.Errorf("delay jobs: %w", err)
		}
		zs = zs[n:]
	}
	return nil
}

// Due returns up to limit jobs due at now, earliest first, as stored (encoded).
func (d *Delayed) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	res, err := d.rdb.ZRangeByScore(ctx, d.key, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("read due jobs: %w", err)
	}
	return res, nil
}

// DelayedStats describes the delayed set.
type DelayedStats struct {
	Jobs int64     `json:"jobs"`
	Next time.Time `json:"next,omitzero"` // when the earliest job is due
}

// Stats returns how many jobs wait and when the first is due.
func (d *Delayed) Stats(ctx context.Context) (DelayedStats, error) {
	pipe := d.rdb.Pipeline()
	n := pipe.ZCard(ctx, d.key)
	first := pipe.ZRangeWithScores(ctx, d.key, 0, 0)
	if _, err := pipe.Exec(ctx); err != nil {
		return DelayedStats{}, fmt.Errorf("delayed jobs: %w", err)
	}
	st := DelayedStats{Jobs: n.Val()}
	if zs := first.Val(); len(zs) > 0 {
		st.Next = time.UnixMilli(int64(zs[0].Score))
	}
	return st, nil
}

// Scheduler moves due delayed jobs back to herald.outbound, and launches scheduled
// campaigns when their time comes. Any number may run (one in
// every worker process, say): one leader at a time does the work, holding a Redis lock
// with a fencing token that it renews; the others wait to take over.
type Scheduler struct {
	Delayed  *Delayed
	Outbound Publisher
	Redis    redis.UniversalClient
	Prefix   string
	Logger   *slog.Logger
	Batch    int           // jobs moved per round (default 2000)
	Poll     time.Duration // longest sleep between rounds (default 200 ms)
	TTL      time.Duration // leader lock lifetime (default 10 s)

	// Campaigns and Tracker, when set, let the leader also re-queue sends left in doubt
	// longer than StaleAfter (default 10 min): started by a worker that died before the
	// provider got the request, so no status webhook will ever settle them.
	Campaigns  *Campaigns
	Tracker    *Tracker
	StaleAfter time.Duration
	// AdoptEvery is how often the leader looks for fan-outs whose process died and
	// finishes them (Campaigns.AdoptFanouts; default 5 s).
	AdoptEvery time.Duration
	// Jobs are periodic work only the leader does (the consent ledger's checkpoints).
	Jobs []LeaderJob
	// Now is the clock that says which delayed jobs are due (nil: time.Now).
	Now func() time.Time

	moved, requeued, adopted prometheus.Counter
	lastSweep, lastAdopt     time.Time
	launching                atomic.Bool
}

// LeaderJob is periodic work the scheduler's leader does: Run is called every Every
// (first when the scheduler becomes leader) in a goroutine of its own, one run at a time,
// while the scheduler leads; a run that overlaps a change of leader is not stopped, so a
// job must be safe to run twice at once (the ledger checkpoint takes a lock of its own).
// An error is logged and the job runs again at its next turn.
type LeaderJob struct {
	Name  string
	Every time.Duration
	Run   func(ctx context.Context) error
}

// leaderJobs runs the scheduler's jobs when they are due.
type leaderJobs struct {
	jobs    []LeaderJob
	last    []time.Time
	running []atomic.Bool
	wg      sync.WaitGroup
}

func newLeaderJobs(jobs []LeaderJob) *leaderJobs {
	return &leaderJobs{jobs: jobs, last: make([]time.Time, len(jobs)), running: make([]atomic.Bool, len(jobs))}
}

// start starts the jobs that are due and not running.
func (j *leaderJobs) start(ctx context.Context, log *slog.Logger) {
	for i, job := range j.jobs {
		if time.Since(j.last[i]) < job.Every || !j.running[i].CompareAndSwap(false, true) {
			continue
		}
		j.last[i] = time.Now()
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			defer j.running[i].Store(false)
			if err := job.Run(ctx); err != nil && ctx.Err() == nil {
				log.Warn("leader job failed", "job", job.Name, "err", err)
			}
		}()
	}
}

// RegisterMetrics exports the scheduler's counters to reg.
func (s *Scheduler) RegisterMetrics(reg prometheus.Registerer) {
	s.moved = promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "herald_scheduler_jobs_moved_total",
		Help: "Delayed jobs moved back to herald.outbound when due."})
	s.requeued = promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "herald_scheduler_stale_sends_requeued_total",
		Help: "Sends left in doubt past the stale limit (no outcome, no status webhook) and queued again."})
	s.adopted = promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "herald_scheduler_fanouts_adopted_total",
		Help: "Campaign fan-outs whose process died, finished by the scheduler's leader."})
}

// renewScript keeps the lock if we hold it (KEYS[1] lock, ARGV[1] token, ARGV[2] ttl ms).
var renewScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// removeScript removes moved jobs only while the caller still holds the lock (fencing: a
// leader that lost the lock while it was publishing leaves the jobs for the new leader;
// the copies it did publish are dropped by the claims).
var removeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = 0
for i = 2, #ARGV do n = n + redis.call('ZREM', KEYS[2], ARGV[i]) end
return n
`)

// Run moves due jobs until ctx is cancelled.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.Batch <= 0 {
		s.Batch = 2000
	}
	if s.Poll <= 0 {
		s.Poll = 200 * time.Millisecond
	}
	if s.TTL <= 0 {
		s.TTL = 10 * time.Second
	}
	if s.StaleAfter <= 0 {
		s.StaleAfter = 10 * time.Minute
	}
	if s.AdoptEvery <= 0 {
		s.AdoptEvery = 5 * time.Second
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "scheduler")
	tok := make([]byte, 12)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	lock := s.Prefix + "{delayed}:leader"
	leader := false
	jobs := newLeaderJobs(s.Jobs)
	defer jobs.wg.Wait()
	for {
		ok, err := renewScript.Run(ctx, s.Redis, []string{lock}, token, s.TTL.Milliseconds()).Int()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("scheduler lock", "err", err)
			leader = false
			if !sleepCtx(ctx, time.Second) {
				return nil
			}
			continue
		}
		if (ok == 1) != leader {
			leader = ok == 1
			log.Info("scheduler leadership", "leader", leader)
		}
		wait := s.Poll
		if leader {
			jobs.start(ctx, log)
			n, err := s.moveDue(ctx, lock, token)
			if err != nil && ctx.Err() == nil {
				log.Warn("move due jobs", "err", err)
			}
			if n == s.Batch {
				wait = 0 // more are due
			}
			if s.Campaigns != nil && s.launching.CompareAndSwap(false, true) {
				adopt := time.Since(s.lastAdopt) >= s.AdoptEvery
				if adopt {
					s.lastAdopt = time.Now()
				}
				// A launch fans out the whole audience: off the loop that moves due jobs.
				go func() {
					defer s.launching.Store(false)
					if ids, err := s.Campaigns.LaunchDue(ctx, time.Now()); err != nil && ctx.Err() == nil {
						log.Warn("launch scheduled campaigns", "err", err)
					} else if len(ids) > 0 {
						log.Info("scheduled campaigns launched", "campaigns", ids)
					}
					if !adopt {
						return
					}
					ids, err := s.Campaigns.AdoptFanouts(ctx)
					if err != nil && ctx.Err() == nil {
						log.Warn("finish fan-outs whose process died", "err", err)
					}
					if len(ids) > 0 {
						log.Info("fan-outs whose process died finished", "campaigns", ids)
						if s.adopted != nil {
							s.adopted.Add(float64(len(ids)))
						}
					}
				}()
			}
			if s.Campaigns != nil && s.Tracker != nil && time.Since(s.lastSweep) >= max(s.StaleAfter/10, time.Second) {
				s.lastSweep = time.Now()
				if err := s.sweepStale(ctx, log); err != nil && ctx.Err() == nil {
					log.Warn("re-queue stale sends", "err", err)
				}
			}
		} else {
			wait = s.TTL / 3
		}
		if wait > 0 && !sleepCtx(ctx, wait) {
			return nil
		}
	}
}

// moveDue publishes one batch of due jobs and removes them from the set.
func (s *Scheduler) moveDue(ctx context.Context, lock, token string) (int, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	due, err := s.Delayed.Due(ctx, now(), s.Batch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	msgs := make([]kafka.Message, 0, len(due))
	for _, v := range due {
		j, err := UnmarshalJob([]byte(v))
		if err != nil {
			// Only Herald writes this set; keep the bytes for the DLQ path of the worker.
			msgs = append(msgs, kafka.Message{Key: []byte("invalid"), Value: []byte(v)})
			continue
		}
		msgs = append(msgs, kafka.Message{Key: []byte(j.Sender), Value: []byte(v)})
	}
	if err := s.Outbound.WriteMessages(ctx, msgs...); err != nil {
		return 0, fmt.Errorf("publish due jobs: %w", err)
	}
	args := make([]any, 0, len(due)+1)
	args = append(args, token)
	for _, v := range due {
		args = append(args, v)
	}
	if _, err := removeScript.Run(ctx, s.Redis, []string{lock, s.Delayed.key}, args...).Int(); err != nil {
		return 0, fmt.Errorf("remove moved jobs: %w", err)
	}
	if s.moved != nil {
		s.moved.Add(float64(len(due)))
	}
	return len(due), nil
}

// ReasonSendInDoubt fails a send whose worker died while it was under way, on a channel
// whose provider never confirms acceptance (email): it may or may not have been sent,
// and sending it again could send it twice.
const ReasonSendInDoubt = "send_in_doubt"

// ProviderSettles reports whether a channel's provider confirms each accepted message
// with a status webhook that settles a send left in doubt (WhatsApp, SMS); email's
// SMTP acceptance and Telegram's Bot API (no receipts for bots) leave no such trace.
func ProviderSettles(channel string) bool { return channel != "email" && channel != "telegram" }

// failInDoubt records the stale in-doubt sends of a campaign on a channel that does not
// settle them as failed (send_in_doubt): its event first, then the outcome.
func (s *Scheduler) failInDoubt(ctx context.Context, cp Campaign, cutoff time.Time, log *slog.Logger) error {
	stale, err := s.Tracker.StaleInDoubt(ctx, cp.ID, cutoff)
	if err != nil || len(stale) == 0 {
		return err
	}
	if s.Campaigns.events == nil {
		return fmt.Errorf("campaign %s: sends in doubt, but no events writer to record them", cp.ID)
	}
	now := time.Now()
	msgs := make([]kafka.Message, len(stale))
	keys := make([]Key, len(stale))
	outcomes := make([]string, len(stale))
	for i, c := range stale {
		ev := events.New(events.Failed, cp.ID, c, now)
		ev.Channel, ev.Template, ev.Reason = cp.Channel, cp.Template, ReasonSendInDoubt
		b, _ := ev.Marshal()
		msgs[i] = kafka.Message{Key: kafkax.ContactKey(c), Value: b}
		keys[i], outcomes[i] = Key{cp.ID, c}, OutcomeFailed
	}
	if err := s.Campaigns.events.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("record sends in doubt of campaign %s: %w", cp.ID, err)
	}
	if _, err := s.Tracker.Finish(ctx, keys, outcomes); err != nil {
		return err
	}
	log.Warn("sends in doubt past the stale limit recorded as failed (their worker died mid-send; the channel cannot tell whether they left)",
		"campaign", cp.ID, "contacts", len(stale), "stale_after", s.StaleAfter)
	return nil
}

// sweepStale re-queues the stale in-doubt sends of running campaigns.
func (s *Scheduler) sweepStale(ctx context.Context, log *slog.Logger) error {
	list, err := s.Campaigns.List(ctx, 500)
	if err != nil {
		return err
	}
	auto, err := s.Campaigns.autoStatuses(ctx, 2000) // journeys' campaigns
	if err != nil {
		return err
	}
	list = append(list, auto...)
	cutoff := time.Now().Add(-s.StaleAfter)
	for _, st := range list {
		if st.State == Running || st.State == Paused || st.State == Completed {
			// A campaign's fallbacks may still be under way once its first sends are done.
			if err := s.sweepStaleFallbacks(ctx, st.Campaign, cutoff); err != nil {
				return err
			}
		}
		if st.State != Running && st.State != Paused {
			continue
		}
		if !ProviderSettles(st.Channel) {
			if err := s.failInDoubt(ctx, st.Campaign, cutoff, log); err != nil {
				return err
			}
			continue
		}
		stale, err := s.Tracker.StaleSends(ctx, st.ID, cutoff)
		if err != nil || len(stale) == 0 {
			if err != nil {
				return err
			}
			continue
		}
		route, err := s.Campaigns.routerFor(ctx, st.Campaign, NewSenders(s.Campaigns.rdb, s.Campaigns.prefix))
		if err != nil {
			return err
		}
		msgs := make([]kafka.Message, len(stale))
		for i, c := range stale {
			sender := route(c)
			msgs[i] = kafka.Message{Key: []byte(sender), Value: Job{Campaign: st.ID, Contact: c, Sender: sender}.Marshal()}
		}
		if err := s.Outbound.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("re-queue stale sends of campaign %s: %w", st.ID, err)
		}
		if s.requeued != nil {
			s.requeued.Add(float64(len(stale)))
		}
		log.Warn("sends in doubt past the stale limit queued again (their worker died before the provider got them)",
			"campaign", st.ID, "contacts", len(stale), "stale_after", s.StaleAfter)
	}
	return nil
}
