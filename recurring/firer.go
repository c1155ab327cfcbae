package recurring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/dispatcher"
)

// Segments evaluates a segment expression (segments.Store).
type Segments interface {
	Evaluate(ctx context.Context, expr string) (*roaring.Bitmap, error)
}

// Reached tells which contacts campaigns sent a message to (analytics.Reached, from
// ClickHouse's events).
type Reached interface {
	// SentSince returns the contacts with a sent event of one of campaigns at or after since.
	SentSince(ctx context.Context, campaigns []string, since time.Time) (*roaring.Bitmap, error)
	// SentCounts returns, per campaign, the distinct contacts with a sent event.
	SentCounts(ctx context.Context, campaigns []string) (map[string]uint64, error)
}

// Firer starts the runs of schedules when their instants come. Any number of processes
// may run one (the scheduler's leader does, as a leader job): each instant is claimed by
// one atomic compare-and-set on the schedule's next instant, so it runs once; a claimed
// run is listed as pending until its campaign is launched, so a process that dies
// between claim and launch leaves it to the next tick of any firer, and launching a run
// twice launches one campaign (its id is fixed by the instant, its snapshot stored once,
// its sends claimed per contact).
type Firer struct {
	Store     *Store
	Campaigns *dispatcher.Campaigns
	Segments  Segments
	// Reached answers exclude-reached-within; nil: schedules that exclude cannot run
	// (their runs wait, pending, for a firer that has it).
	Reached Reached
	// LagWait is how long a run waits for the event sink to hold every send of the
	// earlier runs it excludes (default 10 s); past it, an earlier run whose sends are
	// not all in ClickHouse has its whole audience excluded.
	LagWait time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
	// Claimed, when set, is called after this firer claimed an instant that runs, before
	// its run is launched (fault tests kill the process there).
	Claimed func(schedule string, at time.Time)
}

func (f *Firer) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Firer) log() *slog.Logger {
	if f.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Logger.With("component", "recurring")
}

// maxSkipRecords bounds the skipped instants one claim records (a minutely schedule
// whose scheduler was down for a week records its latest ones).
const maxSkipRecords = 100

// Tick claims the instants that are due and launches the claimed runs. It returns the
// ids of the runs it launched.
func (f *Firer) Tick(ctx context.Context) ([]string, error) {
	now := f.now()
	ids, err := f.Store.rdb.ZRangeByScore(ctx, f.Store.dueKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 100}).Result()
	if err != nil {
		return nil, fmt.Errorf("due schedules: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if err := f.claim(ctx, id, now); err != nil {
			errs = append(errs, err)
		}
	}
	launched, err := f.LaunchPending(ctx)
	errs = append(errs, err)
	return launched, errors.Join(errs...)
}

// claim moves schedule id past its due instants: the latest one within the catch-up
// window runs, the others are recorded as skipped.
func (f *Firer) claim(ctx context.Context, id string, now time.Time) error {
	sch, err := f.Store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return f.Store.rdb.ZRem(ctx, f.Store.dueKey(), id).Err()
	}
	if err != nil {
		return err
	}
	if sch.State != Active || sch.NextRunAt.IsZero() || sch.NextRunAt.After(now) {
		return nil
	}
	w, err := sch.parseWhen()
	if err != nil {
		return fmt.Errorf("schedule %s: %w", id, err)
	}
	catchUp := sch.CatchUpWindow()
	// The instants due: the stored next one and those after it up to now.
	due := []time.Time{sch.NextRunAt}
	skippedOlder := 0
	for {
		n := w.next(due[len(due)-1])
		if n.IsZero() || n.After(now) || (!sch.Until.IsZero() && n.After(sch.Until)) {
			break
		}
		due = append(due, n)
		if len(due) > maxSkipRecords+1 {
			due = due[1:]
			skippedOlder++
		}
	}
	latest := due[len(due)-1]
	runIt := now.Sub(latest) <= catchUp && (sch.MaxRuns == 0 || sch.Runs < sch.MaxRuns)
	type rec struct {
		at  int64
		run Run
	}
	var skips []rec
	for i, at := range due {
		if runIt && i == len(due)-1 {
			break
		}
		r := Run{ID: w.runID(id, at), Schedule: id, ScheduledAt: at.UTC(), Status: RunSkipped, Reason: ReasonMissed, ClaimedAt: now.UTC()}
		if now.Sub(at) <= catchUp {
			r.Reason = ReasonSuperseded
			r.Detail = "missed while no scheduler ran; a later missed instant ran instead"
		} else {
			r.Detail = fmt.Sprintf("missed while no scheduler ran: %s late, past the catch-up window of %s", now.Sub(at).Round(time.Second), catchUp)
		}
		skips = append(skips, rec{at.UnixMilli(), r})
	}
	runs := sch.Runs
	args := []any{id, sch.NextRunAt.UnixMilli()}
	var runAt, runRec string
	if runIt {
		runs++
		r := Run{ID: w.runID(id, latest), Schedule: id, ScheduledAt: latest.UTC(), Status: RunPending, ClaimedAt: now.UTC(), LateMS: now.Sub(latest).Milliseconds()}
		b, _ := json.Marshal(r)
		runAt, runRec = strconv.FormatInt(latest.UnixMilli(), 10), string(b)
	}
	next, endReason := w.next(latest), ""
	switch {
	case sch.MaxRuns > 0 && runs >= sch.MaxRuns:
		next, endReason = time.Time{}, "max_runs"
	case next.IsZero() || (!sch.Until.IsZero() && next.After(sch.Until)):
		next, endReason = time.Time{}, "until"
	}
	nextS := ""
	if !next.IsZero() {
		nextS = strconv.FormatInt(next.UnixMilli(), 10)
	}
	args = append(args, nextS, endReason, runAt, runRec)
	for _, s := range skips {
		b, _ := json.Marshal(s.run)
		args = append(args, s.at, string(b))
	}
	ok, err := claimScript.Run(ctx, f.Store.rdb, []string{f.Store.key(id), f.Store.dueKey(), f.Store.pendingKey(), f.Store.runsKey(id), f.Store.runIdxKey(id)}, args...).Int()
	if err != nil {
		return fmt.Errorf("claim schedule %s: %w", id, err)
	}
	if ok == 1 && runIt && f.Claimed != nil {
		f.Claimed(id, latest)
	}
	if ok == 1 && (len(skips) > 0 || skippedOlder > 0) {
		f.log().Warn("schedule instants missed while no scheduler ran", "schedule", id, "skipped", len(skips)+skippedOlder, "ran_late", runIt)
	}
	return nil
}

