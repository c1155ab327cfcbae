package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

func TestSendErrors(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{
		Now:        clk.Now,
		Throughput: 1e6,
		Templates: []ApprovedTemplate{
			orderConfirmation,
			{Name: "promo", Language: "en_US", Category: "MARKETING", PositionalParams: 2},
			{Name: "plain", Language: "en_US", Category: "MARKETING"},
		},
	})
	const msgs = "/v21.0/" + pnid + "/messages"
	text := func(to, body string) string {
		b, _ := json.Marshal(body)
		return `{"messaging_product":"whatsapp","recipient_type":"individual","to":"` + to + `","type":"text","text":{"preview_url":false,"body":` + string(b) + `}}`
	}
	tmpl := func(name, lang, params string) string {
		return `{"messaging_product":"whatsapp","to":"+16505551234","type":"template","template":{"name":"` + name +
			`","language":{"code":"` + lang + `"},"components":[{"type":"body","parameters":[` + params + `]}]}}`
	}
	cases := []struct {
		name   string
		path   string
		auth   string
		body   string
		status int
		code   int
	}{
		{"no token", msgs, "", templateBody("+16505551234", ""), 401, 190},
		{"wrong token", msgs, "nope", templateBody("+16505551234", ""), 401, 190},
		{"bad version", "/21.0/" + pnid + "/messages", testToken, templateBody("+16505551234", ""), 400, 2500},
		{"not json", msgs, testToken, `{"messaging_product":`, 400, 100},
		{"no messaging_product", msgs, testToken, `{"to":"+16505551234","type":"text","text":{"body":"hi"}}`, 400, 100},
		{"other messaging_product", msgs, testToken, `{"messaging_product":"sms","to":"+16505551234","type":"text","text":{"body":"hi"}}`, 400, 100},
		{"group recipient", msgs, testToken, `{"messaging_product":"whatsapp","recipient_type":"group","to":"+16505551234","type":"text","text":{"body":"hi"}}`, 400, 100},
		{"to letters", msgs, testToken, text("+1650555ABCD", "hi"), 400, 100},
		{"to too short", msgs, testToken, text("+1234567", "hi"), 400, 100},
		{"to too long", msgs, testToken, text("+1234567890123456", "hi"), 400, 100},
		{"to empty", msgs, testToken, text("", "hi"), 400, 100},
		{"to double plus", msgs, testToken, text("++16505551234", "hi"), 400, 100},
		{"image type", msgs, testToken, `{"messaging_product":"whatsapp","to":"+16505551234","type":"image","image":{"link":"https://x/y.png"}}`, 400, 131051},
		{"text missing", msgs, testToken, `{"messaging_product":"whatsapp","to":"+16505551234","type":"text"}`, 400, 131008},
		{"text empty", msgs, testToken, text("+16505551234", ""), 400, 100},
		{"text too long", msgs, testToken, text("+16505551234", strings.Repeat("a", 4097)), 400, 100},
		{"text outside window", msgs, testToken, text("+16505551234", "hello"), 400, 131047},
		{"4096 multibyte chars, outside window", msgs, testToken, text("+16505551234", strings.Repeat("é", 4096)), 400, 131047},
		{"template missing", msgs, testToken, `{"messaging_product":"whatsapp","to":"+16505551234","type":"template"}`, 400, 131008},
		{"template without language", msgs, testToken, `{"messaging_product":"whatsapp","to":"+16505551234","type":"template","template":{"name":"promo"}}`, 400, 131008},
		{"unknown template", msgs, testToken, tmpl("nope", "en_US", ""), 404, 132001},
		{"known template, other language", msgs, testToken, tmpl("promo", "pt_BR", `{"type":"text","text":"a"},{"type":"text","text":"b"}`), 404, 132001},
		{"too few positional", msgs, testToken, tmpl("promo", "en_US", `{"type":"text","text":"a"}`), 400, 132000},
		{"too many positional", msgs, testToken, tmpl("promo", "en_US", `{"type":"text","text":"a"},{"type":"text","text":"b"},{"type":"text","text":"c"}`), 400, 132000},
		{"named to positional", msgs, testToken, tmpl("promo", "en_US", `{"type":"text","parameter_name":"a","text":"a"},{"type":"text","text":"b"}`), 400, 132000},
		{"positional to named", msgs, testToken, tmpl("order_confirmation", "en_US", `{"type":"text","text":"a"},{"type":"text","text":"b"}`), 400, 132000},
		{"unknown name", msgs, testToken, tmpl("order_confirmation", "en_US", `{"type":"text","parameter_name":"first_name","text":"a"},{"type":"text","parameter_name":"total","text":"b"}`), 400, 132000},
		{"name twice", msgs, testToken, tmpl("order_confirmation", "en_US", `{"type":"text","parameter_name":"first_name","text":"a"},{"type":"text","parameter_name":"first_name","text":"b"}`), 400, 132000},
		{"params for a template without any", msgs, testToken, tmpl("plain", "en_US", `{"type":"text","text":"a"}`), 400, 132000},
		{"non-text parameter", msgs, testToken, tmpl("promo", "en_US", `{"type":"currency","text":"a"},{"type":"text","text":"b"}`), 400, 132012},
		{"callback data too long", msgs, testToken, templateBody("+16505551234", strings.Repeat("x", 513)), 400, 100},
		{"get on messages", msgs, testToken, "", 400, 100},
	}
	want := map[int]int64{}
	requests := int64(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r reply
			if c.name == "get on messages" {
				resp, err := http.Get(e.api.URL + c.path)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				r.status, r.raw = resp.StatusCode, string(b)
				if err := json.Unmarshal(b, &r.err); err != nil {
					t.Fatalf("not a Graph error: %s", b)
				}
			} else {
				r = e.post(t, c.path, c.auth, c.body)
				requests++
				want[c.code]++
			}
			if r.status != c.status || r.err.Error.Code != c.code {
				t.Fatalf("HTTP %d code %d, want HTTP %d code %d: %s", r.status, r.err.Error.Code, c.status, c.code, r.raw)
			}
			if r.err.Error.Type != "OAuthException" || r.err.Error.Message == "" || r.err.Error.FBTraceID == "" ||
				r.err.Error.ErrorData == nil || r.err.Error.ErrorData.Details == "" {
				t.Errorf("error shape: %s", r.raw)
			}
		})
	}
	st := e.sb.Stats()
	if st.Accepted != 0 || st.Requests != requests || len(e.sb.Records()) != 0 {
		t.Errorf("stats %+v after only refused requests", st)
	}
	for code, n := range want {
		if st.Rejected[code] != n {
			t.Errorf("rejected[%d] = %d, want %d", code, st.Rejected[code], n)
		}
	}
	if st.Pending != 0 {
		t.Errorf("pending %d", st.Pending)
	}
}

