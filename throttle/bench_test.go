package throttle

import (
	"testing"
	"time"
)

func TestWindows(t *testing.T) {
	s := int64(time.Second)
	// 3 sends in [0, 1s), then one exactly 1 s after the first: never 4 in one window.
	times := []int64{0, s / 2, s - 1, s, 2 * s}
	w := Windows(times, 3, 4)
	if w.Sends != 5 || w.Max1s != 3 || w.Over1s != 0 || w.Max60s != 5 || w.Over60 != 1 {
		t.Fatalf("windows = %+v", w)
	}
	w = Windows(times, 2, 10)
	if w.Over1s != 2 { // the sends at s-1 and s each end a window holding 3
		t.Fatalf("over the 1 s cap of 2: %+v", w)
	}
}

func TestIdealSendsAndCaps(t *testing.T) {
	for _, tc := range []struct {
		lim        Limits
		d          time.Duration
		want       float64
		sec, minut int
	}{
		{Limits{Rate: 80}, 5 * time.Minute, 24000, 80, 4800},
		{Limits{Rate: 80, PerMinute: 6000}, time.Minute, 4800, 80, 4800},
		{Limits{Rate: 80, PerMinute: 2400}, 90 * time.Second, 4800, 80, 2400},
		{Limits{Rate: 80, PerMinute: 2400}, 100 * time.Second, 4800, 80, 2400},
		{Limits{Rate: 2.5}, 10 * time.Second, 25, 3, 150},
	} {
		if got := IdealSends(tc.lim, tc.d); got != tc.want {
			t.Errorf("IdealSends(%+v, %v) = %v, want %v", tc.lim, tc.d, got, tc.want)
		}
		if s, m := tc.lim.Caps(); s != tc.sec || m != tc.minut {
			t.Errorf("Caps(%+v) = %d, %d; want %d, %d", tc.lim, s, m, tc.sec, tc.minut)
		}
	}
}
