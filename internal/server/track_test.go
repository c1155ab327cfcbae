package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
)

// A conversion is attributed to the last campaign that sent to the contact within the
// window, travels through real Kafka, and a retried request gives the same event id.
func TestConversionHandler(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	ids, err := segments.NewStore(rdb, prefix).Upsert(ctx, []segments.Contact{{Phone: "+66812345678"}, {Phone: "+66812345679"}})
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := testenv.ClickHouse(t)
	if _, err := analytics.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 20, 12, 0, 0, 0, time.UTC)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id)")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		campaign string
		contact  uint32
		ago      time.Duration
	}{
		{"old", ids[0], 10 * 24 * time.Hour}, // outside the 7-day window
		{"spring", ids[0], 3 * 24 * time.Hour},
		{"summer", ids[0], 2 * 24 * time.Hour}, // the last touch
		{"later", ids[0], -time.Hour},          // after the order: not a cause
		{"old", ids[1], 8 * 24 * time.Hour},
	} {
		at := now.Add(-s.ago)
		if err := b.Append(events.ID(s.campaign, s.contact, events.Sent, ""), "sent", at, uint64(at.UnixMilli()), s.campaign, s.contact); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	brokers, topics := testenv.Kafka(t, 1)
	w := kafkax.NewWriter(brokers, topics.Events)
	defer w.Close()
	srv := httptest.NewServer(NewConversionHandler(TrackConfig{Token: "tok", Contacts: segments.NewStore(rdb, prefix),
		Attribution: analytics.NewAttributor(conn, 0), Events: w, Now: func() time.Time { return now }}))
	defer srv.Close()

	post := func(token, body string) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	order := `{"phone":"+66812345678","order_id":"A-1","value":12.5,"currency":"THB"}`
	var first ConversionResponse
	for i := range 2 {
		code, body := post("tok", order)
		var res ConversionResponse
		if code != http.StatusAccepted || json.Unmarshal([]byte(body), &res) != nil {
			t.Fatalf("conversion: %d %s", code, body)
		}
		if res.Campaign != "summer" || !res.Attributed || res.ContactID != ids[0] || !res.SentAt.Equal(now.Add(-48*time.Hour)) {
			t.Fatalf("attribution: %+v", res)
		}
		if i == 0 {
			first = res
		} else if res.EventID != first.EventID {
			t.Fatalf("a retried order got another event id: %s vs %s", res.EventID, first.EventID)
		}
	}
	code, body := post("tok", `{"phone":"66812345679","order_id":"B-1","value":3,"currency":"THB"}`)
	if code != http.StatusAccepted || !strings.Contains(body, `"attributed":false`) {
		t.Fatalf("unattributed conversion: %d %s", code, body)
	}
	for _, tc := range []struct {
		token, body string
		code        int
	}{
		{"", order, http.StatusUnauthorized},
		{"wrong", order, http.StatusUnauthorized},
		{"tok", `{"phone":`, http.StatusBadRequest},
		{"tok", `{"phone":"+66812345678","order_id":"","value":-1,"currency":"baht"}`, http.StatusBadRequest},
		{"tok", `{"phone":"+66812345678","order_id":"x","value":1,"currency":"THB","extra":1}`, http.StatusBadRequest},
		{"tok", `{"phone":"+66899999999","order_id":"x","value":1,"currency":"THB"}`, http.StatusNotFound},
	} {
		if code, body := post(tc.token, tc.body); code != tc.code {
			t.Errorf("token %q body %s: %d %s; want %d", tc.token, tc.body, code, body, tc.code)
		}
	}

	// What reached Kafka: three converted events, the retry with the same id.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topics.Events, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got []events.Event
	for range 3 {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Unmarshal(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if got[0].Kind != events.Converted || got[0].CampaignID != "summer" || got[0].ID != first.EventID || got[1].ID != first.EventID ||
		got[2].CampaignID != "" || !got[0].Time.Equal(now) {
		t.Fatalf("events %+v", got)
	}
}
