package throttle

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // recipients' zones must load in minimal containers too (no /usr/share/zoneinfo)

	"github.com/nyaruka/phonenumbers"
)

// Weekdays is a set of days of the week: bit d is time.Weekday(d). The empty set means
// every day (no day is excluded).
type Weekdays uint8

// AllDays holds every day of the week.
const AllDays Weekdays = 1<<7 - 1

// Has reports whether d is in the set; every day is in the empty set.
func (w Weekdays) Has(d time.Weekday) bool { return w&AllDays == 0 || w&(1<<d) != 0 }

var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// String writes the set as ParseDays reads it, Monday first: "mon-fri,sun"; "" for every day.
func (w Weekdays) String() string {
	if w&AllDays == 0 || w&AllDays == AllDays {
		return ""
	}
	var parts []string
	for i := 0; i < 7; {
		d := (i + 1) % 7 // Monday first
		if !w.Has(time.Weekday(d)) {
			i++
			continue
		}
		j := i
		for j+1 < 7 && w.Has(time.Weekday((j+2)%7)) {
			j++
		}
		if j == i {
			parts = append(parts, dayNames[d])
		} else {
			parts = append(parts, dayNames[d]+"-"+dayNames[(j+1)%7])
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// ParseDays reads the days sends are allowed on: day names (mon, tue, … or monday, …,
// any case) and ranges of them, separated by commas: "mon-fri", "mon-fri,sun",
// "fri-mon" (a range may wrap past Sunday). "" is every day.
func ParseDays(s string) (Weekdays, error) {
	var w Weekdays
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		from, to, isRange := strings.Cut(part, "-")
		a, ok := parseDay(from)
		b := a
		if isRange {
			var ok2 bool
			b, ok2 = parseDay(to)
			ok = ok && ok2
		}
		if !ok {
			return 0, fmt.Errorf("allowed days %q: cannot read %q: use day names mon tue wed thu fri sat sun, ranges like mon-fri, separated by commas", s, part)
		}
		for d := a; ; d = (d + 1) % 7 {
			w |= 1 << d
			if d == b {
				break
			}
		}
	}
	return w, nil
}

func parseDay(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, n := range dayNames {
		if s == n || s == strings.ToLower(time.Weekday(i).String()) {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// QuietHours says when a recipient may not be messaged, in the recipient's local time:
// every day from Start up to End (minutes after local midnight; the period wraps past
// midnight when End < Start, as in 21:00-08:00), and all day on days outside Days.
// Start == End means no quiet period; an empty Days means every day is allowed. The zero
// QuietHours allows every moment.
//
// Times are wall-clock times: on the day clocks go forward, a period ending in the
// skipped hour ends when the clocks jump; on the day they go back, the repeated hour is
// judged by what the clock shows, both times.
type QuietHours struct {
	Start, End int      // minutes after local midnight, 0…1439 (End may be 1440, midnight)
	Days       Weekdays // days sends are allowed on; empty: every day
}

// IsZero reports whether q allows every moment.
func (q QuietHours) IsZero() bool {
	return q.Start%1440 == q.End%1440 && (q.Days&AllDays == 0 || q.Days&AllDays == AllDays)
}

func (q QuietHours) String() string {
	var s string
	if q.Start%1440 != q.End%1440 {
		s = fmt.Sprintf("%02d:%02d-%02d:%02d", q.Start/60, q.Start%60, q.End/60, q.End%60)
	}
	if d := q.Days.String(); d != "" {
		if s != "" {
			s += " "
		}
		s += d
	}
	return s
}

// ParseQuietHours reads a daily quiet period "HH:MM-HH:MM" (24-hour clock; "21:00-08:00"
// wraps past midnight; 24:00 may end a period). "" is no quiet period. Set the allowed
// days with ParseDays.
func ParseQuietHours(s string) (QuietHours, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return QuietHours{}, nil
	}
	from, to, ok := strings.Cut(s, "-")
	start, ok1 := parseClock(from, false)
	end, ok2 := parseClock(to, true)
	if !ok || !ok1 || !ok2 {
		return QuietHours{}, fmt.Errorf("quiet hours %q: want HH:MM-HH:MM on a 24-hour clock, e.g. 21:00-08:00", s)
	}
	if start == end%1440 {
		return QuietHours{}, fmt.Errorf("quiet hours %q: the period starts where it ends; leave it empty for no quiet hours", s)
	}
	return QuietHours{Start: start, End: end}, nil
}

// parseClock reads H:MM or HH:MM as minutes after midnight; 24:00 only as an end.
func parseClock(s string, end bool) (int, bool) {
	s = strings.TrimSpace(s)
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 {
		return 0, false
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || hh[0] == '+' || hh[0] == '-' || mm[0] == '+' || mm[0] == '-' || m > 59 || h < 0 || m < 0 {
		return 0, false
	}
	if h == 24 && m == 0 && end {
		return 1440, true
	}
	if h > 23 {
		return 0, false
	}
	return h*60 + m, true
}

// quiet reports whether the wall clock of t (in t's location) is in the quiet period or
// on a day that is not allowed.
func (q QuietHours) quiet(t time.Time) bool {
	if !q.Days.Has(t.Weekday()) {
		return true
	}
	h, m, _ := t.Clock()
	min, start, end := h*60+m, q.Start%1440, q.End%1440
	switch {
	case start < end:
		return min >= start && min < end
	case start > end:
		return min >= start || min < end
	}
	return false
}

// Next returns t when t is an allowed moment, else the first allowed moment after it,
// judged by the wall clock of t's location (pass the recipient's local time). It steps
// from boundary to boundary — the end of the quiet period, midnight, a change of the
// zone's offset (DST) — so it is exact on the days clocks change.
func (q QuietHours) Next(t time.Time) time.Time {
	if q.IsZero() {
		return t
	}
	// Each step reaches the end of the quiet period, a midnight or a zone change: a week
	// of disallowed days with quiet periods and two offset changes take fewer than 24.
	for i := 0; i < 32 && q.quiet(t); i++ {
		h, m, s := t.Clock()
		since := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second + time.Duration(t.Nanosecond())
		step := 24*time.Hour - since // the next midnight, if the offset does not change first
		if e := time.Duration(q.End%1440) * time.Minute; e > since && e-since < step {
			step = e - since
		}
		next := t.Add(step)
		if _, end := t.ZoneBounds(); !end.IsZero() && end.Before(next) {
			next = end.In(t.Location())
		}
		t = next
	}
	return t
}

// Zones.

// zoneCache holds loaded locations by name (nil: not a zone). Zone names come from
// contact profiles, so the names that fail to load are remembered only up to a bound.
var zoneCache sync.Map // string -> *time.Location

var badZones atomic.Int64

const maxBadZones = 4096

func loadZone(name string) *time.Location {
	if v, ok := zoneCache.Load(name); ok {
		return v.(*time.Location)
	}
	var loc *time.Location
	if name != "" && name != "Local" && name != phonenumbers.UNKNOWN_TIMEZONE {
		loc, _ = time.LoadLocation(name)
	}
	if loc != nil || badZones.Add(1) <= maxBadZones {
		zoneCache.Store(name, loc)
	}
	return loc
}

// prefixZones caches the zone chosen for each candidate list phonenumbers returns, keyed
// by the list's first element: phonenumbers keeps one list per prefix in its map, so the
// address identifies the list, and the cache holds at most one entry per prefix.
var prefixZones sync.Map // *string -> *time.Location

// zoneOfPrefix returns the zone of an E.164 number or calling-code prefix ("+66…"): its
// region's zone when phonenumbers knows exactly one, or several that agree on their UTC
// offsets all year (Guernsey, Isle of Man and London); nil when it knows none or the
// candidates disagree (a US toll-free number spans ten zones).
func zoneOfPrefix(digits string) *time.Location {
	if len(digits) < 2 || digits[0] != '+' || len(digits) > 16 {
		return nil
	}
	for i := 1; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return nil
		}
	}
	zones, err := phonenumbers.GetTimezonesForPrefix(digits)
	if err != nil || len(zones) == 0 {
		return nil
	}
	if v, ok := prefixZones.Load(&zones[0]); ok {
		return v.(*time.Location)
	}
	loc := agreeingZone(zones)
	prefixZones.Store(&zones[0], loc)
	return loc
}

func agreeingZone(zones []string) *time.Location {
	first := loadZone(zones[0])
	if first == nil {
		return nil
	}
	// Offsets in winter and summer of both hemispheres.
	probes := [2]time.Time{time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC), time.Date(2026, 7, 15, 12, 0, 0, 0, time.UTC)}
	for _, z := range zones[1:] {
		loc := loadZone(z)
		if loc == nil {
			return nil
		}
		for _, t := range probes {
			_, a := t.In(first).Zone()
			_, b := t.In(loc).Zone()
			if a != b {
				return nil
			}
		}
	}
	return first
}

// zoneOfCountry returns the zone of an ISO 3166 region (TH, ID) when its calling code
// maps to one zone (or agreeing ones); nil otherwise (US, RU, AU span several).
func zoneOfCountry(region string) *time.Location {
	if region == "" {
		return nil
	}
	cc := phonenumbers.GetCountryCodeForRegion(strings.ToUpper(region))
	if cc == 0 {
		return nil
	}
	return zoneOfPrefix("+" + strconv.Itoa(cc))
}

// zoneOf returns the job's recipient zone: the profile's zone when it is a valid IANA
// name, else the zone of the phone number's region, else of the country, else fallback.
func zoneOf(j *Job, fallback *time.Location) *time.Location {
	if j.TimeZone != "" {
		if loc := loadZone(j.TimeZone); loc != nil {
			return loc
		}
	}
	if loc := zoneOfPrefix(j.Phone); loc != nil {
		return loc
	}
	if loc := zoneOfCountry(j.Country); loc != nil {
		return loc
	}
	return fallback
}
