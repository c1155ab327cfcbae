package recurring

import (
	"testing"
	"time"
)

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// firings lists the instants of c in (from, to].
func firings(c *Cron, from, to time.Time) []time.Time {
	var out []time.Time
	for t := c.Next(from); !t.IsZero() && !t.After(to); t = c.Next(t) {
		out = append(out, t)
		if len(out) > 100000 {
			break
		}
	}
	return out
}

// bruteFirings is the reference: it walks every minute of (from, to] and fires where the
// local clock shows a matching wall time it has not shown before, or jumps over one.
func bruteFirings(c *Cron, from, to time.Time) []time.Time {
	matches := func(w time.Time) bool {
		return c.dayMatches(time.Date(w.Year(), w.Month(), w.Day(), 12, 0, 0, 0, time.UTC)) &&
			c.spec.Hour&(1<<uint(w.Hour())) != 0 && c.spec.Minute&(1<<uint(w.Minute())) != 0
	}
	wallOf := func(t time.Time) time.Time {
		l := t.In(c.loc)
		return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC)
	}
	var out []time.Time
	start := from.Truncate(time.Minute)
	prevWall := wallOf(start)
	maxWall := prevWall // the latest wall time shown so far: walls at or before it were shown
	for t := start.Add(time.Minute); !t.After(to); t = t.Add(time.Minute) {
		w := wallOf(t)
		fire := false
		if w.After(maxWall) {
			// Every wall time in (maxWall, w] is shown for the first time now, or skipped.
			for x := maxWall.Add(time.Minute); !x.After(w); x = x.Add(time.Minute) {
				if matches(x) {
					fire = true
					break
				}
			}
			maxWall = w
		}
		if fire && t.After(from) {
			out = append(out, t)
		}
		prevWall = w
	}
	_ = prevWall
	return out
}

func TestCronMatchesBruteForceAcrossDST(t *testing.T) {
	zones := []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "Asia/Bangkok", "Pacific/Chatham", "UTC", "America/Havana"}
	exprs := []string{"30 2 * * *", "*/15 1-3 * * *", "0 * * * *", "30 1 * * *", "0 0 * * *", "45 23 * * sun", "0 10 1,15 * *", "15 2 * 3,4,10,11 mon-fri"}
	// Windows around the 2026 transitions of the zones above (both hemispheres).
	windows := [][2]time.Time{
		{time.Date(2026, 3, 6, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 3, 27, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 7, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 9, 4, 0, 0, 0, 0, time.UTC), time.Date(2026, 9, 8, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 9, 25, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 6, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 10, 23, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)},
	}
	for _, zone := range zones {
		for _, expr := range exprs {
			c, err := ParseCron(expr, zone)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range windows {
				got := firings(c, w[0], w[1])
				want := bruteFirings(c, w[0], w[1])
				if len(got) != len(want) {
					t.Fatalf("%s %q in %v: %d firings, reference %d\n got %v\nwant %v", zone, expr, w, len(got), len(want), got, want)
				}
				for i := range got {
					if !got[i].Equal(want[i]) {
						t.Fatalf("%s %q: firing %d at %v, reference %v", zone, expr, i, got[i], want[i])
					}
				}
			}
		}
	}
}

