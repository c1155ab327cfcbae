package recurring

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/throttle"
)

// Spec is a recurring campaign: a campaign template (everything `campaigns create`
// takes) and when to run it: a cron expression in a named zone, or a time of day in each
// recipient's own zone on some days of the week.
type Spec struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Campaign is the template of every run: segment, template, senders, channel,
	// purpose, limits, quiet hours, holdout. Its id and name are the run's.
	Campaign dispatcher.Campaign `json:"campaign"`
	// Cron (5 fields, or @daily…) read in Zone (IANA). Either Cron or LocalTime.
	Cron string `json:"cron,omitempty"`
	Zone string `json:"zone,omitempty"`
	// LocalTime ("10:00") sends each contact at that time of its own zone (profile,
	// else phone number, else country; else the policy's fallback), on Days ("mon-fri";
	// "" every day).
	LocalTime string `json:"local_time,omitempty"`
	Days      string `json:"days,omitempty"`
	// ExcludeReachedWithinMS leaves out of a run the contacts an earlier run of this
	// schedule sent a message to within that long before the run (0: nobody left out).
	ExcludeReachedWithinMS int64     `json:"exclude_reached_within_ms,omitempty"`
	MaxRuns                int       `json:"max_runs,omitempty"`    // runs after which the schedule ends (0: no limit)
	Until                  time.Time `json:"until,omitzero"`        // no run after this instant
	CatchUpMS              int64     `json:"catch_up_ms,omitempty"` // how late a missed run may still start (0: DefaultCatchUp, 1h)
	Created                time.Time `json:"created_at,omitzero"`
}

// DefaultCatchUp is how late a missed instant still runs when the schedule sets none.
const DefaultCatchUp = time.Hour

// ExcludeWindow is ExcludeReachedWithinMS as a duration.
func (s Spec) ExcludeWindow() time.Duration {
	return time.Duration(s.ExcludeReachedWithinMS) * time.Millisecond
}

// CatchUpWindow is how late a missed instant may still run.
func (s Spec) CatchUpWindow() time.Duration {
	if s.CatchUpMS <= 0 {
		return DefaultCatchUp
	}
	return time.Duration(s.CatchUpMS) * time.Millisecond
}

// State is a schedule's state.
type State string

// Schedule states.
const (
	Active State = "active"
	Paused State = "paused"
	Ended  State = "ended" // max runs reached or past until: runs no more
)

// Schedule is a stored schedule and where it stands.
type Schedule struct {
	Spec
	State     State     `json:"state"`
	Runs      int       `json:"runs"`                 // runs started so far
	NextRunAt time.Time `json:"next_run_at,omitzero"` // the next instant (active schedules)
	EndReason string    `json:"end_reason,omitempty"` // max_runs or until, when ended
}

// Duration is a time.Duration that reads and writes days as "7d" (also "36h", "1d12h",
// "90m").
type Duration time.Duration

// ParseDuration reads "7d", "1d12h", "36h", "90m" (any time.ParseDuration form, with
// whole days first).
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	var days int64
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseInt(s[:i], 10, 32)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("duration %q: want e.g. 7d, 36h, 1d12h or 90m", s)
		}
		days, s = n, s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		var err error
		if rest, err = time.ParseDuration(s); err != nil || rest < 0 {
			return 0, fmt.Errorf("duration %q: want e.g. 7d, 36h, 1d12h or 90m", s)
		}
	}
	if days > 100*366 {
		return 0, fmt.Errorf("duration of %d days: too long", days)
	}
	return Duration(time.Duration(days)*24*time.Hour + rest), nil
}

func (d Duration) String() string {
	t := time.Duration(d)
	if t == 0 {
		return "0"
	}
	days := t / (24 * time.Hour)
	rest := t % (24 * time.Hour)
	switch {
	case days == 0:
		return rest.String()
	case rest == 0:
		return strconv.FormatInt(int64(days), 10) + "d"
	default:
		return strconv.FormatInt(int64(days), 10) + "d" + rest.String()
	}
}

// MarshalText writes d as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what ParseDuration reads.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	*d = v
	return err
}

