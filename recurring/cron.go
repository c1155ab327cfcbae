package recurring

import (
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // schedules name IANA zones; they must load in minimal containers too

	"github.com/robfig/cron/v3"
)

// Cron is a parsed 5-field cron expression (minute hour day-of-month month day-of-week,
// names like mon and jan, ranges, steps and lists; or a descriptor: @yearly, @monthly,
// @weekly, @daily, @hourly) read as wall-clock times in a named IANA zone.
//
// Wall-clock times are resolved exactly on the days clocks change: a time the clocks skip
// (02:30 on a spring-forward night) fires once, at the moment the clocks jump (03:00);
// a time the clocks show twice (01:30 on an autumn night) fires once, at its first
// occurrence. So every matching wall time of a day fires at most once, and no day loses
// one.
type Cron struct {
	expr string
	spec *cron.SpecSchedule
	loc  *time.Location
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron reads a cron expression for zone (an IANA name such as Asia/Bangkok; "UTC").
func ParseCron(expr, zone string) (c *Cron, err error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("cron: empty expression: want 5 fields (minute hour day-of-month month day-of-week), e.g. \"0 10 * * mon-fri\"")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("cron %q: give the zone separately (--zone), not in the expression", expr)
	}
	if strings.HasPrefix(expr, "@every") {
		return nil, fmt.Errorf("cron %q: @every is not a calendar schedule: use a cron expression such as \"*/30 * * * *\"", expr)
	}
	loc, err := LoadZone(zone)
	if err != nil {
		return nil, err
	}
	defer func() { // the library must not take the process down on odd input
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("cron %q: cannot read it", expr)
		}
	}()
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %v: want 5 fields (minute hour day-of-month month day-of-week), e.g. \"0 10 * * mon-fri\"", expr, err)
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("cron %q: not a calendar schedule", expr)
	}
	c = &Cron{expr: expr, spec: spec, loc: loc}
	if c.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("cron %q: matches no date (such as the 30th of February)", expr)
	}
	return c, nil
}

// LoadZone loads an IANA zone name; "" is refused (a schedule names its zone).
func LoadZone(zone string) (*time.Location, error) {
	zone = strings.TrimSpace(zone)
	if zone == "" {
		return nil, errors.New("zone: a time zone is required, an IANA name such as Europe/Berlin or UTC")
	}
	if zone == "Local" {
		return nil, errors.New("zone \"Local\": name the zone (Europe/Berlin, UTC): the machine's own zone differs between processes")
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, fmt.Errorf("zone %q: not an IANA time zone name (Europe/Berlin, America/New_York, UTC)", zone)
	}
	return loc, nil
}

// String returns the expression as given.
func (c *Cron) String() string { return c.expr }

// Location is the zone the expression is read in.
func (c *Cron) Location() *time.Location { return c.loc }

// searchDays bounds the search for the next firing (a leap-day schedule fires every four
// years; eight leave room for a century year).
const searchDays = 8*366 + 1

// Next returns the first firing strictly after t, or the zero time when there is none
// within eight years.
func (c *Cron) Next(t time.Time) time.Time {
	local := t.In(c.loc)
	// Start a day early: a wall time of the previous date cannot fire after t unless the
	// zone's offset moved by a day, but starting there costs little.
	day := time.Date(local.Year(), local.Month(), local.Day()-1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < searchDays; i++ {
		d := day.AddDate(0, 0, i)
		if !c.dayMatches(d) {
			continue
		}
		for h := 0; h < 24; h++ {
			if c.spec.Hour&(1<<uint(h)) == 0 {
				continue
			}
			// Wall times map to instants in order: when the hour's last minute fires at
			// or before t, so do all of its minutes.
			if i < 3 && !Resolve(d.Year(), d.Month(), d.Day(), h, 59, c.loc).After(t) {
				continue
			}
			for m := 0; m < 60; m++ {
				if c.spec.Minute&(1<<uint(m)) == 0 {
					continue
				}
				if at := Resolve(d.Year(), d.Month(), d.Day(), h, m, c.loc); at.After(t) {
					return at
				}
			}
		}
	}
	return time.Time{}
}

const starBit = 1 << 63

// dayMatches applies cron's day rule to the date of d: month, then day of month and day
// of week, either matching when both are restricted.
func (c *Cron) dayMatches(d time.Time) bool {
	s := c.spec
	if s.Month&(1<<uint(d.Month())) == 0 {
		return false
	}
	dom := s.Dom&(1<<uint(d.Day())) != 0
	dow := s.Dow&(1<<uint(d.Weekday())) != 0
	if s.Dom&starBit != 0 || s.Dow&starBit != 0 {
		return dom && dow
	}
	return dom || dow
}

// Resolve returns the instant a wall-clock time of a date fires in loc: the time itself
// when the clock shows it once; its first occurrence when the clock shows it twice (the
// hour repeated when clocks go back); and the moment the clocks jump when they skip it.
func Resolve(year int, month time.Month, day, hour, minute int, loc *time.Location) time.Time {
	wall := time.Date(year, month, day, hour, minute, 0, 0, time.UTC).Unix()
	// The offsets in force a day either side and at the wall time read as UTC cover every
	// offset the zone can have at that wall time (no zone changes offset twice in two days).
	var offsets [3]int
	for i, probe := range [3]int64{wall - 86400, wall, wall + 86400} {
		_, offsets[i] = time.Unix(probe, 0).In(loc).Zone()
	}
	var best int64
	found := false
	for _, off := range offsets {
		at := wall - int64(off)
		if _, o := time.Unix(at, 0).In(loc).Zone(); o == off && (!found || at < best) {
			best, found = at, true
		}
	}
	if found {
		return time.Unix(best, 0).In(loc)
	}
	// Skipped: the clocks jumped over it. Read with the earlier (smaller) offset, the
	// instant lands after the jump; the zone in force then began at the jump.
	before := min(offsets[0], offsets[1], offsets[2])
	at := time.Unix(wall-int64(before), 0).In(loc)
	start, _ := at.ZoneBounds()
	if start.IsZero() {
		return at
	}
	return start.In(loc)
}
