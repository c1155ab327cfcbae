package line_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/line"
	"github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

func setup(t *testing.T, cfg sandbox.Config) (*sandbox.Sandbox, *line.Channel, dispatcher.Sender) {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = "tok"
	}
	sb := sandbox.New(cfg)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	ch, err := line.New(line.Config{BaseURL: srv.URL, Now: cfg.Now})
	if err != nil {
		t.Fatal(err)
	}
	return sb, ch, dispatcher.Sender{ID: "l1", Channel: "line", Token: cfg.Token, Rate: 100}
}

func msg(cb, to, text string) dispatcher.Message {
	return dispatcher.Message{To: to, CallbackData: cb, Rendered: templates.Rendered{Channel: "line", Kind: templates.KindText, Text: text}}
}

// A push LINE accepted but whose answer was lost (a 500 after acceptance, a timeout) is
// retried with the same key: 409, the accepted message's id, nothing sent twice.
func TestRetryAfterAcceptanceSettlesAsSent(t *testing.T) {
	var lose atomic.Bool
	lose.Store(true)
	sb, ch, s := setup(t, sandbox.Config{Fault: func(string, []string) sandbox.Fault {
		if lose.Load() {
			return sandbox.Fault{Status: 500, Message: "Internal Server Error", Accept: true}
		}
		return sandbox.Fault{}
	}})
	m := msg("c1:9", sandbox.UserID("9"), "hello")
	_, err := ch.Send(context.Background(), s, m)
	var se *dispatcher.SendError
	if !errors.As(err, &se) || !se.Retryable {
		t.Fatalf("first send: %v, want a retryable refusal", err)
	}
	lose.Store(false)
	id, err := ch.Send(context.Background(), s, m)
	if err != nil {
		t.Fatal(err)
	}
	recs := sb.Records()
	if len(recs) != 1 || recs[0].ProviderID() != id || sb.Stats().Duplicates != 1 {
		t.Fatalf("records %+v, id %s, stats %+v; want one message, settled by the 409 under its id", recs, id, sb.Stats())
	}
}

func batch(campaign string, n int, text string) []dispatcher.Message {
	ms := make([]dispatcher.Message, n)
	for i := range ms {
		ms[i] = msg(dispatcher.CallbackData(campaign, uint32(i+1)), sandbox.UserID(fmt.Sprint(i)), text)
	}
	return ms
}

// SendBatch: up to 500 user ids a request, per-contact ids "<request id>:<index>", and a
// re-sent batch (a crash, a timeout) is a 409 whose ids are the first request's.
func TestSendBatch(t *testing.T) {
	sb, ch, s := setup(t, sandbox.Config{})
	ms := batch("b1", 1203, "Sale today")
	// Delivered in reverse: the adapter orders the members itself.
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	res := ch.SendBatch(context.Background(), s, ms)
	byTo := map[string]string{}
	reqs := map[string]bool{}
	for _, r := range sb.Records() {
		byTo[r.To] = r.ProviderID()
		reqs[r.RequestID] = true
		if r.Endpoint != "multicast" {
			t.Fatalf("record %+v is not a multicast", r)
		}
	}
	if len(reqs) != 3 || len(byTo) != len(ms) {
		t.Fatalf("%d requests for %d recipients, want 3 for %d", len(reqs), len(byTo), len(ms))
	}
	for i, r := range res {
		if r.Err != nil || r.ProviderID != byTo[ms[i].To] {
			t.Fatalf("result %d: %+v, the sandbox recorded %q", i, r, byTo[ms[i].To])
		}
	}
	again := ch.SendBatch(context.Background(), s, ms)
	for i, r := range again {
		if r.Err != nil || r.ProviderID != res[i].ProviderID {
			t.Fatalf("re-sent result %d: %+v, first %+v", i, r, res[i])
		}
	}
	if st := sb.Stats(); st.Recipients != int64(len(ms)) || st.Duplicates != 3 {
		t.Fatalf("stats %+v: want %d recipients once and 3 duplicate requests", st, len(ms))
	}
}