// LaunchPending launches the runs claimed and not launched yet (claimed by this tick, or
// left by a process that died), oldest first, and returns the ids it launched.
func (f *Firer) LaunchPending(ctx context.Context) ([]string, error) {
	members, err := f.Store.rdb.ZRange(ctx, f.Store.pendingKey(), 0, 99).Result()
	if err != nil {
		return nil, fmt.Errorf("pending runs: %w", err)
	}
	var launched []string
	var errs []error
	for _, m := range members {
		id, at, ok := parsePending(m)
		if !ok {
			_ = f.Store.rdb.ZRem(ctx, f.Store.pendingKey(), m).Err()
			continue
		}
		runID, err := f.launch(ctx, id, at)
		if err != nil {
			errs = append(errs, err)
			f.giveUp(ctx, id, at, err)
			continue
		}
		if runID != "" {
			launched = append(launched, runID)
		}
	}
	return launched, errors.Join(errs...)
}

// launch creates and launches the campaign of schedule id's run at instant at.
func (f *Firer) launch(ctx context.Context, id string, at int64) (string, error) {
	member := pendingMember(id, at)
	sch, err := f.Store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return "", f.Store.rdb.ZRem(ctx, f.Store.pendingKey(), member).Err()
	}
	if err != nil {
		return "", err
	}
	run, found, err := f.Store.run(ctx, id, at)
	if err != nil {
		return "", err
	}
	if !found || run.Status != RunPending {
		return "", f.Store.rdb.ZRem(ctx, f.Store.pendingKey(), member).Err()
	}
	// One launcher at a time (the others move on); the lock outlives a dead launcher by
	// a minute at most. Launching twice would still launch one campaign.
	lock := f.Store.lockKey(member)
	if ok, err := f.Store.rdb.SetNX(ctx, lock, "1", time.Minute).Result(); err != nil || !ok {
		return "", err
	}
	defer f.Store.rdb.Del(context.WithoutCancel(ctx), lock)
	w, err := sch.parseWhen()
	if err != nil {
		return "", err
	}
	instant := time.UnixMilli(at)
	cp, err := sch.runCampaign(w, run.ID, instant)
	if err == nil {
		cp, err = f.Campaigns.CreateRun(ctx, cp)
	}
	if err != nil {
		return "", fmt.Errorf("run %s: %w", run.ID, err)
	}
	aud, err := f.Campaigns.Audience(ctx, run.ID)
	if err != nil {
		return "", err
	}
	if aud == nil {
		members, err := f.Segments.Evaluate(ctx, cp.Segment)
		if err != nil {
			// A segment that no longer parses will not parse at the next tick either.
			run.Status, run.Reason, run.Detail = RunSkipped, ReasonFailed, err.Error()
			_, err := f.finishRun(ctx, id, at, run)
			return "", err
		}
		total := members.GetCardinality()
		if sch.ExcludeWindow() > 0 {
			excl, err := f.reached(ctx, sch, run, instant)
			if err != nil {
				return "", fmt.Errorf("run %s: contacts reached lately: %w", run.ID, err)
			}
			members.AndNot(excl)
		}
		run.Excluded = int64(total - members.GetCardinality())
		if aud, err = f.Campaigns.StoreAudience(ctx, run.ID, members); err != nil {
			return "", err
		}
	}
	st, err := f.Campaigns.Launch(ctx, run.ID, nil)
	if err != nil {
		return "", fmt.Errorf("launch run %s: %w", run.ID, err)
	}
	run.Status, run.LaunchedAt, run.Audience = RunLaunched, f.now().UTC(), int64(aud.GetCardinality())
	if ok, err := f.finishRun(ctx, id, at, run); err != nil || !ok {
		return "", err
	}
	f.log().Info("schedule run launched", "schedule", id, "run", run.ID, "audience", run.Audience, "excluded", run.Excluded, "state", st.State)
	return run.ID, nil
}

