package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/app"
)

// GET /v1/reports/channels is the CLI's report (app.Report "channels") on the same
// ClickHouse, in the spec's shape: campaign 1 sent 10 contacts on WhatsApp, 4 failed
// with 131026 and fell back to SMS, where 3 were delivered.
func TestChannelsReport(t *testing.T) {
	e := newEnv(t)
	e.fixtures()
	conn, err := e.d.ClickHouse(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour)
	var q bytes.Buffer
	q.WriteString("INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, reason, error_code, from_channel) ")
	n := 0
	add := func(kind string, contact int, channel string, at time.Time, reason string, code int, from string) {
		if n > 0 {
			q.WriteString(" UNION ALL ")
		}
		n++
		fmt.Fprintf(&q, "SELECT 'e%d', '%s', toDateTime(%d), toUInt64(%d), '1', toUInt32(%d), '%s-1', '%s', '%s', toInt32(%d), '%s'",
			n, kind, at.Unix(), at.UnixMilli(), contact, channel, channel, reason, code, from)
	}
	for c := 1; c <= 10; c++ {
		at := base.Add(time.Duration(c) * time.Minute)
		add("queued", c, "whatsapp", at, "", 0, "")
		add("sent", c, "whatsapp", at.Add(time.Second), "", 0, "")
		if c <= 4 {
			add("failed", c, "whatsapp", at.Add(2*time.Second), "provider_failed", 131026, "")
			add("fallback", c, "sms", at.Add(2*time.Second), "permanent_failure", 131026, "whatsapp")
			add("sent", c, "sms", at.Add(3*time.Second), "", 0, "")
			if c <= 3 {
				add("delivered", c, "sms", at.Add(5*time.Second), "", 0, "")
			}
			continue
		}
		add("delivered", c, "whatsapp", at.Add(4*time.Second), "", 0, "")
	}
	if err := conn.Exec(e.ctx, q.String()); err != nil {
		t.Fatal(err)
	}
	res := e.do(req{method: "GET", path: "/v1/reports/channels?campaign=1", key: "analyst"})
	if res.status != 200 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	var r analytics.ChannelsReport
	if err := json.Unmarshal(res.body, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Channels) != 2 || r.Channels[0].Channel != "whatsapp" || r.Channels[1].FallbackDelivered != 3 ||
		r.Reached != 9 || r.ReachedOnlyByFallback != 3 || len(r.Fallbacks) != 1 || r.Fallbacks[0].Contacts != 4 {
		t.Errorf("report %+v", r)
	}
	v, err := app.Report(e.ctx, conn, "channels", app.ReportParams{Campaign: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := marshal(v); !bytes.Equal(want, res.body) {
		t.Errorf("the API says\n%s\nthe CLI's use case\n%s", res.body, want)
	}
	if res := e.do(req{method: "GET", path: "/v1/reports/channels", key: "analyst", invalid: true}); res.status != 400 || res.problem(t).Errors[0].Parameter != "campaign" {
		t.Errorf("without a campaign: %d %s", res.status, res.body)
	}
	if res := e.do(req{method: "GET", path: "/v1/reports/channels?campaign=77", key: "analyst"}); res.status != 404 {
		t.Errorf("unknown campaign: %d %s", res.status, res.body)
	}
}