// FieldError is a spec field a schedule refuses (snake_case, as in JSON).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, a...)}
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// localDay is a local-time schedule's parsed time and days.
type localDay struct {
	minute int // after midnight
	days   throttle.Weekdays
}

// when is a spec's parsed timing.
type when struct {
	cron  *Cron
	local *localDay
}

// parseWhen checks the timing fields and returns them parsed.
func (s Spec) parseWhen() (when, error) {
	switch {
	case s.Cron != "" && s.LocalTime != "":
		return when{}, fieldErr("cron", "give either a cron expression (--cron) or a local time (--local-time), not both")
	case s.Cron != "":
		if s.Days != "" {
			return when{}, fieldErr("days", "days go with --local-time; with --cron put them in the expression (its fifth field: mon-fri)")
		}
		c, err := ParseCron(s.Cron, s.Zone)
		if err != nil {
			field := "cron"
			if strings.HasPrefix(err.Error(), "zone") {
				field = "zone"
			}
			return when{}, &FieldError{Field: field, Err: err}
		}
		return when{cron: c}, nil
	case s.LocalTime != "":
		if s.Zone != "" {
			return when{}, fieldErr("zone", "a local-time schedule runs in each recipient's zone: leave --zone out")
		}
		m, err := parseClock(s.LocalTime)
		if err != nil {
			return when{}, &FieldError{Field: "local_time", Err: err}
		}
		d, err := throttle.ParseDays(s.Days)
		if err != nil {
			return when{}, &FieldError{Field: "days", Err: err}
		}
		return when{local: &localDay{minute: m, days: d}}, nil
	}
	return when{}, fieldErr("cron", "say when: --cron '0 10 * * mon' --zone Europe/Berlin, or --local-time 10:00 [--days mon-fri]")
}