func TestThroughputLimit(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, Throughput: 10, PairInterval: -1, Templates: []ApprovedTemplate{orderConfirmation}})
	to := func(i int) string { return fmt.Sprintf("+1650555%04d", i) }
	n := 0
	sendFrom := func(number string) reply {
		n++
		return e.post(t, "/v21.0/"+number+"/messages", testToken, templateBody(to(n), ""))
	}
	for i := 0; i < 10; i++ { // a burst of one second's worth
		if r := sendFrom(pnid); r.status != 200 {
			t.Fatalf("send %d: %s", i, r.raw)
		}
	}
	r := sendFrom(pnid)
	if r.status != http.StatusTooManyRequests || r.err.Error.Code != 130429 {
		t.Fatalf("11th send in the same instant: HTTP %d %s", r.status, r.raw)
	}
	if got := graph.ClassifyCode(r.err.Error.Code); !got.SlowSender || got.Action != graph.ActionRetry {
		t.Errorf("class %+v", got)
	}
	if r := sendFrom("999"); r.status != 200 { // other numbers have their own bucket
		t.Fatalf("other number: %s", r.raw)
	}
	clk.Advance(100 * time.Millisecond) // one token
	if r := sendFrom(pnid); r.status != 200 {
		t.Fatalf("after 100ms: %s", r.raw)
	}
	if r := sendFrom(pnid); r.err.Error.Code != 130429 {
		t.Fatalf("second after 100ms: %s", r.raw)
	}
	clk.Advance(time.Hour) // refills to the burst, not beyond
	ok := 0
	for i := 0; i < 15; i++ {
		if sendFrom(pnid).status == 200 {
			ok++
		}
	}
	if ok != 10 {
		t.Errorf("%d accepted after a long pause, want 10 (the burst)", ok)
	}
	st := e.sb.Stats()
	if st.Rejected[130429] != 7 || st.Accepted != 22 {
		t.Errorf("stats %+v", st)
	}
}

func TestPairRate(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, Templates: []ApprovedTemplate{orderConfirmation}})
	if r := e.send(t, templateBody("+16505551234", "")); r.status != 200 {
		t.Fatal(r.raw)
	}
	clk.Advance(5 * time.Second)
	r := e.send(t, templateBody("+16505551234", ""))
	if r.err.Error.Code != 131056 {
		t.Fatalf("second message within 6s: %s", r.raw)
	}
	if got := graph.ClassifyCode(131056).Action; got != graph.ActionBackoffRecipient {
		t.Errorf("class %v", got)
	}
	if r := e.send(t, templateBody("+16505550000", "")); r.status != 200 {
		t.Errorf("other recipient: %s", r.raw)
	}
	if r := e.post(t, "/v21.0/200000000000002/messages", testToken, templateBody("+16505551234", "")); r.status != 200 {
		t.Errorf("same recipient from another number: %s", r.raw)
	}
	clk.Advance(time.Second) // 6s since the first
	if r := e.send(t, templateBody("+16505551234", "")); r.status != 200 {
		t.Errorf("after 6s: %s", r.raw)
	}
	if got := e.sb.Stats().Rejected[131056]; got != 1 {
		t.Errorf("rejected 131056: %d", got)
	}
	// The refused message was not recorded.
	if got := len(e.sb.Records()); got != 4 {
		t.Errorf("%d records, want 4", got)
	}
}

func TestPairSweep(t *testing.T) {
	clk := newClock()
	sb := New(Config{Now: clk.Now, PairInterval: time.Second}, nil)
	sb.pairSweepMin = 16
	for i := range sb.pairs {
		sb.pairs[i].sweepAt = 16
	}
	for i := 0; i < 64*500; i++ {
		if !sb.pairAllow(pnid, fmt.Sprint(i), clk.Now()) {
			t.Fatal("distinct recipients refused")
		}
		if i%100 == 99 {
			clk.Advance(2 * time.Second)
		}
	}
	total := 0
	for i := range sb.pairs {
		total += len(sb.pairs[i].last)
	}
	if total >= 64*500/4 {
		t.Errorf("%d pair entries kept; old ones are not swept", total)
	}
}

