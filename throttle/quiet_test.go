package throttle

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestParseQuietHours(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want QuietHours
		err  string
	}{
		{in: "", want: QuietHours{}},
		{in: "  ", want: QuietHours{}},
		{in: "21:00-08:00", want: QuietHours{Start: 21 * 60, End: 8 * 60}},
		{in: " 9:30 - 17:05 ", want: QuietHours{Start: 9*60 + 30, End: 17*60 + 5}},
		{in: "22:00-24:00", want: QuietHours{Start: 22 * 60, End: 1440}},
		{in: "00:00-06:00", want: QuietHours{Start: 0, End: 360}},
		{in: "21:00", err: "want HH:MM-HH:MM"},
		{in: "21-08", err: "want HH:MM-HH:MM"},
		{in: "25:00-08:00", err: "want HH:MM-HH:MM"},
		{in: "21:60-08:00", err: "want HH:MM-HH:MM"},
		{in: "24:00-08:00", err: "want HH:MM-HH:MM"},
		{in: "21:00-08:0", err: "want HH:MM-HH:MM"},
		{in: "+1:00-08:00", err: "want HH:MM-HH:MM"},
		{in: "08:00-08:00", err: "starts where it ends"},
		{in: "00:00-24:00", err: "starts where it ends"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseQuietHours(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
					t.Fatalf("ParseQuietHours(%q) = %v, %v; want an error naming the input and saying %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseQuietHours(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseDays(t *testing.T) {
	wd := func(days ...time.Weekday) Weekdays {
		var w Weekdays
		for _, d := range days {
			w |= 1 << d
		}
		return w
	}
	for _, tc := range []struct {
		in, str string
		want    Weekdays
		bad     bool
	}{
		{in: "", want: 0},
		{in: "mon-fri", want: wd(1, 2, 3, 4, 5), str: "mon-fri"},
		{in: "mon-fri,sun", want: wd(0, 1, 2, 3, 4, 5), str: "mon-fri,sun"},
		{in: "Sat, SUNDAY", want: wd(0, 6), str: "sat-sun"},
		{in: "fri-mon", want: wd(5, 6, 0, 1), str: "mon,fri-sun"},
		{in: "wed", want: wd(3), str: "wed"},
		{in: "mon-sun", want: AllDays, str: ""},
		{in: "mon-fry", bad: true},
		{in: "mon,,fri", bad: true},
		{in: "weekdays", bad: true},
		{in: "mon-", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDays(tc.in)
			if tc.bad {
				if err == nil || !strings.Contains(err.Error(), "day names") {
					t.Fatalf("ParseDays(%q) = %v, %v; want an error saying how to write days", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want || got.String() != tc.str {
				t.Fatalf("ParseDays(%q) = %07b (%q), %v; want %07b (%q)", tc.in, got, got.String(), err, tc.want, tc.str)
			}
		})
	}
}

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestQuietHoursNext(t *testing.T) {
	ny := mustZone(t, "America/New_York")
	bkk := mustZone(t, "Asia/Bangkok")
	night := QuietHours{Start: 21 * 60, End: 8 * 60}
	weekdays, _ := ParseDays("mon-fri")
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		q    QuietHours
		loc  *time.Location
		now  string // UTC
		want string // UTC
	}{
		{"zero allows all", QuietHours{}, bkk, "2026-11-21T20:00:00Z", "2026-11-21T20:00:00Z"},
		{"daytime allowed", night, bkk, "2026-11-21T05:00:00Z", "2026-11-21T05:00:00Z"}, // 12:00 +07
		{"evening wraps to next morning", night, bkk, "2026-11-21T15:00:00Z", "2026-11-22T01:00:00Z"},
		{"after midnight ends same morning", night, bkk, "2026-11-21T19:30:00Z", "2026-11-22T01:00:00Z"},
		{"start is quiet", night, bkk, "2026-11-21T14:00:00Z", "2026-11-22T01:00:00Z"},
		{"end is allowed", night, bkk, "2026-11-22T01:00:00Z", "2026-11-22T01:00:00Z"},
		{"a second before the end", night, bkk, "2026-11-22T00:59:59.5Z", "2026-11-22T01:00:00Z"},
		{"same-day period", QuietHours{Start: 12 * 60, End: 14 * 60}, time.UTC, "2026-11-21T12:30:00Z", "2026-11-21T14:00:00Z"},
		{"until midnight", QuietHours{Start: 22 * 60, End: 1440}, time.UTC, "2026-11-21T23:00:00Z", "2026-11-22T00:00:00Z"},
		// 2026-11-21 is a Saturday.
		{"weekend waits for monday", QuietHours{Days: weekdays}, time.UTC, "2026-11-21T10:00:00Z", "2026-11-23T00:00:00Z"},
		{"weekend and night", QuietHours{Start: 21 * 60, End: 8 * 60, Days: weekdays}, bkk, "2026-11-20T15:00:00Z", "2026-11-23T01:00:00Z"}, // Fri 22:00 +07
		{"day judged locally", QuietHours{Days: weekdays}, bkk, "2026-11-22T18:00:00Z", "2026-11-22T18:00:00Z"},                             // Sun UTC, Mon 01:00 +07
		// New York springs forward on 2026-03-08 at 02:00 EST → 03:00 EDT (07:00Z).
		{"spring: night ends at 08:00 EDT", night, ny, "2026-03-08T05:00:00Z", "2026-03-08T12:00:00Z"},
		{"spring: end in the skipped hour", QuietHours{Start: 60, End: 150}, ny, "2026-03-08T06:10:00Z", "2026-03-08T07:00:00Z"},
		{"spring: before a start in the skipped hour", QuietHours{Start: 150, End: 240}, ny, "2026-03-08T06:59:00Z", "2026-03-08T06:59:00Z"},
		{"spring: the jump lands in the period", QuietHours{Start: 150, End: 240}, ny, "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"},
		// It falls back on 2026-11-01 at 02:00 EDT → 01:00 EST (06:00Z).
		{"fall: night ends at 08:00 EST", night, ny, "2026-11-01T04:00:00Z", "2026-11-01T13:00:00Z"},
		{"fall: first 01:10", QuietHours{Start: 0, End: 90}, ny, "2026-11-01T05:10:00Z", "2026-11-01T05:30:00Z"},
		{"fall: the repeated hour is quiet again", QuietHours{Start: 0, End: 90}, ny, "2026-11-01T06:10:00Z", "2026-11-01T06:30:00Z"},
		{"fall: between the two", QuietHours{Start: 0, End: 90}, ny, "2026-11-01T05:45:00Z", "2026-11-01T05:45:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.q.Next(utc(tc.now).In(tc.loc))
			if want := utc(tc.want); !got.Equal(want) {
				t.Fatalf("%v.Next(%v) = %v (%v), want %v (%v)", tc.q, utc(tc.now).In(tc.loc), got.UTC(), got, want, want.In(tc.loc))
			}
			if tc.q.quiet(got) {
				t.Fatalf("Next returned %v, which is quiet", got)
			}
			if got.Location() != tc.loc {
				t.Fatalf("Next returned a time in %v, want the recipient's %v", got.Location(), tc.loc)
			}
		})
	}
}

func TestZoneOf(t *testing.T) {
	paris := mustZone(t, "Europe/Paris")
	for _, tc := range []struct {
		name string
		job  Job
		want string
	}{
		{"profile zone", Job{TimeZone: "America/New_York", Phone: "+66812345678"}, "America/New_York"},
		{"invalid profile zone falls to the phone", Job{TimeZone: "Mars/Olympus", Phone: "+66812345678"}, "Asia/Bangkok"},
		{"server-local is not a zone", Job{TimeZone: "Local", Phone: "+4930123456"}, "Europe/Berlin"},
		{"phone region", Job{Phone: "+14155552671"}, "America/Los_Angeles"},
		{"agreeing zones of one region", Job{Phone: "+447911123456"}, "Europe/Guernsey"},
		{"toll-free spans zones: fallback", Job{Phone: "+18005551234"}, "Europe/Paris"},
		{"unknown region: fallback", Job{Phone: "+999123"}, "Europe/Paris"},
		{"not E.164: country", Job{Phone: "0812345678", Country: "th"}, "Asia/Bangkok"},
		{"country spanning zones: fallback", Job{Country: "US"}, "Europe/Paris"},
		{"nothing known: fallback", Job{}, "Europe/Paris"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := zoneOf(&tc.job, paris); got.String() != tc.want {
				t.Fatalf("zone of %+v = %v, want %s", tc.job, got, tc.want)
			}
		})
	}
}

// A deferral ends exactly at the moment it names: in a bubble whose clock starts on
// Saturday 2000-01-01 00:00 UTC, a weekday-only policy defers to Monday 08:00 and a
// send is allowed then, not a nanosecond earlier.
func TestQuietHoursDeferralEndsOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		days, _ := ParseDays("mon-fri")
		q, _ := ParseQuietHours("21:00-08:00")
		q.Days = days
		until := q.Next(time.Now().UTC())
		if want := time.Date(2000, 1, 3, 8, 0, 0, 0, time.UTC); !until.Equal(want) {
			t.Fatalf("deferred until %v, want %v", until, want)
		}
		time.Sleep(time.Until(until) - time.Nanosecond)
		if now := time.Now().UTC(); q.Next(now).Equal(now) {
			t.Fatalf("allowed at %v, before the deferral ends", now)
		}
		time.Sleep(time.Nanosecond)
		if now := time.Now().UTC(); !q.Next(now).Equal(now) {
			t.Fatalf("still quiet at %v, when the deferral ends", now)
		}
	})
}