func parseClock(s string) (int, error) {
	hh, mm, ok := strings.Cut(strings.TrimSpace(s), ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(mm) != 2 || len(hh) < 1 || len(hh) > 2 || h < 0 || h > 23 || m < 0 || m > 59 || hh[0] == '+' || mm[0] == '+' || mm[0] == '-' {
		return 0, fmt.Errorf("local time %q: want HH:MM on a 24-hour clock, e.g. 10:00", s)
	}
	return h*60 + m, nil
}

// Validate checks what the schedule itself holds (the campaign template is checked by
// the caller against templates, senders and segments).
func (s Spec) Validate() error {
	if s.ID != "" && !idPattern.MatchString(s.ID) {
		return fieldErr("id", "id %q: want 1 to 40 of a-z, 0-9, _ and -, starting with a letter or digit", s.ID)
	}
	w, err := s.parseWhen()
	if err != nil {
		return err
	}
	if s.MaxRuns < 0 {
		return fieldErr("max_runs", "max runs %d: want 0 (no limit) or more", s.MaxRuns)
	}
	if s.ExcludeReachedWithinMS < 0 {
		return fieldErr("exclude_reached_within_ms", "exclude-reached-within must not be negative")
	}
	if s.CatchUpMS < 0 {
		return fieldErr("catch_up_ms", "catch-up window must not be negative")
	}
	if w.local != nil {
		// The campaign's own quiet hours and days bound a local-time run's sends: read them
		// first, so a bad one is named as the campaign's.
		if _, err := throttle.ParseQuietHours(s.Campaign.QuietHours); err != nil {
			return &FieldError{Field: "campaign/quiet_hours", Err: err}
		}
		if _, err := throttle.ParseDays(s.Campaign.AllowedDays); err != nil {
			return &FieldError{Field: "campaign/allowed_days", Err: err}
		}
		if _, _, err := s.localQuiet(w.local, time.Monday); err != nil {
			return &FieldError{Field: "local_time", Err: err}
		}
	}
	return nil
}

// earliestOffset is the earliest zone on Earth (UTC+14, Pacific/Kiritimati): a
// local-time run starts when its day's time comes there first.
const earliestOffset = 14 * time.Hour

// next returns the first instant of the schedule after t (zero: none).
func (w when) next(t time.Time) time.Time {
	if w.cron != nil {
		return w.cron.Next(t)
	}
	// The run of local date D starts at D hh:mm UTC+14; try the dates around t's.
	u := t.UTC()
	for i := -1; i < 9; i++ {
		d := time.Date(u.Year(), u.Month(), u.Day()+i, 0, 0, 0, 0, time.UTC)
		if !w.local.days.Has(d.Weekday()) {
			continue
		}
		at := d.Add(time.Duration(w.local.minute)*time.Minute - earliestOffset)
		if at.After(t) {
			return at
		}
	}
	return time.Time{}
}

// runID names the run of instant at: <schedule>-<yyyymmddThhmm> in the schedule's zone
// (a cron schedule) or of the recipients' local date and time (a local-time schedule).
func (w when) runID(schedule string, at time.Time) string {
	if w.cron != nil {
		return schedule + "-" + at.In(w.cron.loc).Format("20060102T1504")
	}
	return schedule + "-" + at.Add(earliestOffset).UTC().Format("20060102T1504")
}

// localDate is the recipients' date of a local-time run starting at at.
func localDate(at time.Time) time.Time { return at.Add(earliestOffset).UTC() }

// localQuiet returns the quiet hours and allowed day a local-time run of a day with
// weekday wd gets: sends wait until the local time, on that day only, and stop at the
// campaign's own quiet hours (else at midnight).
func (s Spec) localQuiet(l *localDay, wd time.Weekday) (quiet, days string, err error) {
	end := 24 * 60
	if s.Campaign.QuietHours != "" {
		q, err := throttle.ParseQuietHours(s.Campaign.QuietHours)
		if err != nil {
			return "", "", err
		}
		in := func(m int) bool {
			st, en := q.Start%1440, q.End%1440
			if st < en {
				return m >= st && m < en
			}
			return m >= st || m < en
		}
		if in(l.minute) {
			return "", "", fmt.Errorf("local time %02d:%02d falls in the campaign's quiet hours %s", l.minute/60, l.minute%60, s.Campaign.QuietHours)
		}
		if st := q.Start % 1440; st > l.minute {
			end = st
		}
	}
	if s.Campaign.AllowedDays != "" {
		d, err := throttle.ParseDays(s.Campaign.AllowedDays)
		if err != nil {
			return "", "", err
		}
		if l.days&throttle.AllDays != 0 && l.days&^d&throttle.AllDays != 0 {
			return "", "", fmt.Errorf("the schedule's days %s include days the campaign's allowed days %s exclude", l.days, d)
		}
	}
	days = throttle.Weekdays(1 << wd).String()
	if l.minute == 0 && end == 24*60 {
		return "", days, nil
	}
	endS := fmt.Sprintf("%02d:%02d", end/60, end%60)
	if end == 24*60 {
		endS = "00:00"
	}
	return fmt.Sprintf("%s-%02d:%02d", endS, l.minute/60, l.minute%60), days, nil
}

// runCampaign is the campaign of a run: the template with the run's id and name, and for
// a local-time run the quiet hours that hold each send until its recipient's time.
func (s Spec) runCampaign(w when, runID string, at time.Time) (dispatcher.Campaign, error) {
	cp := s.Campaign
	cp.ID, cp.Created = runID, time.Time{}
	name := s.Name
	if name == "" {
		name = "schedule " + s.ID
	}
	if w.cron != nil {
		cp.Name = name + " " + at.In(w.cron.loc).Format("2006-01-02 15:04 MST")
		return cp, nil
	}
	d := localDate(at)
	cp.Name = name + " " + d.Format("2006-01-02 15:04") + " local"
	q, days, err := s.localQuiet(w.local, d.Weekday())
	if err != nil {
		return cp, err
	}
	cp.QuietHours, cp.AllowedDays = q, days
	return cp, nil
}

// ErrNotFound is a schedule that does not exist (it is a dispatcher.ErrNotFound too).
var ErrNotFound = fmt.Errorf("schedule %w", dispatcher.ErrNotFound)