func TestWindowAndInbound(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, DelayScale: -1})
	e.run(t)
	text := `{"messaging_product":"whatsapp","to":"+16505551234","type":"text","text":{"body":"Your order shipped"}}`
	if r := e.send(t, text); r.err.Error.Code != 131047 {
		t.Fatalf("free text before the user wrote: %s", r.raw)
	}
	if err := e.sb.Inbound(context.Background(), pnid, "+16505551234", "STOP"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(23 * time.Hour)
	if r := e.send(t, text); r.status != 200 {
		t.Fatalf("inside the window: %s", r.raw)
	}
	// The window is per (number, user).
	if r := e.post(t, "/v21.0/200000000000002/messages", testToken, text); r.err.Error.Code != 131047 {
		t.Errorf("window leaked to another number: %s", r.raw)
	}
	clk.Advance(time.Hour)
	if r := e.send(t, strings.Replace(text, "shipped", "arrived", 1)); r.err.Error.Code != 131047 {
		t.Fatalf("24h after the user's message: %s", r.raw)
	}
	// Through the HTTP endpoint too; it resets the window.
	resp, err := http.Post(e.api.URL+"/_sandbox/inbound", "application/json",
		strings.NewReader(`{"phone_number_id":"`+pnid+`","from":"16505551234","text":"Hi again"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("inbound endpoint: HTTP %d", resp.StatusCode)
	}
	if r := e.send(t, text); r.status != 200 {
		t.Fatalf("after a new inbound message: %s", r.raw)
	}
	for _, bad := range []string{`{"phone_number_id":"1","from":"abc","text":"x"}`, `{"phone_number_id":"1","from":"16505551234","text":""}`, `nope`} {
		resp, err := http.Post(e.api.URL+"/_sandbox/inbound", "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("inbound %s: HTTP %d", bad, resp.StatusCode)
		}
	}

	e.waitIdle(t)
	var inbound []graph.InboundMessage
	for _, n := range e.recv.notifications() {
		v := n.Entry[0].Changes[0].Value
		if len(v.Messages) > 0 {
			if len(v.Statuses) > 0 || len(v.Contacts) != 1 || v.Contacts[0].WaID != "16505551234" || v.Metadata.PhoneNumberID != pnid {
				t.Errorf("inbound value %+v", v)
			}
			inbound = append(inbound, v.Messages...)
		}
	}
	// Posters run concurrently, so POSTs may arrive in any order.
	slices.SortFunc(inbound, func(a, b graph.InboundMessage) int { return strings.Compare(a.Timestamp, b.Timestamp) })
	if len(inbound) != 2 || inbound[0].Text == nil || inbound[0].Text.Body != "STOP" || inbound[0].From != "16505551234" ||
		inbound[0].Type != "text" || inbound[1].Text.Body != "Hi again" || inbound[0].Timestamp != "1750000000" {
		t.Errorf("inbound messages %+v", inbound)
	}
	st := e.sb.Stats()
	if st.Inbound != 2 || st.Accepted != 2 || st.Rejected[131047] != 3 {
		t.Errorf("stats %+v", st)
	}
	// Free text is service: not billable.
	sts, _ := e.recv.statuses()
	for _, s := range sts {
		if s.Status == "sent" && (s.Pricing == nil || s.Pricing.Billable || s.Pricing.Category != "service") {
			t.Errorf("text pricing %+v", s.Pricing)
		}
	}
}

// TestWebhooks sends a batch of messages before Run starts, so statuses are due together:
// they must arrive signed (the receiver checks), in Meta's envelope, batched, and agree
// with Records and Stats.
func TestWebhooks(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{
		Now: clk.Now, Throughput: 1e6, WABAID: "555000111", DelayScale: -1,
		UndeliverableRate: 0.2, ReadRate: 0.5, ReorderRate: -1, StatusesPerPost: 7,
		Templates: []ApprovedTemplate{orderConfirmation, {Name: "sale", Language: "en_US", Category: "marketing", PositionalParams: 1}},
	})
	const n = 60
	ids := map[string]int{} // message id → contact
	for i := 0; i < n; i++ {
		to := fmt.Sprintf("+4477009%05d", i)
		body := templateBody(to, fmt.Sprintf("42:%d", i))
		if i%2 == 1 {
			body = `{"messaging_product":"whatsapp","to":"` + to + `","type":"template","template":{"name":"sale","language":{"code":"en_US"},
			"components":[{"type":"header","parameters":[{"type":"image","image":{"link":"https://x/y.png"}}]},{"type":"body","parameters":[{"type":"text","text":"20%"}]}]},
			"biz_opaque_callback_data":"` + fmt.Sprintf("42:%d", i) + `"}`
		}
		r := e.send(t, body)
		if r.status != 200 || len(r.ok.Messages) != 1 || len(r.ok.Contacts) != 1 {
			t.Fatalf("send %d: %s", i, r.raw)
		}
		if r.ok.Contacts[0].Input != to || r.ok.Contacts[0].WaID != to[1:] || r.ok.Messages[0].MessageStatus != "accepted" ||
			!strings.HasPrefix(r.ok.Messages[0].ID, "wamid.") || r.ok.MessagingProduct != "whatsapp" {
			t.Errorf("response %s", r.raw)
		}
		if _, dup := ids[r.ok.Messages[0].ID]; dup {
			t.Fatalf("message id %s reused", r.ok.Messages[0].ID)
		}
		ids[r.ok.Messages[0].ID] = i
	}
	if p := e.sb.Stats().Pending; p < 2*n {
		t.Fatalf("pending %d before Run", p)
	}
	e.run(t)
	e.waitIdle(t)

	recs := e.sb.Records()
	if len(recs) != n {
		t.Fatalf("%d records", len(recs))
	}
	byID := map[string]Record{}
	for i, r := range recs {
		byID[r.MessageID] = r
		if ids[r.MessageID] != i || r.PhoneNumberID != pnid || r.Type != "template" || !r.AcceptedAt.Equal(clk.Now()) {
			t.Errorf("record %d %+v", i, r)
		}
		if r.CallbackData != fmt.Sprintf("42:%d", i) {
			t.Errorf("record %d callback %q", i, r.CallbackData)
		}
		wantFinal := "delivered"
		switch {
		case Undeliverable(r.To, 0.2):
			wantFinal = "failed"
		case WillRead(r.To, 0.5):
			wantFinal = "read"
		}
		if r.Final != wantFinal || (r.Final == "failed") != (r.ErrorCode == 131026) {
			t.Errorf("record %d final %q code %d, want %q", i, r.Final, r.ErrorCode, wantFinal)
		}
		if i%2 == 0 {
			if r.TemplateName != "order_confirmation" || r.Language != "en_US" || fmt.Sprint(r.Params) != "[Jessica SKBUP2-4CPIG9]" ||
				r.Body != "Hi Jessica, order SKBUP2-4CPIG9 is confirmed." {
				t.Errorf("record %d %+v", i, r)
			}
		} else if r.TemplateName != "sale" || fmt.Sprint(r.Params) != "[20%]" || r.Body != "" {
			t.Errorf("record %d %+v", i, r)
		}
	}

	posts := e.recv.notifications()
	seen := map[[2]string]bool{}
	counts := map[string]int64{}
	biggest := 0
	for _, p := range posts {
		if p.Object != "whatsapp_business_account" || len(p.Entry) != 1 || p.Entry[0].ID != "555000111" ||
			len(p.Entry[0].Changes) != 1 || p.Entry[0].Changes[0].Field != "messages" {
			t.Fatalf("envelope %+v", p)
		}
		v := p.Entry[0].Changes[0].Value
		if v.MessagingProduct != "whatsapp" || v.Metadata.PhoneNumberID != pnid || v.Metadata.DisplayPhoneNumber == "" {
			t.Errorf("value %+v", v)
		}
		if len(v.Statuses) > 7 {
			t.Errorf("%d statuses in one POST, max 7", len(v.Statuses))
		}
		biggest = max(biggest, len(v.Statuses))
		for _, s := range v.Statuses {
			rec, ok := byID[s.ID]
			if !ok {
				t.Fatalf("status for unknown message %s", s.ID)
			}
			if seen[[2]string{s.ID, s.Status}] {
				t.Errorf("duplicate %s %s with DuplicateRate 0", s.ID, s.Status)
			}
			seen[[2]string{s.ID, s.Status}] = true
			counts[s.Status]++
			if s.RecipientID != rec.WaID || s.BizOpaqueCallbackData != rec.CallbackData || s.Timestamp != "1750000000" {
				t.Errorf("status %+v of %+v", s, rec)
			}
			switch s.Status {
			case "sent":
				wantCat := "utility" // billable unless undeliverable: no window is open
				if rec.TemplateName == "sale" {
					wantCat = "marketing"
				}
				if s.Pricing == nil || s.Pricing.Billable != (rec.Final != "failed") || s.Pricing.Type != "regular" || s.Pricing.PricingModel != "PMP" || s.Pricing.Category != wantCat {
					t.Errorf("pricing %+v for %s", s.Pricing, rec.TemplateName)
				}
			case "failed":
				if len(s.Errors) != 1 || s.Errors[0].Code != 131026 || rec.Final != "failed" {
					t.Errorf("failed status %+v for %+v", s, rec)
				}
			}
		}
	}
	if biggest < 2 {
		t.Errorf("no POST carried more than one status")
	}
	// Concurrent posters may deliver a message's statuses out of order; what arrived must
	// still match the fate the record states.
	for id, rec := range byID {
		got := func(st string) bool { return seen[[2]string{id, st}] }
		ok := got("sent")
		switch rec.Final {
		case "failed":
			ok = ok && got("failed") && !got("delivered") && !got("read")
		case "read":
			ok = ok && got("delivered") && got("read") && !got("failed")
		case "delivered":
			ok = ok && got("delivered") && !got("read") && !got("failed")
		default:
			ok = false
		}
		if !ok {
			t.Errorf("message %s: statuses do not match the record's final %q", id, rec.Final)
		}
	}
	st := e.sb.Stats()
	if st.Pending != 0 || st.Accepted != n || st.Requests != n || st.Duplicates != 0 || st.WebhookFailed != 0 || st.WebhookPosts != int64(len(posts)) {
		t.Errorf("stats %+v, %d posts", st, len(posts))
	}
	for _, s := range []string{"sent", "delivered", "read", "failed"} {
		if st.Statuses[s] != counts[s] {
			t.Errorf("stats: %d %s, receiver got %d", st.Statuses[s], s, counts[s])
		}
	}
	if counts["sent"] != n || counts["failed"] == 0 || counts["read"] == 0 || counts["failed"]+counts["delivered"] != n {
		t.Errorf("counts %v", counts)
	}
}

func TestWebhookRetries(t *testing.T) {
	e := newEnv(t, Config{Throughput: 1e6, DelayScale: -1, ReadRate: 1, ReorderRate: -1, Templates: []ApprovedTemplate{orderConfirmation}})
	e.recv.fail.Store(3)
	const n = 20
	for i := 0; i < n; i++ {
		if r := e.send(t, templateBody(fmt.Sprintf("+3361234%04d", i), "")); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	e.run(t)
	e.waitIdle(t)
	sts, _ := e.recv.statuses()
	uniq := map[[2]string]int{}
	for _, s := range sts {
		uniq[[2]string{s.ID, s.Status}]++
	}
	if len(uniq) != 3*n || len(sts) != 3*n {
		t.Errorf("received %d statuses (%d unique), want %d once each", len(sts), len(uniq), 3*n)
	}
	st := e.sb.Stats()
	if st.WebhookFailed != 3 || st.WebhookRetried < 1 || st.WebhookPosts != int64(len(e.recv.notifications()))+3 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
	if st.Statuses["sent"] != n || st.Statuses["delivered"] != n || st.Statuses["read"] != n {
		t.Errorf("statuses %v", st.Statuses)
	}
}

// TestWebhooksOnePerPost: by default every POST carries one status, as Meta mostly
// sends them (sent, delivered and read separately), even when they are due together and
// "read" overtakes "delivered".
func TestWebhooksOnePerPost(t *testing.T) {
	e := newEnv(t, Config{Throughput: 1e6, DelayScale: -1, ReadRate: 1, ReorderRate: 0.5, Templates: []ApprovedTemplate{orderConfirmation}})
	const n = 40
	for i := 0; i < n; i++ {
		if r := e.send(t, templateBody(fmt.Sprintf("+3361235%04d", i), "")); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	e.run(t)
	e.waitIdle(t)
	sts, post := e.recv.statuses()
	if len(sts) != 3*n || len(e.recv.notifications()) != 3*n {
		t.Fatalf("%d statuses in %d POSTs, want %d in as many", len(sts), len(e.recv.notifications()), 3*n)
	}
	for i := range post {
		if post[i] != i {
			t.Fatalf("POST %d carries more than one status", post[i])
		}
	}
	if st := e.sb.Stats(); st.WebhookPosts != 3*n || st.Statuses["read"] != n {
		t.Errorf("stats %+v", st)
	}
}

// TestNeverDrops stops Run while the receiver is down: the statuses stay pending and a
// later Run delivers them.
func TestNeverDrops(t *testing.T) {
	e := newEnv(t, Config{Throughput: 1e6, DelayScale: -1, Templates: []ApprovedTemplate{orderConfirmation}})
	e.recv.fail.Store(1 << 40)
	for i := 0; i < 10; i++ {
		if r := e.send(t, templateBody(fmt.Sprintf("+3361234%04d", i), "")); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	want := e.sb.Stats().Pending
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.sb.Run(ctx) }()
	for e.sb.Stats().WebhookFailed < 3 { // wait for a few failures
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := e.sb.Stats().Pending; got != want {
		t.Fatalf("pending %d after stopping, want %d", got, want)
	}
	expired, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := e.sb.WaitIdle(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitIdle with work pending and a done ctx: %v", err)
	}
	e.recv.fail.Store(0)
	e.run(t)
	e.waitIdle(t)
	// A POST abandoned at shutdown may still have reached the receiver, so it can see a
	// status twice (as with Meta); none may be missing.
	sts, _ := e.recv.statuses()
	uniq := map[[2]string]bool{}
	for _, s := range sts {
		uniq[[2]string{s.ID, s.Status}] = true
	}
	if int64(len(uniq)) != want {
		t.Errorf("delivered %d distinct statuses, want %d", len(uniq), want)
	}
}

func TestDuplicatesAndOrder(t *testing.T) {
	e := newEnv(t, Config{
		Throughput: 1e6, PairInterval: -1, DelayScale: 0.002, Seed: 7,
		ReadRate: 1, DuplicateRate: 0.1, ReorderRate: 0.2,
		StatusesPerPost: 50, // Meta's occasional batching: read and delivered in one POST
		Templates:       []ApprovedTemplate{orderConfirmation},
	})
	const n = 400
	for i := 0; i < n; i++ {
		if r := e.send(t, templateBody(fmt.Sprintf("+5511987%06d", i), "")); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	e.run(t)
	e.waitIdle(t)
	sts, post := e.recv.statuses()
	type key = [2]string
	first := map[key]int{}
	dups := 0
	for i, s := range sts {
		k := key{s.ID, s.Status}
		if _, ok := first[k]; ok {
			dups++
			continue
		}
		first[k] = i
	}
	if len(first) != 3*n {
		t.Fatalf("%d unique statuses, want %d", len(first), 3*n)
	}
	st := e.sb.Stats()
	if int64(dups) != st.Duplicates {
		t.Errorf("receiver saw %d duplicates, stats say %d", dups, st.Duplicates)
	}
	if dups < 3*n*5/100 || dups > 3*n*15/100 { // DuplicateRate 0.1 of ~3n statuses
		t.Errorf("%d duplicates of %d statuses at rate 0.1", dups, 3*n)
	}
	readFirst, samePost := 0, 0
	for _, r := range e.sb.Records() {
		rd, dl := first[key{r.MessageID, "read"}], first[key{r.MessageID, "delivered"}]
		if rd < dl {
			readFirst++
			if post[rd] == post[dl] {
				samePost++
			}
		}
	}
	if samePost < n*10/100 || samePost > n*30/100 { // ReorderRate 0.2
		t.Errorf("read before delivered in the same POST for %d of %d messages at rate 0.2 (%d read first overall)", samePost, n, readFirst)
	}
	// Statuses of different messages interleave: some message's statuses are split by another's.
	interleaved := false
	lastAt := map[string]int{}
	for i, s := range sts {
		if j, ok := lastAt[s.ID]; ok && j < i-1 {
			interleaved = true
		}
		lastAt[s.ID] = i
	}
	if !interleaved {
		t.Error("statuses arrived grouped by message")
	}
}

func TestTemplateManagement(t *testing.T) {
	e := newEnv(t, Config{Throughput: 1e6, PairInterval: -1})
	const path = "/v21.0/100000000000001/message_templates"
	r := e.post(t, path, testToken, `{"name":"welcome","language":"en_US","category":"MARKETING",
		"components":[{"type":"HEADER","format":"TEXT","text":"Hello"},{"type":"BODY","text":"Hi {{first_name}}, use {{ code }} before {{first_name}} forgets","example":{"body_text_named_params":[]}}]}`)
	var created struct{ ID, Status, Category string }
	if err := json.Unmarshal([]byte(r.raw), &created); err != nil || r.status != 200 || created.Status != "APPROVED" || created.Category != "MARKETING" || created.ID == "" {
		t.Fatalf("create: HTTP %d %s", r.status, r.raw)
	}
	r = e.post(t, path, testToken, `{"name":"reminder","language":"pt_BR","category":"utility","components":[{"type":"BODY","text":"Olá {{1}}, pedido {{2}}"}]}`)
	if r.status != 200 || !strings.Contains(r.raw, `"category":"UTILITY"`) {
		t.Fatalf("create positional: %s", r.raw)
	}
	for _, bad := range []string{
		`{"name":"Bad Name","language":"en_US","category":"MARKETING","components":[{"type":"BODY","text":"x"}]}`,
		`{"name":"x","language":"","category":"MARKETING","components":[{"type":"BODY","text":"x"}]}`,
		`{"name":"x","language":"en_US","category":"SPAM","components":[{"type":"BODY","text":"x"}]}`,
		`{"name":"x","language":"en_US","category":"MARKETING","components":[]}`,
		`{"name":"x","language":"en_US","category":"MARKETING","components":[{"type":"BODY","text":"{{1}} {{name}}"}]}`,
		`{"name":"x","language":"en_US","category":"MARKETING","components":[{"type":"BODY","text":"{{1}} {{3}}"}]}`,
		`{"name":"x","language":"en_US","category":"MARKETING","components":[{"type":"BODY","text":"{{first name}}"}]}`,
		`{"name":"x","language":"en_US","category":"MARKETING","components":[{"type":"BODY","text":"{{unclosed"}]}`,
		`not json`,
	} {
		if r := e.post(t, path, testToken, bad); r.status != 400 || r.err.Error.Code != 100 {
			t.Errorf("create %s: HTTP %d %s", bad, r.status, r.raw)
		}
	}
	if r := e.post(t, path, "", `{}`); r.err.Error.Code != 190 {
		t.Errorf("create without token: %s", r.raw)
	}

	send := func(name, lang, params string) reply {
		return e.send(t, `{"messaging_product":"whatsapp","to":"+16505551234","type":"template","template":{"name":"`+name+
			`","language":{"code":"`+lang+`"},"components":[{"type":"body","parameters":[`+params+`]}]}}`)
	}
	if r := send("welcome", "en_US", `{"type":"text","parameter_name":"code","text":"X1"},{"type":"text","parameter_name":"first_name","text":"Ana"}`); r.status != 200 {
		t.Fatalf("send welcome: %s", r.raw)
	}
	if r := send("reminder", "pt_BR", `{"type":"text","text":"Ana"},{"type":"text","text":"#7"}`); r.status != 200 {
		t.Fatalf("send reminder: %s", r.raw)
	}
	recs := e.sb.Records()
	if len(recs) != 2 || recs[0].Body != "Hi Ana, use X1 before Ana forgets" || fmt.Sprint(recs[0].Params) != "[Ana X1]" ||
		recs[1].Body != "Olá Ana, pedido #7" {
		t.Errorf("records %+v", recs)
	}

	req, _ := http.NewRequest(http.MethodGet, e.api.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct{ Name, Status, Category, Language string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Data) != 2 {
		t.Fatalf("list: %v %+v", err, list)
	}
}

func TestRecordsAndStatsEndpoints(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, Throughput: 1e6, Templates: []ApprovedTemplate{orderConfirmation}})
	for i := 0; i < 5; i++ {
		e.send(t, templateBody(fmt.Sprintf("+6281234%05d", i), fmt.Sprintf("c1:%d", i)))
	}
	e.send(t, templateBody("bad", ""))
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(e.api.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: HTTP %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var recs []Record
	get("/_sandbox/records", &recs)
	if len(recs) != 5 || recs[4].CallbackData != "c1:4" || !recs[0].AcceptedAt.Equal(clk.Now()) || recs[0].Final == "" {
		t.Errorf("records %+v", recs)
	}
	var page []Record
	get("/_sandbox/records?offset=3&limit=1", &page)
	if len(page) != 1 || page[0].MessageID != recs[3].MessageID {
		t.Errorf("page %+v", page)
	}
	var st Stats
	get("/_sandbox/stats", &st)
	if st.Requests != 6 || st.Accepted != 5 || st.Rejected[100] != 1 || st.Pending != 10 {
		t.Errorf("stats %+v", st)
	}
}

// TestClientAgainstSandbox runs Herald's adapter against the sandbox: both sides of the
// contract agree on shapes and codes.
func TestClientAgainstSandbox(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, Throughput: 1, Templates: []ApprovedTemplate{orderConfirmation}})
	c := graph.NewClient(graph.ClientConfig{BaseURL: e.api.URL})
	ctx := context.Background()
	tmpl := graph.SendRequest{To: "+16505551234", Type: "template", Template: &graph.Template{
		Name: "order_confirmation", Language: graph.Language{Code: "en_US"},
		Components: []graph.Component{{Type: "body", Parameters: []graph.Parameter{
			{Type: "text", ParameterName: "first_name", Text: "Jessica"},
			{Type: "text", ParameterName: "order_number", Text: "SKBUP2-4CPIG9"},
		}}},
	}, BizOpaqueCallbackData: "42:9"}
	res, err := c.Send(ctx, pnid, testToken, tmpl)
	if err != nil || res.WaID != "16505551234" || res.Status != "accepted" || res.MessageID != e.sb.Records()[0].MessageID {
		t.Fatalf("send: %+v %v", res, err)
	}
	cases := []struct {
		name    string
		token   string
		req     graph.SendRequest
		advance time.Duration
		action  graph.Action
	}{
		{"throughput", testToken, tmpl, 0, graph.ActionRetry},
		{"pair rate", testToken, tmpl, time.Second, graph.ActionBackoffRecipient},
		{"window", testToken, graph.SendRequest{To: "+16505550000", Type: "text", Text: &graph.Text{Body: "hi"}}, time.Second, graph.ActionConvertToTemplate},
		{"template", testToken, graph.SendRequest{To: "+16505550000", Type: "template", Template: &graph.Template{Name: "gone", Language: graph.Language{Code: "en"}}}, time.Second, graph.ActionPauseCampaign},
		{"token", "expired", tmpl, time.Second, graph.ActionPauseAccount},
	}
	for _, tc := range cases {
		clk.Advance(tc.advance)
		_, err := c.Send(ctx, pnid, tc.token, tc.req)
		var ae *graph.APIError
		if !errors.As(err, &ae) || graph.Classify(err).Action != tc.action {
			t.Errorf("%s: %v → %v, want %v", tc.name, err, graph.Classify(err).Action, tc.action)
		}
	}
}