func TestCronDSTEdges(t *testing.T) {
	at := func(zone string, y int, m time.Month, d, h, min int) time.Time {
		return time.Date(y, m, d, h, min, 0, 0, mustZone(t, zone))
	}
	cases := []struct {
		name, expr, zone string
		from             time.Time
		want             []string // RFC 3339 instants of the next firings
	}{
		// New York springs forward at 02:00 on 8 March 2026: 02:30 does not exist and
		// runs once, at 03:00 EDT; the next day at 02:30 EDT.
		{"spring forward New York", "30 2 * * *", "America/New_York", at("America/New_York", 2026, 3, 7, 12, 0),
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
		// Every quarter hour from 02:00 to 02:45 falls in the gap: one run at 03:00, then 03:15.
		{"a gap full of times", "*/15 2,3 * * *", "America/New_York", at("America/New_York", 2026, 3, 8, 1, 0),
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00", "2026-03-08T03:30:00-04:00"}},
		// New York falls back at 02:00 on 1 November 2026: 01:30 is shown twice and runs once.
		{"fall back New York", "30 1 * * *", "America/New_York", at("America/New_York", 2026, 10, 31, 12, 0),
			[]string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
		// Berlin: 29 March 2026 02:00 → 03:00; 25 October 03:00 → 02:00.
		{"spring forward Berlin", "30 2 * * *", "Europe/Berlin", at("Europe/Berlin", 2026, 3, 28, 12, 0),
			[]string{"2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}[1:]},
		{"fall back Berlin", "30 2 * * *", "Europe/Berlin", at("Europe/Berlin", 2026, 10, 24, 12, 0),
			[]string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
		// Hourly on a fall-back night: the repeated 01:00 hour runs once.
		{"hourly fall back", "0 * * * *", "America/New_York", at("America/New_York", 2026, 11, 1, 0, 30),
			[]string{"2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00"}},
		// Lord Howe moves by 30 minutes: 02:00 → 02:30 on 4 October 2026.
		{"half-hour shift", "15 2 * * *", "Australia/Lord_Howe", at("Australia/Lord_Howe", 2026, 10, 3, 12, 0),
			[]string{"2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"}},
		// Santiago springs forward at midnight (6 September 2026: 00:00 → 01:00): a
		// midnight run fires at 01:00.
		{"midnight gap", "0 0 * * *", "America/Santiago", at("America/Santiago", 2026, 9, 5, 12, 0),
			[]string{"2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"}},
		{"no DST", "0 10 * * mon-fri", "Asia/Bangkok", at("Asia/Bangkok", 2026, 12, 4, 11, 0),
			[]string{"2026-12-07T10:00:00+07:00", "2026-12-08T10:00:00+07:00"}},
		{"leap day", "0 9 29 2 *", "UTC", at("UTC", 2026, 1, 1, 0, 0),
			[]string{"2028-02-29T09:00:00Z", "2032-02-29T09:00:00Z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCron(tc.expr, tc.zone)
			if err != nil {
				t.Fatal(err)
			}
			got := tc.from
			for i, w := range tc.want {
				got = c.Next(got)
				want, _ := time.Parse(time.RFC3339, w)
				if !got.Equal(want) {
					t.Fatalf("firing %d: %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestParseCronRefusals(t *testing.T) {
	for _, tc := range []struct{ expr, zone string }{
		{"", "UTC"}, {"* * * *", "UTC"}, {"61 * * * *", "UTC"}, {"0 10 * * *", ""}, {"0 10 * * *", "Mars/Olympus"},
		{"0 10 * * *", "Local"}, {"TZ=UTC 0 10 * * *", "UTC"}, {"TZ=UTC", "UTC"}, {"@every 1h", "UTC"}, {"0 0 30 2 *", "UTC"},
		{"*/0 * * * *", "UTC"}, {"0 10 * * funday", "UTC"}, {"* * * * * *", "UTC"},
	} {
		if _, err := ParseCron(tc.expr, tc.zone); err == nil {
			t.Errorf("ParseCron(%q, %q) accepted", tc.expr, tc.zone)
		}
	}
}

// FuzzCron: any expression either is refused or fires in strictly increasing order, at
// instants the brute-force reference agrees with, around the New York transitions.
func FuzzCron(f *testing.F) {
	for _, s := range []string{"30 2 * * *", "*/7 0-4 * * *", "0 0 1 * *", "@daily", "@hourly", "5 1,2 * 3,11 sun", "TZ=UTC", "0 0 31 4 *", "1-5/2 2 * * *"} {
		f.Add(s)
	}
	zone := "America/New_York"
	windows := [][2]time.Time{
		{time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)},
		{time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)},
	}
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := ParseCron(expr, zone)
		if err != nil {
			return
		}
		for _, w := range windows {
			got := firings(c, w[0], w[1])
			want := bruteFirings(c, w[0], w[1])
			if len(got) != len(want) {
				t.Fatalf("%q: %d firings, reference %d", expr, len(got), len(want))
			}
			for i := range got {
				if !got[i].Equal(want[i]) {
					t.Fatalf("%q: firing %d at %v, reference %v", expr, i, got[i], want[i])
				}
			}
		}
	})
}

func TestLocalTimeRunInstants(t *testing.T) {
	sp := Spec{LocalTime: "10:00", Days: "mon,wed"}
	w, err := sp.parseWhen()
	if err != nil {
		t.Fatal(err)
	}
	// Monday 7 December 2026 10:00 comes first at UTC+14: Sunday 6 December 20:00 UTC.
	from := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	got := w.next(from)
	if want := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("next %v, want %v", got, want)
	}
	if id := w.runID("vip", got); id != "vip-20261207T1000" {
		t.Fatalf("run id %q", id)
	}
	if got = w.next(got); !got.Equal(time.Date(2026, 12, 8, 20, 0, 0, 0, time.UTC)) {
		t.Fatalf("then %v, want Wednesday's", got)
	}
	cp, err := sp.runCampaign(w, "vip-20261209T1000", got)
	if err != nil {
		t.Fatal(err)
	}
	if cp.QuietHours != "00:00-10:00" || cp.AllowedDays != "wed" {
		t.Fatalf("run quiet hours %q days %q", cp.QuietHours, cp.AllowedDays)
	}
	sp.Campaign.QuietHours = "21:00-08:00"
	if cp, err = sp.runCampaign(w, "x", got); err != nil || cp.QuietHours != "21:00-10:00" {
		t.Fatalf("with the campaign's quiet hours: %q, %v", cp.QuietHours, err)
	}
	sp.LocalTime = "22:00"
	if err := sp.Validate(); err == nil {
		t.Fatal("a local time inside the campaign's quiet hours was accepted")
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute, "": 0} {
		d, err := ParseDuration(in)
		if err != nil || time.Duration(d) != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, time.Duration(d), err, want)
		}
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Errorf("%q round trip: %v, %v", in, back, err)
		}
	}
	for _, bad := range []string{"-1d", "xd", "7x", "d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

// FuzzDuration: what ParseDuration accepts prints back to itself.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"7d", "36h", "1d12h", "90m", "0", "", "-1d", "99999999999d", "1d-1h", "d1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("%q: negative %v", s, time.Duration(d))
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("%q → %v → %q → %v, %v", s, time.Duration(d), d.String(), time.Duration(back), err)
		}
	})
}

// FuzzLocalSpec: a local-time spec is refused or gives run instants that increase, each
// run's campaign carrying quiet hours and a day the throttle reads.
func FuzzLocalSpec(f *testing.F) {
	for _, s := range [][3]string{{"10:00", "mon-fri", "21:00-08:00"}, {"0:00", "", ""}, {"23:59", "sun", "00:00-06:00"}, {"24:00", "", ""}, {"10:0", "x", ""}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, local, days, quiet string) {
		sp := Spec{LocalTime: local, Days: days}
		sp.Campaign.QuietHours = quiet
		if sp.Validate() != nil {
			return
		}
		w, err := sp.parseWhen()
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; i < 10; i++ {
			next := w.next(at)
			if !next.After(at) {
				t.Fatalf("%q %q: next after %v is %v", local, days, at, next)
			}
			cp, err := sp.runCampaign(w, "x", next)
			if err != nil {
				t.Fatalf("run campaign: %v", err)
			}
			if _, err := cp.Quiet(); err != nil {
				t.Fatalf("%q %q %q: run quiet hours %q days %q: %v", local, days, quiet, cp.QuietHours, cp.AllowedDays, err)
			}
			at = next
		}
	})
}

// BenchmarkCronNext: the next firing of a minutely and of a weekly schedule over a DST zone.
func BenchmarkCronNext(b *testing.B) {
	for _, expr := range []string{"* * * * *", "0 10 * * mon"} {
		c, err := ParseCron(expr, "America/New_York")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(expr, func(b *testing.B) {
			t := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
			for i := 0; i < b.N; i++ {
				t = c.Next(t)
			}
		})
	}
}