// finishRun records a pending run's outcome; false when it was not pending any more.
func (f *Firer) finishRun(ctx context.Context, id string, at int64, run Run) (bool, error) {
	b, _ := json.Marshal(run)
	n, err := finishRunScript.Run(ctx, f.Store.rdb, []string{f.Store.runsKey(id), f.Store.pendingKey()}, at, string(b), pendingMember(id, at)).Int()
	if err != nil {
		return false, fmt.Errorf("run %s: record: %w", run.ID, err)
	}
	return n == 1, nil
}

// reached returns the contacts this schedule's earlier runs sent a message to within
// ExcludeReachedWithin before instant, from ClickHouse's sent events (exact by each
// send's time), plus, for safety, everyone an earlier run may still message:
//   - a run not finished yet: its audience members without an outcome;
//   - a run whose sends are not all in ClickHouse yet (the sink lags): after waiting up
//     to LagWait, its whole audience.
//
// So a contact is never messaged twice within the window, and one outside it is
// excluded only when the sink is behind.
func (f *Firer) reached(ctx context.Context, sch Schedule, run Run, instant time.Time) (*roaring.Bitmap, error) {
	if f.Reached == nil {
		return nil, errors.New("this process has no ClickHouse to tell who earlier runs reached (set HERALD_CLICKHOUSE_DSN on the scheduler)")
	}
	since := instant.Add(-sch.ExcludeWindow())
	// Earlier runs that may have sent within the window: launched ones whose campaign
	// had not completed before since.
	ids, err := f.Store.rdb.ZRevRange(ctx, f.Store.runIdxKey(sch.ID), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	var runs []string
	statuses := map[string]dispatcher.Status{}
	for _, ms := range ids {
		at, _ := strconv.ParseInt(ms, 10, 64)
		if at == instant.UnixMilli() {
			continue
		}
		r, ok, err := f.Store.run(ctx, sch.ID, at)
		if err != nil {
			return nil, err
		}
		if !ok || r.Status != RunLaunched {
			continue
		}
		st, err := f.Campaigns.Status(ctx, r.ID)
		if errors.Is(err, dispatcher.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !st.CompletedAt.IsZero() && st.CompletedAt.Before(since) {
			continue
		}
		runs = append(runs, r.ID)
		statuses[r.ID] = st
	}
	out := roaring.New()
	if len(runs) == 0 {
		return out, nil
	}
	wait := f.LagWait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	lagging := map[string]bool{}
	for {
		counts, err := f.Reached.SentCounts(ctx, runs)
		if err != nil {
			return nil, err
		}
		clear(lagging)
		for _, id := range runs {
			st, err := f.Campaigns.Status(ctx, id)
			if err != nil {
				return nil, err
			}
			statuses[id] = st
			if counts[id] < uint64(st.Sent) {
				lagging[id] = true
			}
		}
		if len(lagging) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	sent, err := f.Reached.SentSince(ctx, runs, since)
	if err != nil {
		return nil, err
	}
	out.Or(sent)
	for _, id := range runs {
		st := statuses[id]
		switch {
		case lagging[id]:
			aud, err := f.Campaigns.Audience(ctx, id)
			if err != nil {
				return nil, err
			}
			if aud != nil {
				out.Or(aud)
			}
			f.log().Warn("the event sink has not stored every send of an earlier run: its whole audience is left out of this run", "run", run.ID, "earlier_run", id)
		case st.State != dispatcher.Completed && st.State != dispatcher.Cancelled:
			undone, err := f.Campaigns.Undone(ctx, id)
			if err != nil {
				return nil, err
			}
			out.Or(undone)
		}
	}
	return out, nil
}

// giveUp records a pending run that still fails to launch once its instant is older than
// the schedule's catch-up window as skipped (launch_failed), unless its campaign was
// launched already (then the next tick finishes it): a run is never started later than
// a missed one would be.
func (f *Firer) giveUp(ctx context.Context, id string, at int64, cause error) {
	sch, err := f.Store.Get(ctx, id)
	if err != nil || f.now().Sub(time.UnixMilli(at)) <= sch.CatchUpWindow() {
		return
	}
	run, ok, err := f.Store.run(ctx, id, at)
	if err != nil || !ok || run.Status != RunPending {
		return
	}
	if st, err := f.Campaigns.Status(ctx, run.ID); err == nil && st.State != dispatcher.Draft {
		return
	}
	run.Status, run.Reason, run.Detail = RunSkipped, ReasonFailed, cause.Error()
	if ok, _ := f.finishRun(ctx, id, at, run); ok {
		f.log().Warn("schedule run given up: it could not be launched within the catch-up window", "schedule", id, "run", run.ID, "err", cause)
	}
}
