package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/webhooks"
)

// Outbound webhooks on the whole stack: a subscription to one campaign's sent,
// delivered, read and failed events gets exactly the (kind, contact) pairs ClickHouse
// holds for that campaign, whatever the sandbox duplicates, each under one
// Herald-Webhook-Id; a subscription to another campaign gets nothing.
func TestWebhooksEndToEnd(t *testing.T) {
	s, ctx := testStack(t, sandbox.Config{
		Throughput: 1000, DelayScale: 0.02, ReadRate: 0.5, UndeliverableRate: 0.1, DuplicateRate: 0.3, Seed: 11,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}},
	})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := range 40 {
		fmt.Fprintf(&csv, "+6682%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, strings.NewReader(csv.String()), ImportOptions{Source: "wh.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	sender := dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: DevSandboxToken, Rate: 300}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	got := map[string]webhooks.Envelope{}
	other := 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env webhooks.Envelope
		if err := json.Unmarshal(b, &env); err != nil || env.ID != r.Header.Get(webhooks.HeaderID) {
			t.Errorf("bad delivery %s: %v", b, err)
		}
		mu.Lock()
		if env.Campaign != cp.ID {
			other++
		}
		got[env.ID] = env
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	kinds := []events.Kind{events.Sent, events.Delivered, events.Read, events.Failed}
	sub, err := comp.Webhooks.Create(ctx, webhooks.Spec{URL: rcv.URL, Kinds: kinds, Campaigns: []string{cp.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Webhooks.Create(ctx, webhooks.Spec{URL: rcv.URL + "/other", Kinds: webhooks.Kinds, Campaigns: []string{"999"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, ctx, comp.Campaigns, cp.ID)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if err := waitSink(wctx, d); err != nil {
		t.Fatal(err)
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT DISTINCT kind, contact_id FROM events WHERE campaign_id = ? AND kind IN ('sent', 'delivered', 'read', 'failed')", cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for rows.Next() {
		var kind string
		var contact uint32
		if err := rows.Scan(&kind, &contact); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprint(kind, "/", contact)] = true
	}
	rows.Close()
	if len(want) < 40 {
		t.Fatalf("ClickHouse holds %d (kind, contact) pairs: the scenario sent too little", len(want))
	}
	pairs := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for _, env := range got {
			out[fmt.Sprint(env.Kind, "/", env.Contact)]++
		}
		return out
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(pairs()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	p := pairs()
	for k, n := range p {
		if !want[k] {
			t.Errorf("delivered %s, which ClickHouse does not hold", k)
		}
		if n != 1 {
			t.Errorf("%s delivered under %d ids, want 1", k, n)
		}
	}
	for k := range want {
		if p[k] == 0 {
			t.Errorf("%s never delivered", k)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if other != 0 {
		t.Errorf("%d deliveries of other campaigns", other)
	}
	log, _, _, err := comp.Webhooks.Deliveries(ctx, sub.ID, webhooks.DeliveryFilter{State: webhooks.StateDelivered}, 0, "", 10000)
	if err != nil || len(log) != len(want) {
		t.Fatalf("log: %d delivered (%v), want %d", len(log), err, len(want))
	}
}
