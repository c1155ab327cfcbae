package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/app"
)

// The reports over the API are the CLI's (app.Report on the same ClickHouse), on
// events written into ClickHouse: 40 contacts of campaign 1 in variants A and B over
// two senders, B read more often.
func TestReports(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	conn, err := e.d.ClickHouse(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Add(-26 * time.Hour).Truncate(time.Hour)
	var q bytes.Buffer
	q.WriteString("INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, variant, country) ")
	n := 0
	add := func(kind string, contact int, variant, sender string, at time.Time) {
		if n > 0 {
			q.WriteString(" UNION ALL ")
		}
		n++
		fmt.Fprintf(&q, "SELECT 'e%d', '%s', toDateTime(%d), toUInt64(%d), '1', toUInt32(%d), '%s', 'whatsapp', '%s', 'TH'", n, kind, at.Unix(), at.UnixMilli(), contact, sender, variant)
	}
	for c := 1; c <= 40; c++ {
		v, s := "A", "s1"
		if c%2 == 0 {
			v, s = "B", "s2"
		}
		at := base.Add(time.Duration(c) * time.Minute)
		add("queued", c, v, s, at)
		add("sent", c, v, s, at)
		add("delivered", c, v, s, at.Add(time.Second))
		if v == "B" || c%5 == 0 {
			add("read", c, v, s, at.Add(time.Minute))
		}
	}
	if err := conn.Exec(e.ctx, q.String()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind  string
		query url.Values
		p     app.ReportParams
		check func(body []byte) error
	}{
		{"ab", url.Values{"campaign": {"1"}, "control": {"A"}}, app.ReportParams{Campaign: "1", Control: "A"}, func(b []byte) error {
			var r analytics.ABReport
			if err := json.Unmarshal(b, &r); err != nil || len(r.Variants) != 2 || r.Variants[1].Variant != "B" || r.Variants[1].Converted != 20 || r.Variants[0].Converted != 4 || r.Variants[1].PValue >= 0.05 {
				return fmt.Errorf("%v %+v", err, r)
			}
			return nil
		}},
		{"senders", url.Values{}, app.ReportParams{}, func(b []byte) error {
			var r []analytics.SenderHealth
			if err := json.Unmarshal(b, &r); err != nil || len(r) != 2 || r[0].Sent != 20 || r[0].Delivered != 20 {
				return fmt.Errorf("%v %+v", err, r)
			}
			return nil
		}},
		{"heatmap", url.Values{"campaign": {"1"}}, app.ReportParams{Campaign: "1"}, func(b []byte) error {
			var r analytics.HeatmapReport
			var sent uint64
			if err := json.Unmarshal(b, &r); err != nil {
				return err
			}
			for _, c := range r.Cells {
				sent += c.Sent
			}
			if sent != 40 {
				return fmt.Errorf("%d sent in the cells: %+v", sent, r)
			}
			return nil
		}},
		{"retention", url.Values{"weeks": {"2"}}, app.ReportParams{Weeks: 2}, func(b []byte) error {
			var r analytics.RetentionReport
			if err := json.Unmarshal(b, &r); err != nil || r.Weeks != 2 {
				return fmt.Errorf("%v %+v", err, r)
			}
			return nil
		}},
		{"retention", url.Values{"by": {"campaign"}, "campaign": {"1"}}, app.ReportParams{By: "campaign", Campaigns: []string{"1"}}, func(b []byte) error {
			var r analytics.CampaignRetentionReport
			if err := json.Unmarshal(b, &r); err != nil || len(r.Cohorts) != 1 || r.Cohorts[0].Contacts != 40 {
				return fmt.Errorf("%v %+v", err, r)
			}
			return nil
		}},
		{"lift", url.Values{"campaign": {"1"}, "window": {"48h"}}, app.ReportParams{Campaign: "1", Window: 48 * time.Hour}, func(b []byte) error {
			var r analytics.LiftReport
			if err := json.Unmarshal(b, &r); err != nil || r.WindowMS != float64((48*time.Hour).Milliseconds()) {
				return fmt.Errorf("%v %+v", err, r)
			}
			return nil
		}},
		{"anomalies", url.Values{"history": {"3"}}, app.ReportParams{History: 3}, func(b []byte) error {
			var r analytics.AnomalyReport
			if err := json.Unmarshal(b, &r); err != nil || r.History != 3 || len(r.Days) == 0 {
				return fmt.Errorf("%v %+v", err, r)
			}
			return nil
		}},
	} {
		res := e.do(req{method: "GET", path: "/v1/reports/" + tc.kind + "?" + tc.query.Encode(), key: "analyst"})
		if res.status != 200 {
			t.Fatalf("%s: %d %s", tc.kind, res.status, res.body)
		}
		if err := tc.check(res.body); err != nil {
			t.Errorf("%s: %v\n%s", tc.kind, err, res.body)
		}
		v, err := app.Report(e.ctx, conn, tc.kind, tc.p)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := marshal(v)
		if !bytes.Equal(want, res.body) {
			t.Errorf("%s: the API says\n%s\nthe CLI's use case\n%s", tc.kind, res.body, want)
		}
	}
	for _, bad := range []struct{ path, param string }{
		{"/v1/reports/ab?campaign=1&step=opened", "step"},
		{"/v1/reports/retention?by=day", "by"},
		{"/v1/reports/retention?from=2026-02-01&to=2026-01-01", "from"},
		{"/v1/reports/lift?campaign=1&window=soon", "window"},
		{"/v1/reports/anomalies?history=x", "history"},
		{"/v1/reports/lift", "campaign"},
	} {
		res := e.do(req{method: "GET", path: bad.path, key: "analyst", invalid: true})
		if p := res.problem(t); res.status != 400 || p.Errors[0].Parameter != bad.param {
			t.Errorf("%s: %d %s", bad.path, res.status, res.body)
		}
	}
	if res := e.do(req{method: "GET", path: "/v1/reports/ab?campaign=77", key: "analyst"}); res.status != 404 {
		t.Errorf("unknown campaign: %d", res.status)
	}
}
