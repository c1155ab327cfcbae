package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// chats links Telegram chat ids to contacts for the test (the app wires the contact
// store's identities).
type chats struct {
	mu sync.Mutex
	m  map[string]uint32
}

var errTaken = errors.New("identity taken")

func (c *chats) lookup(_ context.Context, chat string) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[chat], nil
}

func (c *chats) link(_ context.Context, contact uint32, chat string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[chat]; ok && old != contact {
		return errTaken
	}
	c.m[chat] = contact
	return nil
}

// The Telegram webhook: a forged, missing or other bot's secret token is 401 and records
// nothing; a signed /start links the chat to the contact its payload names and grants
// (telegram, marketing) with the message as proof; /stop revokes; other text is a reply
// of that contact; a /start with a payload Herald did not sign links nothing.
func TestTelegramWebhook(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	ids, err := f.store.Upsert(ctx, []segments.Contact{{Phone: "+14155550177", Name: "Tg"}})
	if err != nil {
		t.Fatal(err)
	}
	ann := ids[0]
	key := []byte("telegram-test-key")
	ledger := throttle.NewLedger(f.rdb, f.prefix, f.cons)
	links := &chats{m: map[string]uint32{}}
	srv := httptest.NewServer(New(Config{Events: f.evs, Inbound: f.inbound, Tracker: f.tracker, Policy: f.policy, Ledger: ledger,
		Contacts: f.store, Telegram: &TelegramConfig{Key: key, Lookup: links.lookup, Link: links.link, Taken: errTaken}}).Handler())
	t.Cleanup(srv.Close)
	const bot = "4242"
	secret := telegram.WebhookSecret(key, bot)
	n := 0
	post := func(chat int64, text, secret string) int {
		t.Helper()
		n++
		body, _ := json.Marshal(map[string]any{"update_id": n, "message": map[string]any{"message_id": n, "date": 1767000000 + n,
			"chat": map[string]any{"id": chat, "type": "private"}, "from": map[string]any{"id": chat, "is_bot": false}, "text": text}})
		req, _ := http.NewRequest("POST", srv.URL+telegram.WebhookPath, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		if secret != "" {
			req.Header.Set(telegram.SecretHeader, secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	granted := func() bool {
		t.Helper()
		st, err := f.policy.Consent(ctx, "telegram", "marketing", []uint32{ann})
		if err != nil {
			t.Fatal(err)
		}
		return st[0].Granted
	}
	start := "/start " + telegram.LinkPayload(key, ann)
	for name, s := range map[string]string{
		"no secret": "", "garbage": "garbage", "another key": telegram.WebhookSecret([]byte("other"), bot),
		"altered": secret[:len(secret)-1] + "A", "another bot's name": "4243" + secret[len(bot):],
	} {
		if code := post(555, start, s); code != http.StatusUnauthorized {
			t.Fatalf("%s: %d, want 401", name, code)
		}
		if granted() || len(links.m) != 0 || len(f.inbound.msgs) != 0 || len(f.evs.msgs) != 0 {
			t.Fatalf("%s: a forged update recorded something", name)
		}
	}
	if code := post(555, start, secret); code != 200 {
		t.Fatalf("signed /start: %d", code)
	}
	if links.m["555"] != ann || !granted() {
		t.Fatalf("after /start: links %v, granted %v", links.m, granted())
	}
	f.cons.mu.Lock()
	var last events.ConsentRecord
	err = json.Unmarshal(f.cons.msgs[len(f.cons.msgs)-1].Value, &last)
	f.cons.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if last.Channel != "telegram" || last.Action != events.Grant || !strings.Contains(last.Proof, "telegram message 555:") || !strings.Contains(last.Proof, "/start") {
		t.Fatalf("grant record %+v", last)
	}
	if code := post(555, "/stop", secret); code != 200 || granted() {
		t.Fatalf("/stop: %d, granted %v", code, granted())
	}
	if code := post(555, "what time do you open?", secret); code != 200 {
		t.Fatalf("reply: %d", code)
	}
	var in events.Inbound
	if err := json.Unmarshal(f.inbound.msgs[len(f.inbound.msgs)-1].Value, &in); err != nil {
		t.Fatal(err)
	}
	if in.ContactID != ann || in.Channel != "telegram" || in.From != "555" || in.Text != "what time do you open?" {
		t.Fatalf("reply recorded as %+v", in)
	}
	// A payload Herald did not sign links nothing; the chat stays unknown.
	if code := post(556, "/start "+strings.Repeat("A", 27), secret); code != 200 || len(links.m) != 1 {
		t.Fatalf("unsigned payload: %d, links %v", code, links.m)
	}
	// A chat linked to one contact is not taken over by another's payload.
	other, _ := f.store.Upsert(ctx, []segments.Contact{{Phone: "+14155550178"}})
	if code := post(555, "/start "+telegram.LinkPayload(key, other[0]), secret); code != 200 || links.m["555"] != ann {
		t.Fatalf("payload of another contact: %d, links %v", code, links.m)
	}
}
