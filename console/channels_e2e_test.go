package console_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/console"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
)

// The campaign page of a campaign that fell back from WhatsApp to SMS has a Channels
// section whose figures are the API's (GET /v1/reports/channels): per channel the
// funnel and the fallback sends, and the fallbacks by reason and from → to. The events
// are written into ClickHouse as the sink writes them: 8 contacts queued on WhatsApp, 5
// delivered there, 3 failed with 131026 and fell back to SMS (2 delivered there).
func TestConsoleChannels(t *testing.T) {
	br := newBrowser(t)
	s := startStack(t)
	code, body := s.call(t, "launcher", "POST", "/v1/campaigns", map[string]any{"name": "failover", "segment": "customer",
		"template": "welcome", "senders": []string{senderID}})
	var cp dispatcher.Campaign
	if err := json.Unmarshal(body, &cp); err != nil || code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	ctx := context.Background()
	conn, err := s.Deps.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO events (event_id, kind, ts, ts_ms, campaign_id, contact_id, sender_id, channel, reason, error_code, from_channel)")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Add(-time.Hour)
	add := func(kind events.Kind, c uint32, ch string, after time.Duration, reason string, code int32, from string) {
		at := base.Add(time.Duration(c)*time.Second + after)
		disc := ""
		if ch == "sms" {
			disc = "sms"
		}
		if err := b.Append(events.ID(cp.ID, c, kind, disc), string(kind), at, uint64(at.UnixMilli()), cp.ID, c, ch+"-1", ch, reason, code, from); err != nil {
			t.Fatal(err)
		}
	}
	for c := uint32(1); c <= 8; c++ {
		add(events.Queued, c, "whatsapp", 0, "", 0, "")
		add(events.Sent, c, "whatsapp", time.Second, "", 0, "")
		if c <= 5 {
			add(events.Delivered, c, "whatsapp", 3*time.Second, "", 0, "")
			continue
		}
		add(events.Failed, c, "whatsapp", 2*time.Second, "provider_failed", 131026, "")
		add(events.Fallback, c, "sms", 2*time.Second, analytics.FallbackPermanentFailure, 131026, "whatsapp")
		add(events.Sent, c, "sms", 3*time.Second, "", 0, "")
		if c <= 7 {
			add(events.Delivered, c, "sms", 6*time.Second, "", 0, "")
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	code, body = s.call(t, "analyst", "GET", "/v1/reports/channels?campaign="+cp.ID, nil)
	var rep analytics.ChannelsReport
	if err := json.Unmarshal(body, &rep); err != nil || code != 200 || len(rep.Channels) != 2 {
		t.Fatalf("channels report: %d %s", code, body)
	}

	br.do(t, "open the login page", chromedp.Navigate(s.ServeURL+console.Path), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	br.do(t, "log in as an analyst", chromedp.SendKeys(chromedp.CSS("#api-key"), s.keys["analyst"]), chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`#who[data-role="analyst"]`)),
		chromedp.Navigate(s.ServeURL+console.Path+"#/campaigns/"+cp.ID), chromedp.WaitVisible(chromedp.CSS("#channels-figures")))
	br.shot(t, "campaign-channels")
	cells := eval[map[string]map[string]string](t, br, `Object.fromEntries([...document.querySelectorAll("#channels-figures tr[data-channel]")].map(
		(r) => [r.dataset.channel, Object.fromEntries([...r.querySelectorAll("td[data-step]")].map((c) => [c.dataset.step, c.dataset.contacts])
			.concat([["fallback_sent", r.querySelector("[data-fallback-sent]").dataset.fallbackSent],
				["fallback_delivered", r.querySelector("[data-fallback-delivered]").dataset.fallbackDelivered]]))]))`)
	if len(cells) != len(rep.Channels) {
		t.Fatalf("the page shows channels %v, the API %d", cells, len(rep.Channels))
	}
	for _, ch := range rep.Channels {
		for _, st := range ch.Steps {
			if got := cells[ch.Channel][st.Name]; got != strconv.FormatUint(st.Contacts, 10) {
				t.Errorf("%s %s: the page says %q, the API %d", ch.Channel, st.Name, got, st.Contacts)
			}
		}
		if cells[ch.Channel]["fallback_sent"] != strconv.FormatUint(ch.FallbackSent, 10) ||
			cells[ch.Channel]["fallback_delivered"] != strconv.FormatUint(ch.FallbackDelivered, 10) {
			t.Errorf("%s fallback sends: the page says %v, the API %+v", ch.Channel, cells[ch.Channel], ch)
		}
	}
	if rep.Channels[1].Channel != "sms" || rep.Channels[1].FallbackDelivered != 2 || rep.ReachedOnlyByFallback != 2 {
		t.Errorf("report %+v", rep)
	}
	fallbacks := eval[string](t, br, `document.querySelector('#channels-fallbacks tr[data-reason="permanent_failure"][data-from="whatsapp"][data-to="sms"] td[data-contacts]').dataset.contacts`)
	if fallbacks != "3" {
		t.Errorf("fallbacks whatsapp → sms by permanent failure: the page says %q, want 3", fallbacks)
	}
	br.checkNoErrors(t)
}
