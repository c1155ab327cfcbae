package api

import (
	"net/http"
	"testing"

	"github.com/herald-dev/herald/analytics"
)

// A campaign's timeline: per minute, the contacts sent, delivered, read, failed and
// skipped, summing to the recipients of each status; a longer step gives the same sums
// in fewer points; an unknown step is a 400 naming it, an unknown campaign a 404.
func TestCampaignTimeline(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	const n = 12000 // 10 ms apart: two minutes
	insertEvents(t, e.ctx, e, "1", n, 1)
	var want analytics.TimelinePoint
	for c := 1; c <= n; c++ {
		if c%10 == 0 {
			want.Skipped++
			continue
		}
		want.Sent++
		switch {
		case c%7 == 0:
			want.Failed++
		case c%6 == 0:
			want.Read++
			want.Delivered++ // read ones are delivered too (c%3 == 0)
		case c%3 == 0:
			want.Delivered++
		}
	}
	for step, points := range map[string]int{"1m": 3, "1h": 1} {
		var rep analytics.TimelineReport
		e.do(req{method: "GET", path: "/v1/campaigns/1/timeline?step=" + step, key: "analyst"}).decode(t, &rep)
		if len(rep.Points) != points {
			t.Fatalf("step %s: %d points, want %d: %+v", step, len(rep.Points), points, rep.Points)
		}
		var sum analytics.TimelinePoint
		for _, p := range rep.Points {
			sum.Sent += p.Sent
			sum.Delivered += p.Delivered
			sum.Read += p.Read
			sum.Failed += p.Failed
			sum.Skipped += p.Skipped
		}
		if sum != want {
			t.Fatalf("step %s: sums %+v, want %+v", step, sum, want)
		}
	}
	res := e.do(req{method: "GET", path: "/v1/campaigns/1/timeline?step=2m", key: "analyst", invalid: true})
	if res.status != http.StatusBadRequest || res.problem(t).Errors[0].Parameter != "step" {
		t.Fatalf("step=2m: %d %s", res.status, res.body)
	}
	if res := e.do(req{method: "GET", path: "/v1/campaigns/nope/timeline", key: "analyst", invalid: true}); res.status != http.StatusNotFound {
		t.Fatalf("unknown campaign: %d %s", res.status, res.body)
	}
}
