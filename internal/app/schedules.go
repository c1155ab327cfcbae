package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/recurring"
)

// Schedules returns the store of recurring campaigns.
func (d *Deps) Schedules() (*recurring.Store, error) {
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	return recurring.NewStore(rdb, d.Cfg.Prefix, d.Cfg.Now), nil
}

// CreateSchedule checks a recurring campaign — its timing, and its campaign template as
// CreateCampaign checks a campaign — and stores it, active, or paused when paused is
// true (an API key without the launch permission may only create paused schedules).
// Refused input is a *FieldError; the campaign's fields are named campaign/<field>.
func CreateSchedule(ctx context.Context, d *Deps, comp *Components, sp recurring.Spec, paused bool) (recurring.Schedule, error) {
	if err := sp.Validate(); err != nil {
		return recurring.Schedule{}, scheduleFieldErr(err)
	}
	cp, err := CheckCampaign(ctx, d, comp, sp.Campaign)
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return recurring.Schedule{}, &FieldError{Field: "campaign/" + fe.Field, Err: fe.Err}
		}
		return recurring.Schedule{}, err
	}
	cp.ID, cp.Created = "", time.Time{}
	sp.Campaign = cp
	if sp.ExcludeReachedWithinMS > 0 && d.Cfg.ClickHouseDSN == "" {
		return recurring.Schedule{}, fieldErr("exclude_reached_within_ms", "excluding reached contacts reads the sends from ClickHouse: set HERALD_CLICKHOUSE_DSN (on the scheduler too)")
	}
	store, err := d.Schedules()
	if err != nil {
		return recurring.Schedule{}, err
	}
	sch, err := store.Create(ctx, sp, paused)
	if err != nil {
		return recurring.Schedule{}, scheduleFieldErr(err)
	}
	return sch, nil
}

func scheduleFieldErr(err error) error {
	var fe *recurring.FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: fe.Field, Err: fe.Err}
	}
	return err
}

// RunSummary is a run of a schedule with its campaign's progress and funnel.
type RunSummary struct {
	recurring.Run
	State  string                 `json:"state,omitempty"` // the run's campaign state
	Sent   int64                  `json:"sent"`
	Failed int64                  `json:"failed"`
	Skip   int64                  `json:"skipped"`
	Funnel []analytics.FunnelStep `json:"funnel"` // from ClickHouse (empty without it)
}

// ScheduleRuns lists up to limit runs of a schedule, newest first, each with its
// campaign's counters and, when ClickHouse is configured, its funnel.
func ScheduleRuns(ctx context.Context, d *Deps, comp *Components, id string, limit int64) ([]RunSummary, error) {
	store, err := d.Schedules()
	if err != nil {
		return nil, err
	}
	runs, err := store.Runs(ctx, id, limit)
	if err != nil {
		return nil, err
	}
	out := make([]RunSummary, len(runs))
	for i, r := range runs {
		out[i].Run, out[i].Funnel = r, []analytics.FunnelStep{}
		if r.Status != recurring.RunLaunched {
			continue
		}
		st, err := comp.Campaigns.Status(ctx, r.ID)
		if err != nil {
			continue // its campaign is gone
		}
		out[i].State, out[i].Sent, out[i].Failed, out[i].Skip = string(st.State), st.Sent, st.Failed, st.Skipped
	}
	if d.Cfg.ClickHouseDSN == "" {
		return out, nil
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Status != recurring.RunLaunched {
			continue
		}
		f, err := analytics.Funnel(ctx, conn, out[i].ID)
		if err != nil {
			return nil, fmt.Errorf("run %s: %w", out[i].ID, err)
		}
		out[i].Funnel = f.Steps
	}
	return out, nil
}

// Firer returns the firer of recurring campaigns the scheduler's leader ticks: it
// answers exclude-reached-within from ClickHouse when one is configured (connected at
// first use, so a ClickHouse down at start delays only the runs that need it).
func Firer(d *Deps, comp *Components) (*recurring.Firer, error) {
	store, err := d.Schedules()
	if err != nil {
		return nil, err
	}
	f := &recurring.Firer{Store: store, Campaigns: comp.Campaigns, Segments: comp.Contacts, Logger: d.Cfg.Logger, Now: d.Cfg.Now}
	if d.Cfg.ClickHouseDSN != "" {
		f.Reached = lazyReached{d}
	}
	return f, nil
}

// lazyReached connects to ClickHouse when first asked.
type lazyReached struct{ d *Deps }

func (l lazyReached) SentSince(ctx context.Context, campaigns []string, since time.Time) (*roaring.Bitmap, error) {
	conn, err := l.d.ClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	return analytics.Reached{Conn: conn}.SentSince(ctx, campaigns, since)
}

func (l lazyReached) SentCounts(ctx context.Context, campaigns []string) (map[string]uint64, error) {
	conn, err := l.d.ClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	return analytics.Reached{Conn: conn}.SentCounts(ctx, campaigns)
}

// ScheduleTick is how often the scheduler's leader looks for due schedule instants.
const ScheduleTick = time.Second
