package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-dev/herald/channels/line"
	linesandbox "github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/internal/events"
)

// The LINE webhook: a forged or unsigned request is refused 401 and records nothing; a
// follow from someone unknown makes a contact known by the LINE user id and grants LINE
// marketing with the event as proof (a redelivery collapses); an unfollow revokes it; a
// message is an inbound reply that opens no window.
func TestLINEWebhook(t *testing.T) {
	const secret = "line-secret"
	ctx := context.Background()
	f := setupWith(t, func(c *Config) {
		ch, err := line.New(line.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ch.SetSecret("oa-1", secret)
		c.LINE = &LINEConfig{Channel: ch}
	})
	cons0, evs0 := len(f.cons.msgs), len(f.evs.msgs)
	sb := linesandbox.New(linesandbox.Config{ChannelSecret: secret, WebhookURL: f.srv.URL + line.WebhookPath})
	forged := linesandbox.New(linesandbox.Config{ChannelSecret: "not-" + secret, WebhookURL: f.srv.URL + line.WebhookPath})
	user := linesandbox.UserID("amy")

	if _, err := forged.Follow(ctx, user); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a forged follow: %v, want 401", err)
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+line.WebhookPath, strings.NewReader(`{"destination":"U1","events":[]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an unsigned request: %d, want 401", resp.StatusCode)
	}
	if _, err := f.store.LookupIdentity(ctx, "line", user); err == nil || len(f.cons.msgs) != cons0 || len(f.evs.msgs) != evs0 {
		t.Fatalf("a refused webhook changed something: lookup err %v, %d consent records, %d events", err, len(f.cons.msgs), len(f.evs.msgs))
	}

	id, err := sb.Follow(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Redeliver(ctx, id); err != nil {
		t.Fatal(err)
	}
	contact, err := f.store.LookupIdentity(ctx, "line", user)
	if err != nil {
		t.Fatalf("the follow made no contact: %v", err)
	}
	st, err := f.policy.Consent(ctx, "line", "marketing", []uint32{contact})
	if err != nil || !st[0].Granted {
		t.Fatalf("consent after a follow: %+v, %v", st, err)
	}
	var grants int
	for _, m := range f.cons.msgs {
		if strings.Contains(string(m.Value), id) {
			grants++
		}
	}
	if grants != 1 {
		t.Fatalf("%d consent records name the follow event %s, want 1 (with the redelivery collapsed)", grants, id)
	}
	ids := map[string]bool{}
	for _, e := range f.evs.events(t) {
		if e.Kind == events.OptedIn && e.ContactID == contact {
			ids[e.ID] = true
		}
	}
	if len(ids) != 1 {
		t.Fatalf("opted_in event ids %v for one follow delivered twice: want one id (the sink collapses duplicates)", ids)
	}

	if _, err := sb.Message(ctx, user, "Is it on Sunday too?", ""); err != nil {
		t.Fatal(err)
	}
	if n := len(f.inbound.msgs); n != 1 {
		t.Fatalf("%d inbound messages, want 1", n)
	}
	if _, err := sb.Unfollow(ctx, user); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.policy.Consent(ctx, "line", "marketing", []uint32{contact}); st[0].Granted {
		t.Fatal("an unfollow did not revoke LINE marketing")
	}
	if wa, _ := f.policy.Consent(ctx, "whatsapp", "marketing", []uint32{f.contact}); !wa[0].Granted {
		t.Fatal("a LINE event touched another contact's WhatsApp consent")
	}
}
