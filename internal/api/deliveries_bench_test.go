package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
)

// The server time of what a campaign page with 1M recipients asks for when it opens:
// the funnel, the funnel by sender and the first page of deliveries; and a deliveries
// page deep into the list (a cursor at contact 900,000), which must cost about what the
// first does (keyset, not offset). Each request goes through the whole handler (key
// check in Redis, rate limit, ClickHouse), without the network. Read the figures as
// ratios to GET /v1/campaigns/{id} (Redis only), measured in the same run. page_open is
// every request the console's campaign page sends when it opens, one after the other:
//
//	go test ./internal/api -run '^$' -bench BenchmarkCampaignPage -benchtime 20x
func BenchmarkCampaignPage(b *testing.B) {
	e := newEnv(b)
	e.fixtures()
	const n = 1_000_000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	insertEvents(b, ctx, e, "1", n, 1)
	b.Logf("inserted the events of %d recipients in %v", n, time.Since(start).Round(time.Millisecond))
	deep := cursor{List: "deliveries", ID: "900000"}.encode()
	get := func(b *testing.B, path string) {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Authorization", "Bearer "+e.keys["analyst"])
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: %d %s", path, rec.Code, rec.Body.Bytes())
		}
	}
	// Check once that the deep page is where it should be.
	var p page[analytics.Delivery]
	r := httptest.NewRequest(http.MethodGet, "/v1/campaigns/1/deliveries?limit=50&cursor="+url.QueryEscape(deep), nil)
	r.Header.Set("Authorization", "Bearer "+e.keys["analyst"])
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, r)
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || len(p.Items) != 50 || p.Items[0].ContactID != 900001 {
		b.Fatalf("deep page: %d %v %s", rec.Code, err, rec.Body.Bytes()[:min(rec.Body.Len(), 300)])
	}
	for _, bc := range []struct{ name, path string }{
		{"baseline_campaign", "/v1/campaigns/1"},
		{"funnel", "/v1/reports/funnel?campaign=1"},
		{"funnel_by_sender", "/v1/reports/funnel?campaign=1&by=sender"},
		{"deliveries_first_page", "/v1/campaigns/1/deliveries?limit=50"},
		{"deliveries_deep_page", "/v1/campaigns/1/deliveries?limit=50&cursor=" + url.QueryEscape(deep)},
		{"deliveries_failed_first_page", "/v1/campaigns/1/deliveries?limit=50&status=failed"},
		{"timeline_1m", "/v1/campaigns/1/timeline?step=1m"},
		// Opened on demand by the page (their sections are folded): grouped by contact.
		{"ab_read", "/v1/reports/ab?campaign=1&step=read"},
		{"lift", "/v1/reports/lift?campaign=1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				get(b, bc.path)
			}
		})
	}
	// What the page asks for when it opens, one request after the other (the browser
	// sends them at once): its server time.
	b.Run("page_open", func(b *testing.B) {
		for b.Loop() {
			for _, path := range campaignPageOpens {
				get(b, path)
			}
		}
	})
}

// campaignPageOpens are the requests the console's campaign page sends when it opens
// campaign 1.
var campaignPageOpens = []string{
	"/v1/campaigns/1",
	"/v1/reports/funnel?campaign=1",
	"/v1/reports/funnel?campaign=1&by=sender",
	"/v1/campaigns/1/deliveries?limit=25",
	"/v1/campaigns/1/timeline?step=1m",
}