func TestUndeliverableAndReadAreDeterministic(t *testing.T) {
	const n = 20000
	undeliverable, read := 0, 0
	for i := 0; i < n; i++ {
		to := fmt.Sprintf("+1650%07d", i)
		u := Undeliverable(to, 0.1)
		if u != Undeliverable(to[1:], 0.1) || u != Undeliverable(to, 0.1) {
			t.Fatalf("Undeliverable(%s) not stable", to)
		}
		if u {
			undeliverable++
		}
		if WillRead(to, 0.6) {
			read++
		}
		if Undeliverable(to, 0) || !Undeliverable(to, 1) || WillRead(to, 0) {
			t.Fatalf("rates 0 and 1 for %s", to)
		}
	}
	if undeliverable < n*9/100 || undeliverable > n*11/100 {
		t.Errorf("%d of %d undeliverable at rate 0.1", undeliverable, n)
	}
	if read < n*58/100 || read > n*62/100 {
		t.Errorf("%d of %d read at rate 0.6", read, n)
	}
}

func TestWaitIdleWithoutWork(t *testing.T) {
	e := newEnv(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.sb.WaitIdle(ctx); err != nil {
		t.Errorf("WaitIdle with nothing pending: %v", err)
	}
}

func TestLatency(t *testing.T) {
	e := newEnv(t, Config{Latency: time.Hour, Templates: []ApprovedTemplate{orderConfirmation}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.api.URL+"/v21.0/1/messages", strings.NewReader(templateBody("+16505551234", "")))
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := e.api.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("answered HTTP %d despite an hour of latency", resp.StatusCode)
	}
}

// TestRealisticDelays runs the scheduler on synctest's fake clock, at DelayScale 1, without
// a webhook URL: statuses become due at the documented delays, and Run refuses to run twice.
func TestRealisticDelays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := New(Config{ReadRate: 1, ReorderRate: -1, Templates: []ApprovedTemplate{orderConfirmation}}, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- sb.Run(ctx) }()
		synctest.Wait()
		if err := sb.Run(ctx); err == nil {
			t.Error("a second concurrent Run started")
		}

		w := httptest.NewRecorder()
		sb.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v21.0/1/messages", strings.NewReader(templateBody("+16505551234", "7:1"))))
		if w.Code != 200 {
			t.Fatalf("send without a configured token: %d %s", w.Code, w.Body)
		}
		if err := sb.Inbound(ctx, "1", "+16505551234", "hello"); err != nil {
			t.Fatal(err)
		}
		step := func(d time.Duration, sent, delivered, read, pending int64) {
			t.Helper()
			time.Sleep(d) // fake time inside the bubble
			synctest.Wait()
			st := sb.Stats()
			if st.Statuses["sent"] != sent || st.Statuses["delivered"] != delivered || st.Statuses["read"] != read || st.Pending != pending {
				t.Fatalf("after %v: %+v", d, st)
			}
		}
		step(199*time.Millisecond, 0, 0, 0, 3) // the inbound message goes at once
		step(801*time.Millisecond+time.Microsecond, 1, 0, 0, 2)
		step(3*time.Second, 1, 1, 0, 1)
		step(30*time.Second, 1, 1, 1, 0)
		if err := sb.WaitIdle(ctx); err != nil {
			t.Fatal(err)
		}
		if st := sb.Stats(); st.WebhookPosts != 0 || st.Inbound != 1 {
			t.Errorf("stats %+v", st)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestPlaceholders(t *testing.T) {
	cases := []struct {
		body       string
		named      []string
		positional int
		ok         bool
	}{
		{"Hi {{first_name}}", []string{"first_name"}, 0, true},
		{"{{a}} {{ b }} {{a}}", []string{"a", "b"}, 0, true},
		{"{{1}} and {{2}} and {{1}}", nil, 2, true},
		{"no params", nil, 0, true},
		{"{{2}}", nil, 0, false},
		{"{{0}}", nil, 0, false},
		{"{{1}} {{x}}", nil, 0, false},
		{"{{First}}", nil, 0, false},
		{"{{}}", nil, 0, false},
		{"{{a", nil, 0, false},
		{"{{9x}}", nil, 0, false},
	}
	for _, c := range cases {
		named, pos, err := placeholders(c.body)
		if (err == nil) != c.ok || fmt.Sprint(named) != fmt.Sprint(c.named) || pos != c.positional {
			t.Errorf("placeholders(%q) = %v %d %v", c.body, named, pos, err)
		}
	}
	if got := render("Hi {{ name }}, {{name}}! {{other}}", []string{"name"}, []string{"Ana"}); got != "Hi Ana, Ana! {{other}}" {
		t.Errorf("render named: %q", got)
	}
	if got := render("{{2}}-{{1}}", nil, []string{"a", "b"}); got != "b-a" {
		t.Errorf("render positional: %q", got)
	}
}

// A user who taps "Stop promotions" after a marketing template: a user_preferences
// webhook (value stop) follows, marketing templates to them fail with 131050 (utility
// ones still go), and a resume lifts it with its own webhook.
func TestStopPromotions(t *testing.T) {
	e := newEnv(t, Config{Throughput: 1e6, PairInterval: -1, DelayScale: -1, PromotionsStopRate: 1,
		Templates: []ApprovedTemplate{orderConfirmation, {Name: "plain", Language: "en_US", Category: "MARKETING"}}})
	e.run(t)
	const user = "16505551234"
	promo := `{"messaging_product":"whatsapp","to":"+` + user + `","type":"template","template":{"name":"plain","language":{"code":"en_US"}}}`
	if r := e.send(t, promo); r.status != 200 {
		t.Fatalf("the first marketing template: %s", r.raw)
	}
	e.waitIdle(t)
	prefs := func() []graph.UserPreference {
		var out []graph.UserPreference
		for _, n := range e.recv.notifications() {
			for _, ch := range n.Entry[0].Changes {
				if len(ch.Value.UserPreferences) > 0 && (ch.Field != "user_preferences" || len(ch.Value.Statuses) > 0 || len(ch.Value.Contacts) != 1) {
					t.Fatalf("a preference in change %+v", ch)
				}
				out = append(out, ch.Value.UserPreferences...)
			}
		}
		return out
	}
	if p := prefs(); len(p) != 1 || p[0].WaID != user || p[0].Value != "stop" || p[0].Category != "marketing_messages" || p[0].Timestamp == 0 {
		t.Fatalf("preferences %+v, want one stop of %s", p, user)
	}
	if r := e.send(t, promo); r.status != 200 {
		t.Fatalf("accepted, then failed, as Meta does: %s", r.raw)
	}
	e.waitIdle(t)
	failed := 0
	sts, _ := e.recv.statuses()
	for _, s := range sts {
		if s.Status == "failed" && len(s.Errors) == 1 && s.Errors[0].Code == 131050 {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d marketing templates failed with 131050 after the stop; want 1 (statuses %+v)", failed, sts)
	}
	if r := e.send(t, templateBody("+"+user, "9:1")); r.status != 200 {
		t.Fatalf("a utility template after the stop: %s", r.raw)
	}
	resp, err := http.Post(e.api.URL+"/_sandbox/preference", "application/json",
		strings.NewReader(`{"phone_number_id":"`+pnid+`","from":"`+user+`","value":"resume"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("preference endpoint: HTTP %d", resp.StatusCode)
	}
	if err := e.sb.Preference(context.Background(), pnid, "+"+user, "maybe"); err == nil {
		t.Fatal("a preference of value maybe was taken")
	}
	e.waitIdle(t)
	if p := prefs(); len(p) != 2 || p[1].Value != "resume" {
		t.Fatalf("preferences %+v, want the stop, then the resume (the refused template brings none)", p)
	}
	// Resumed: the next marketing template is delivered (and this user taps stop again).
	if r := e.send(t, promo); r.status != 200 {
		t.Fatalf("a marketing template after the resume: %s", r.raw)
	}
	e.waitIdle(t)
	sts, _ = e.recv.statuses()
	if last := sts[len(sts)-1]; last.Status == "failed" {
		t.Fatalf("a marketing template after the resume failed: %+v", last)
	}
	if p := prefs(); len(p) != 3 || p[2].Value != "stop" {
		t.Fatalf("preferences %+v, want a second stop", p)
	}
}