func FuzzParseQuietHours(f *testing.F) {
	for _, s := range []string{"21:00-08:00", "9:30-17:05", "22:00-24:00", "", "08:00-08:00", "x", "1:1-2:2"} {
		f.Add(s, "mon-fri,sun", int64(1795000000))
	}
	f.Add("00:30-23:30", "fri-mon", int64(1772949600)) // New York's spring-forward morning
	f.Fuzz(func(t *testing.T, hours, days string, unix int64) {
		q, err := ParseQuietHours(hours)
		if err != nil {
			return
		}
		if q.Start < 0 || q.Start >= 1440 || q.End < 0 || q.End > 1440 || q.Start == q.End%1440 && !q.IsZero() {
			t.Fatalf("ParseQuietHours(%q) = %+v: out of range", hours, q)
		}
		if back, err := ParseQuietHours(q.String()); err != nil || back != q {
			t.Fatalf("ParseQuietHours(%q) = %+v; its String %q reads back as %+v, %v", hours, q, q.String(), back, err)
		}
		w, err := ParseDays(days)
		if err != nil {
			return
		}
		if back, err := ParseDays(w.String()); err != nil || back&AllDays != w&AllDays && !(w.String() == "" && back == 0) {
			t.Fatalf("ParseDays(%q) = %07b; its String %q reads back as %07b, %v", days, w, w.String(), back, err)
		}
		q.Days = w
		// Any moment of a year in New York: the next allowed moment is allowed, not before
		// now, within a week, and every moment before it (by the minute) is quiet.
		now := time.Unix(1767225600+(unix%(366*86400)+366*86400)%(366*86400), 0).In(mustZone(t, "America/New_York"))
		next := q.Next(now)
		if next.Before(now) || next.Sub(now) > 8*24*time.Hour || q.quiet(next) {
			t.Fatalf("%v.Next(%v) = %v", q, now, next)
		}
		for m := now; m.Before(next); m = m.Add(time.Minute) {
			if !q.quiet(m) {
				t.Fatalf("%v.Next(%v) = %v, but %v is allowed", q, now, next, m)
			}
		}
	})
}