// One bad user id in a multicast fails that contact alone; the rest is sent.
func TestSendBatchIsolatesBadIDs(t *testing.T) {
	sb, ch, s := setup(t, sandbox.Config{})
	ms := batch("b2", 20, strings.Repeat("x", line.MaxTextChars))
	ms[3].To = "Ubad"
	res := ch.SendBatch(context.Background(), s, ms)
	for i, r := range res {
		var se *dispatcher.SendError
		switch {
		case i == 3 && (!errors.As(r.Err, &se) || se.Action != dispatcher.ActionUndeliverable):
			t.Fatalf("the bad id: %+v", r)
		case i != 3 && r.Err != nil:
			t.Fatalf("result %d: %v", i, r.Err)
		}
	}
	if n := len(sb.Records()); n != 19 {
		t.Fatalf("%d recorded, want 19", n)
	}
}

// A body over 2 MB: refused before sending by the adapter, 413 at the sandbox.
func TestBodyLimit(t *testing.T) {
	sb, ch, s := setup(t, sandbox.Config{})
	huge := json.RawMessage(`{"type":"text","text":"` + strings.Repeat("a", line.MaxBody) + `"}`)
	_, err := ch.Push(context.Background(), s.Token, line.RetryKey("x:1"), sandbox.UserID("1"), []json.RawMessage{huge})
	if ae, ok := errors.AsType[*line.APIError](err); !ok || ae.Status != http.StatusRequestEntityTooLarge || sb.Stats().Requests != 0 {
		t.Fatalf("%v; %d requests reached the sandbox", err, sb.Stats().Requests)
	}
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+line.PushPath, strings.NewReader(`{"to":"`+strings.Repeat("a", line.MaxBody)+`"}`))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("sandbox answered %d to a body over 2 MB, want 413", resp.StatusCode)
	}
}

// The monthly quota: the 429 with LINE's message holds the sender until the month
// turns (JST), and the quota endpoints tell the truth.
func TestMonthlyQuota(t *testing.T) {
	now := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	sb, ch, s := setup(t, sandbox.Config{MonthlyQuota: 3, Now: func() time.Time { return now }})
	ctx := context.Background()
	if res := ch.SendBatch(ctx, s, batch("q", 3, "hi")); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	_, err := ch.Send(ctx, s, msg("q:9", sandbox.UserID("9"), "hi"))
	var se *dispatcher.SendError
	if !errors.As(err, &se) || se.Action != dispatcher.ActionPauseSender || se.Retryable || se.RetryAfter != line.NextMonth(now).Sub(now) {
		t.Fatalf("%v (%+v): want pause_sender until the next month", err, se)
	}
	if !strings.Contains(err.Error(), line.MonthlyLimitMessage) {
		t.Fatalf("the reason %q does not name the monthly limit", err)
	}
	q, err := ch.Quota(ctx, s.Token)
	if err != nil || q.Type != "limited" || q.Value != 3 {
		t.Fatalf("quota %+v, %v", q, err)
	}
	if used, err := ch.Consumption(ctx, s.Token); err != nil || used != 3 {
		t.Fatalf("consumption %d, %v; want 3", used, err)
	}
	if st := sb.Stats(); st.Recipients != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// A user who blocked the account: LINE answers 200 and delivers nothing; the sandbox
// records the truth.
func TestBlockedUserIsAcceptedNotDelivered(t *testing.T) {
	sb, ch, s := setup(t, sandbox.Config{})
	u := sandbox.UserID("blocker")
	if _, err := sb.Unfollow(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Send(context.Background(), s, msg("c:1", u, "hi")); err != nil {
		t.Fatal(err)
	}
	if r := sb.Records(); len(r) != 1 || r[0].Delivered {
		t.Fatalf("records %+v: want one accepted, not delivered", r)
	}
}

func TestMessages(t *testing.T) {
	for _, c := range []struct{ text, typ string }{
		{"plain text", `"type":"text"`},
		{"Sale: https://h.example/c/abc", `"type":"buttons"`},
		{strings.Repeat("long ", 40) + "https://h.example/c/abc", `"type":"bubble"`},
		{"https://a.example/1 https://b.example/2 https://c.example/3 https://d.example/4 https://e.example/5", `"type":"text"`},
	} {
		ms, err := line.Messages(templates.Rendered{Kind: templates.KindText, Text: c.text})
		if err != nil || len(ms) != 1 || !strings.Contains(string(ms[0]), c.typ) {
			t.Errorf("%q: %s, %v; want %s", c.text, ms, err, c.typ)
		}
	}
}
