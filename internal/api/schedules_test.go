package api

import (
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/recurring"
)

// The schedule routes: who may create an active schedule, refusals that point at the
// field, the lifecycle, and runs with their funnel — every request and answer checked
// against the spec.
func TestScheduleRoutes(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	campaign := map[string]any{"segment": "customer", "template": "welcome", "senders": []string{"106540352242922"}, "purpose": "marketing"} // a default the validator would write in changes the body
	body := func(id string, paused bool) map[string]any {
		return map[string]any{"id": id, "cron": "0 10 * * mon-fri", "zone": "Asia/Bangkok", "campaign": campaign,
			"exclude_reached_within_ms": (7 * 24 * time.Hour).Milliseconds(), "paused": paused}
	}

	// A marketer without the launch permission may create only a paused schedule.
	res := e.do(req{method: "POST", path: "/v1/schedules", key: "marketer", body: body("weekly", false)})
	if res.status != 403 {
		t.Fatalf("active schedule by a marketer who may not launch: %d %s", res.status, res.body)
	}
	res = e.do(req{method: "POST", path: "/v1/schedules", key: "marketer", body: body("weekly", true)})
	var sch recurring.Schedule
	res.decode(t, &sch)
	if res.status != 201 || sch.State != recurring.Paused || res.header.Get("Location") != "/v1/schedules/weekly" {
		t.Fatalf("paused schedule: %d %s", res.status, res.body)
	}
	if res := e.do(req{method: "POST", path: "/v1/schedules/weekly/resume", key: "marketer"}); res.status != 403 {
		t.Fatalf("resume by a marketer who may not launch: %d", res.status)
	}
	res = e.do(req{method: "POST", path: "/v1/schedules/weekly/resume", key: "launcher"})
	res.decode(t, &sch)
	if res.status != 200 || sch.State != recurring.Active || sch.NextRunAt.IsZero() {
		t.Fatalf("resume: %d %s", res.status, res.body)
	}

	// Refusals point at the field, the campaign's under /campaign.
	for _, tc := range []struct {
		name    string
		change  func(map[string]any)
		pointer string
	}{
		{"bad cron", func(b map[string]any) { b["cron"] = "0 25 * * *" }, "/cron"},
		{"bad zone", func(b map[string]any) { b["zone"] = "Mars/Base" }, "/zone"},
		{"both timings", func(b map[string]any) { b["local_time"] = "10:00" }, "/cron"},
		{"bad segment", func(b map[string]any) {
			b["campaign"] = map[string]any{"segment": "vip and (", "template": "welcome", "senders": []string{"106540352242922"}}
		}, "/campaign/segment"},
		{"unknown template", func(b map[string]any) {
			b["campaign"] = map[string]any{"segment": "vip", "template": "nope", "senders": []string{"106540352242922"}}
		}, "/campaign/template"},
		{"taken id", func(b map[string]any) {}, "/id"},
	} {
		b := body("weekly", false)
		tc.change(b)
		res := e.do(req{method: "POST", path: "/v1/schedules", key: "launcher", body: b, invalid: true})
		p := res.problem(t)
		if res.status != 422 || len(p.Errors) == 0 || p.Errors[0].Pointer != tc.pointer {
			t.Errorf("%s: %d %+v, want 422 at %s", tc.name, res.status, p, tc.pointer)
		}
	}

	// A local-time schedule, created active by a key that may launch.
	res = e.do(req{method: "POST", path: "/v1/schedules", key: "launcher", body: map[string]any{
		"local_time": "10:00", "days": "mon-fri", "max_runs": 3, "campaign": campaign}})
	var local recurring.Schedule
	res.decode(t, &local)
	if res.status != 201 || local.ID == "" || local.State != recurring.Active {
		t.Fatalf("local-time schedule: %d %s", res.status, res.body)
	}

	var list page[recurring.Schedule]
	e.do(req{method: "GET", path: "/v1/schedules", key: "analyst"}).decode(t, &list)
	if len(list.Items) != 2 || list.Items[0].ID != local.ID {
		t.Fatalf("list: %+v", list.Items)
	}

	// Fire the local-time schedule's first run, then read its runs.
	firer, err := app.Firer(e.d, e.comp)
	if err != nil {
		t.Fatal(err)
	}
	firer.Now = func() time.Time { return local.NextRunAt.Add(time.Second) }
	ids, err := firer.Tick(e.ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("tick: %v, %v", ids, err)
	}
	var runs page[app.RunSummary]
	e.do(req{method: "GET", path: "/v1/schedules/" + local.ID + "/runs", key: "analyst"}).decode(t, &runs)
	if len(runs.Items) != 1 || runs.Items[0].ID != ids[0] || runs.Items[0].Status != recurring.RunLaunched || runs.Items[0].Audience == 0 {
		t.Fatalf("runs: %+v", runs.Items)
	}
	if st, err := e.comp.Campaigns.Status(e.ctx, ids[0]); err != nil || st.QuietHours != "00:00-10:00" {
		t.Fatalf("the run's campaign: %+v, %v", st, err)
	}

	res = e.do(req{method: "POST", path: "/v1/schedules/weekly/pause", key: "marketer"})
	res.decode(t, &sch)
	if res.status != 200 || sch.State != recurring.Paused {
		t.Fatalf("pause: %d %s", res.status, res.body)
	}
	if res := e.do(req{method: "DELETE", path: "/v1/schedules/weekly", key: "marketer"}); res.status != 204 {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	for _, path := range []string{"/v1/schedules/weekly", "/v1/schedules/weekly/runs"} {
		if res := e.do(req{method: "GET", path: path, key: "analyst"}); res.status != 404 {
			t.Fatalf("GET %s after delete: %d %s", path, res.status, res.body)
		}
	}
	if res := e.do(req{method: "POST", path: "/v1/schedules/weekly/pause", key: "marketer"}); res.status != 404 {
		t.Fatalf("pause after delete: %d", res.status)
	}
}
