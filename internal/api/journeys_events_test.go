package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
)

const cartJourney = `id: gold-carts
senders: ["106540352242922"]
entry:
  event: custom
  name: cart_abandoned
  where: {tier: gold}
steps:
  - id: later
    wait: 1d
`

// A custom event posted to /v1/events keeps its name and properties all the way to
// ClickHouse (the sink), and enters a journey whose entry filters on a property: the
// gold customer's cart enters, the silver one's does not; the journey report counts the
// matching events from the properties column.
func TestCustomEventPropertiesReachClickHouseAndJourneys(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	if err := e.comp.Senders.Put(ctx, dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: "t", Rate: 10}); err != nil {
		t.Fatal(err)
	}
	if r := e.do(req{method: "POST", path: "/v1/journeys", key: "marketer", body: map[string]string{"definition": cartJourney}}); r.status != 201 {
		t.Fatalf("add journey: %d", r.status)
	}
	if _, err := app.ImportContacts(ctx, e.d, strings.NewReader("phone,name\n+66810000051,Gil\n+66810000052,Sam\n"), app.ImportOptions{Source: "t.csv"}); err != nil {
		t.Fatal(err)
	}
	eng, err := app.JourneyEngine(e.d, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- eng.Run(ctx) }()
	go func() { done <- app.Sink(ctx, e.d) }()
	defer func() { cancel(); <-done; <-done }()
	post := func(id, phone, tier string) app.SentEvent {
		var sent app.SentEvent
		r := e.do(req{method: "POST", path: "/v1/events", key: "marketer", body: map[string]any{"id": id, "name": "cart_abandoned", "phone": phone,
			"properties": map[string]string{"tier": tier, "cart": "sku-1, sku-2 \"blue\""}}})
		r.decode(t, &sent)
		if r.status != 202 || sent.ContactID == 0 {
			t.Fatalf("post event: %d %+v", r.status, sent)
		}
		return sent
	}
	gold := post("cart-1", "+66810000051", "gold")
	silver := post("cart-2", "+66810000052", "silver")
	poll := func(limit time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	poll(30*time.Second, "the gold cart enters", func() bool { _, ok, _ := eng.Get(ctx, "gold-carts", gold.ContactID); return ok })
	conn, err := e.d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var name, props, tier string
	poll(30*time.Second, "the events in ClickHouse", func() bool {
		var n uint64
		return conn.QueryRow(ctx, "SELECT count() FROM events WHERE event_id IN (?, ?)", gold.ID, silver.ID).Scan(&n) == nil && n == 2
	})
	if err := conn.QueryRow(ctx, "SELECT name, properties, visitParamExtractString(properties, 'tier') FROM events WHERE event_id = ?", gold.ID).Scan(&name, &props, &tier); err != nil {
		t.Fatal(err)
	}
	if name != "cart_abandoned" || tier != "gold" || !strings.Contains(props, `"cart":"sku-1, sku-2 \"blue\""`) {
		t.Fatalf("stored name %q properties %q (tier %q)", name, props, tier)
	}
	if _, ok, _ := eng.Get(ctx, "gold-carts", silver.ContactID); ok {
		t.Fatal("the silver cart entered a gold-only journey")
	}
	var rep app.JourneyReport
	poll(30*time.Second, "the report", func() bool {
		r := e.do(req{method: "GET", path: "/v1/reports/journey?id=gold-carts", key: "analyst"})
		r.decode(t, &rep)
		return r.status == 200 && rep.Entered == 1
	})
	if rep.Triggered == nil || *rep.Triggered != 1 {
		t.Fatalf("report %+v: want one triggering event (the gold cart)", rep)
	}
}
