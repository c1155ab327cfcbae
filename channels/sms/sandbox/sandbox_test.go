package sandbox

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/sms"
	"github.com/herald-dev/herald/templates"
)

func TestSendErrors(t *testing.T) {
	e := newEnv(t, Config{
		Senders:          map[string]sms.SenderType{longCode: sms.LongCode, "MG1": sms.LongCode},
		AllowedCountries: []string{"US"},
		UnsubscribedRate: 0.2,
		LandlineRate:     0.2,
	})
	unsubscribed := findNumber(t, func(n string) bool { return Unsubscribed(n, 0.2) })
	landline := findNumber(t, func(n string) bool { return !Unsubscribed(n, 0.2) && Landline(n, 0.2) })
	ok := findNumber(t, func(n string) bool { return !Unsubscribed(n, 0.2) && !Landline(n, 0.2) })
	tests := []struct {
		name               string
		account, usr, pass string
		form               url.Values
		status, code       int
	}{
		{"wrong token", testAccount, testAccount, "nope", msg(longCode, ok, "hi"), 401, 20003},
		{"no auth", testAccount, "", "", msg(longCode, ok, "hi"), 401, 20003},
		{"user is not the path's account", testAccount, "AC1", testToken, msg(longCode, ok, "hi"), 401, 20003},
		{"other account", "AC1", "AC1", testToken, msg(longCode, ok, "hi"), 401, 20003},
		{"no To", testAccount, testAccount, testToken, msg(longCode, "", "hi"), 400, 21604},
		{"invalid To", testAccount, testAccount, testToken, msg(longCode, "+1555", "hi"), 400, 21211},
		{"To without +", testAccount, testAccount, testToken, msg(longCode, ok[1:], "hi"), 400, 21211},
		{"no From", testAccount, testAccount, testToken, msg("", ok, "hi"), 400, 21603},
		{"From not ours", testAccount, testAccount, testToken, msg("+14155550199", ok, "hi"), 400, 21606},
		{"service not ours", testAccount, testAccount, testToken, msg("", ok, "hi", "MessagingServiceSid", "MG2"), 400, 21606},
		{"no body", testAccount, testAccount, testToken, msg(longCode, ok, ""), 400, 21602},
		{"body too long", testAccount, testAccount, testToken, msg(longCode, ok, strings.Repeat("a", 1601)), 400, 21617},
		{"validity 0", testAccount, testAccount, testToken, msg(longCode, ok, "hi", "ValidityPeriod", "0"), 400, 21624},
		{"validity too long", testAccount, testAccount, testToken, msg(longCode, ok, "hi", "ValidityPeriod", "36001"), 400, 21624},
		{"bad status callback", testAccount, testAccount, testToken, msg(longCode, ok, "hi", "StatusCallback", "/relative"), 400, 21609},
		{"region", testAccount, testAccount, testToken, msg(longCode, "+66812345678", "hi"), 400, 21408},
		{"unsubscribed", testAccount, testAccount, testToken, msg(longCode, unsubscribed, "hi"), 400, 21610},
		{"landline", testAccount, testAccount, testToken, msg(longCode, landline, "hi"), 400, 21614},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(t, tt.account, tt.usr, tt.pass, tt.form)
			if r.status != tt.status || r.err.Code != tt.code || r.err.Status != tt.status {
				t.Fatalf("HTTP %d %s, want HTTP %d code %d", r.status, r.raw, tt.status, tt.code)
			}
			if r.err.Message == "" || r.err.MoreInfo != "https://www.twilio.com/docs/errors/"+strconv.Itoa(tt.code) {
				t.Fatalf("error body lacks message or more_info: %s", r.raw)
			}
		})
	}
	if r := e.send(t, msg(longCode, ok, "hi")); r.status != http.StatusCreated {
		t.Fatalf("a good send was refused: %s", r.raw)
	}
	st := e.sb.Stats()
	if st.Requests != int64(len(tests)+1) || st.Accepted != 1 || st.Rejected[20003] != 4 || st.Rejected[21610] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if n := len(e.sb.Records()); n != 1 {
		t.Fatalf("%d records, want only the accepted one", n)
	}
}

func TestAcceptedMessage(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now})
	body := "Hi Jessica, 20% off today only: {code} € 5 →"
	r := e.send(t, msg(longCode, user, body, "StatusCallback", e.callbackURL("42:9:v.b"), "ValidityPeriod", "600"))
	if r.status != http.StatusCreated {
		t.Fatalf("HTTP %d: %s", r.status, r.raw)
	}
	segs, enc := templates.SMSSegments(body)
	m := r.msg
	if !strings.HasPrefix(m.SID, "SM") || len(m.SID) != 34 || m.Status != "queued" || m.AccountSID != testAccount ||
		m.To != user || m.From == nil || *m.From != longCode || m.Body != body || m.NumSegments != strconv.Itoa(segs) ||
		m.Direction != "outbound-api" || m.APIVersion != "2010-04-01" || m.ErrorCode != nil || m.DateSent != nil ||
		m.URI != "/2010-04-01/Accounts/"+testAccount+"/Messages/"+m.SID+".json" {
		t.Fatalf("Message resource: %s", r.raw)
	}
	if _, err := time.Parse(time.RFC1123Z, m.DateCreated); err != nil {
		t.Fatalf("date_created %q: %v", m.DateCreated, err)
	}
	recs := e.sb.Records()
	want := Record{SID: m.SID, AccountSID: testAccount, From: longCode, SenderType: sms.LongCode, To: user, Body: body,
		Segments: segs, Encoding: enc, StatusCallback: e.callbackURL("42:9:v.b"), CallbackData: "42:9:v.b", ValidityPeriod: 600,
		AcceptedAt: clk.Now(), SentAt: clk.Now().Add(time.Duration(segs) * time.Second), Final: sms.StatusDelivered}
	if len(recs) != 1 || recs[0] != want {
		t.Fatalf("records %+v\nwant %+v", recs, want)
	}
	if enc != templates.EncodingUCS2 || segs != 1 {
		t.Fatalf("the test body should be one UCS-2 segment, is %d %s", segs, enc)
	}

	// Through a Messaging Service Twilio answers accepted, without a number or segments.
	r = e.send(t, url.Values{"MessagingServiceSid": {"MG0123"}, "To": {user}, "Body": {"hi"}})
	if r.status != http.StatusCreated || r.msg.Status != "accepted" || r.msg.NumSegments != "0" || r.msg.From != nil ||
		r.msg.MessagingServiceSID == nil || *r.msg.MessagingServiceSID != "MG0123" {
		t.Fatalf("through a service: HTTP %d %s", r.status, r.raw)
	}
}

func TestInferType(t *testing.T) {
	for ref, want := range map[string]sms.SenderType{
		"12345": sms.ShortCode, "123456": sms.ShortCode, "1234567": sms.LongCode,
		"+18005550100": sms.TollFree, "+18885550100": sms.TollFree, "+18335550100": sms.TollFree,
		"+14155550100": sms.LongCode, "+447700900123": sms.LongCode, "MG1": sms.LongCode,
	} {
		if got := InferType(ref); got != want {
			t.Errorf("InferType(%s) = %s, want %s", ref, got, want)
		}
	}
}

// TestQueueDrainsAtTheSenderRate: each sender's queue drains at its type's rate in
// segments per second; what would wait longer than the queue time is refused (21611),
// and a second of drain frees a second's worth of room.
func TestQueueDrainsAtTheSenderRate(t *testing.T) {
	clk := newClock()
	const rate = 5 // segments/s for long codes
	e := newEnv(t, Config{Now: clk.Now, Rates: map[sms.SenderType]float64{sms.LongCode: rate}, MaxQueueTime: 4 * time.Second})
	long2 := "+14155550101"
	twoSegments := strings.Repeat("x", 200)
	accepted := map[string]int{}
	refused := map[string]int{}
	for i := range 40 {
		for _, s := range []struct{ from, body string }{{longCode, "one"}, {long2, twoSegments}, {"12345", "one"}} {
			r := e.send(t, msg(s.from, number(i), s.body))
			switch {
			case r.status == http.StatusCreated:
				accepted[s.from]++
			case r.err.Code == 21611:
				refused[s.from]++
			default:
				t.Fatalf("HTTP %d %s", r.status, r.raw)
			}
		}
	}
	// Messages wait 0, 0.2 s, … 4 s: 21 fit; two-segment ones take 0.4 s each: 11 fit.
	// The short code drains 100 segments/s: all 40 fit.
	if accepted[longCode] != 21 || accepted[long2] != 11 || accepted["12345"] != 40 || refused[longCode] != 19 || refused[long2] != 29 {
		t.Fatalf("accepted %v, refused %v", accepted, refused)
	}
	perSecond := map[string]map[int64]int{}
	for _, r := range e.sb.Records() {
		if perSecond[r.From] == nil {
			perSecond[r.From] = map[int64]int{}
		}
		// Segment j of n leaves (n-1-j)/rate before the message's last: count each in
		// its second [k, k+1) after t0.
		for j := range r.Segments {
			left := r.SentAt.Add(-time.Duration(r.Segments-1-j) * time.Second / rate)
			perSecond[r.From][int64((left.Sub(clk.Now())-time.Nanosecond)/time.Second)]++
		}
	}
	for k := int64(0); k < 4; k++ {
		if perSecond[longCode][k] != rate || perSecond[long2][k] != rate {
			t.Fatalf("second %d drained %d and %d segments, want %d each (%v)", k, perSecond[longCode][k], perSecond[long2][k], rate, perSecond)
		}
	}
	if got := e.sb.QueueWait(longCode); got != 4200*time.Millisecond {
		t.Fatalf("queue wait %v", got)
	}
	clk.Advance(time.Second)
	n := 0
	for i := range 10 {
		if r := e.send(t, msg(longCode, number(100+i), "one")); r.status == http.StatusCreated {
			n++
		}
	}
	if n != rate {
		t.Fatalf("after a second %d more fit, want %d", n, rate)
	}
}

// TestQueueExpiry: a message that would wait longer than its ValidityPeriod is accepted
// and then failed with 30036; through a Messaging Service an overflowing queue fails
// with 30001 after creation instead of 21611.
func TestQueueExpiry(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, MaxQueueTime: 3 * time.Second, DelayScale: -1, CallbackConcurrency: 1})
	e.run(t)
	cb := e.callbackURL("7:1")
	var sids []string
	for i := range 3 { // waits 0, 1, 2 s at 1 segment/s
		r := e.send(t, msg(longCode, number(i), "x", "StatusCallback", cb, "ValidityPeriod", "1"))
		if r.status != http.StatusCreated {
			t.Fatalf("HTTP %d %s", r.status, r.raw)
		}
		sids = append(sids, r.msg.SID)
	}
	for i := range 5 {
		r := e.send(t, url.Values{"MessagingServiceSid": {"MG1"}, "To": {number(i)}, "Body": {"x"}, "StatusCallback": {cb}})
		if r.status != http.StatusCreated {
			t.Fatalf("through a service: HTTP %d %s", r.status, r.raw)
		}
		sids = append(sids, r.msg.SID)
	}
	e.waitIdle(t)
	want := []string{"delivered", "delivered", "failed:30036", "delivered", "delivered", "delivered", "delivered", "failed:30001"}
	got := e.recv.statuses()
	for i, sid := range sids {
		sts := got[sid]
		if len(sts) == 0 {
			t.Fatalf("message %d: no callbacks", i)
		}
		last := sts[len(sts)-1]
		final := last.Get("MessageStatus")
		if c := last.Get("ErrorCode"); c != "" {
			final += ":" + c
		}
		if final != want[i] || sts[0].Get("MessageStatus") != "queued" {
			t.Errorf("message %d: statuses end %s (first %s), want %s", i, final, sts[0].Get("MessageStatus"), want[i])
		}
	}
	recs := e.sb.Records()
	if recs[2].ErrorCode != 30036 || !recs[2].SentAt.IsZero() || recs[7].ErrorCode != 30001 || recs[7].MessagingServiceSID != "MG1" {
		t.Fatalf("records %+v", recs)
	}
}

// TestCallbacks: every accepted message gets signed callbacks queued → sent → final at
// its StatusCallback URL (cb intact), the final one carrying ErrorCode for undeliverable
// numbers and filtered bodies; the records hold the same truth.
func TestCallbacks(t *testing.T) {
	e := newEnv(t, Config{
		Rates:             map[sms.SenderType]float64{sms.LongCode: 1000},
		UndeliverableRate: 0.2,
		FilterWords:       []string{"FREE MONEY"},
		DelayScale:        0.01,
	})
	e.run(t)
	const n = 60
	sids := map[string]int{}
	for i := range n {
		body := "hello " + strconv.Itoa(i)
		if i%10 == 0 {
			body = "get free money now"
		}
		r := e.send(t, msg(longCode, number(i), body, "StatusCallback", e.callbackURL("42:"+strconv.Itoa(i))))
		if r.status != http.StatusCreated {
			t.Fatalf("HTTP %d %s", r.status, r.raw)
		}
		sids[r.msg.SID] = i
	}
	e.waitIdle(t)
	got := e.recv.statuses()
	_, paths := e.recv.got()
	finals := map[string]int{}
	for _, rec := range e.sb.Records() {
		i := sids[rec.SID]
		sts := got[rec.SID]
		if len(sts) != 3 {
			t.Fatalf("message %d: %d callbacks, want 3", i, len(sts))
		}
		var names []string
		for _, f := range sts {
			names = append(names, f.Get("MessageStatus"))
			if f.Get("AccountSid") != testAccount || f.Get("From") != longCode || f.Get("To") != rec.To || f.Get("SmsSid") != rec.SID || f.Get("ApiVersion") != "2010-04-01" {
				t.Fatalf("message %d: callback %v", i, f)
			}
		}
		slices.Sort(names) // several posters: no order guaranteed
		want := []string{"queued", "sent", rec.Final}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Fatalf("message %d: statuses %v, final %s", i, names, rec.Final)
		}
		final := sts[slices.IndexFunc(sts, func(f url.Values) bool { return f.Get("MessageStatus") == rec.Final })]
		wantCode := ""
		if rec.ErrorCode != 0 {
			wantCode = strconv.Itoa(rec.ErrorCode)
		}
		if final.Get("ErrorCode") != wantCode || final.Get("RawDlrDoneDate") == "" {
			t.Fatalf("message %d: final callback %v, record %+v", i, final, rec)
		}
		bad, code := Undeliverable(rec.To, 0.2)
		switch {
		case bad && (rec.Final != "undelivered" || rec.ErrorCode != code):
			t.Fatalf("message %d to an undeliverable number: %+v", i, rec)
		case !bad && i%10 == 0 && rec.ErrorCode != 30007:
			t.Fatalf("filtered message %d: %+v", i, rec)
		case !bad && i%10 != 0 && rec.Final != "delivered":
			t.Fatalf("message %d: %+v", i, rec)
		}
		finals[rec.Final]++
	}
	if finals["undelivered"] == 0 || finals["delivered"] == 0 {
		t.Fatalf("finals %v: want both", finals)
	}
	for _, p := range paths {
		u, _ := url.Parse(p)
		if u.Path != "/webhooks/sms/status" || u.Query().Get("cb") == "" {
			t.Fatalf("callback path %s", p)
		}
	}
	st := e.sb.Stats()
	if st.Statuses["queued"] != n || st.Statuses["sent"] != n || st.Statuses["delivered"]+st.Statuses["undelivered"] != n || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCallbackRetries(t *testing.T) {
	e := newEnv(t, Config{Rates: map[sms.SenderType]float64{sms.LongCode: 1000}, DelayScale: -1})
	e.recv.fail.Store(5)
	e.run(t)
	for i := range 4 {
		if r := e.send(t, msg(longCode, number(i), "hi", "StatusCallback", e.callbackURL("1:"+strconv.Itoa(i)))); r.status != http.StatusCreated {
			t.Fatal(r.raw)
		}
	}
	e.waitIdle(t)
	forms, _ := e.recv.got()
	st := e.sb.Stats()
	if len(forms) != 12 || st.CallbackFailed != 5 || st.CallbackRetried < 5 || st.CallbackPosts != 17 {
		t.Fatalf("%d callbacks received, stats %+v", len(forms), st)
	}
}

// TestInboundStop: a STOP a user texts is posted, signed, to the inbound URL, and makes
// later sends from that number to that user 21610 (also through a Messaging Service),
// until the user texts START; other numbers are not affected.
func TestInboundStop(t *testing.T) {
	e := newEnv(t, Config{})
	e.run(t)
	other := "+14155550101"
	body, _ := json.Marshal(map[string]string{"from": user, "to": longCode, "body": " Stop "})
	resp, err := http.Post(e.api.URL+"/_sandbox/inbound", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var in struct{ SID string }
	_ = json.NewDecoder(resp.Body).Decode(&in)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(in.SID, "SM") {
		t.Fatalf("inbound: HTTP %d %+v", resp.StatusCode, in)
	}
	e.waitIdle(t)
	forms, paths := e.recv.got()
	if len(forms) != 1 || paths[0] != "/webhooks/sms/inbound" {
		t.Fatalf("inbound posts %v %v", forms, paths)
	}
	f := forms[0]
	if f.Get("From") != user || f.Get("To") != longCode || f.Get("Body") != " Stop " || f.Get("MessageSid") != in.SID ||
		f.Get("AccountSid") != testAccount || f.Get("NumSegments") != "1" || f.Get("FromCountry") != "US" {
		t.Fatalf("inbound form %v", f)
	}
	if r := e.send(t, msg(longCode, user, "hi")); r.err.Code != 21610 {
		t.Fatalf("after STOP: HTTP %d %s", r.status, r.raw)
	}
	if r := e.send(t, url.Values{"MessagingServiceSid": {"MG1"}, "To": {user}, "Body": {"hi"}}); r.err.Code != 21610 {
		t.Fatalf("after STOP, through a service: HTTP %d %s", r.status, r.raw)
	}
	if r := e.send(t, msg(other, user, "hi")); r.status != http.StatusCreated {
		t.Fatalf("another number: HTTP %d %s", r.status, r.raw)
	}
	if r := e.send(t, msg(longCode, number(1), "hi")); r.status != http.StatusCreated {
		t.Fatalf("another user: HTTP %d %s", r.status, r.raw)
	}
	if st := e.sb.Stats(); st.OptedOut != 1 || st.Inbound != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := e.sb.Inbound(context.Background(), user, longCode, "START"); err != nil {
		t.Fatal(err)
	}
	if r := e.send(t, msg(longCode, user, "hi")); r.status != http.StatusCreated {
		t.Fatalf("after START: HTTP %d %s", r.status, r.raw)
	}
	for _, bad := range []map[string]string{{"from": "nope", "to": longCode, "body": "hi"}, {"from": user, "to": "", "body": "hi"}, {"from": user, "to": longCode}} {
		b, _ := json.Marshal(bad)
		resp, err := http.Post(e.api.URL+"/_sandbox/inbound", "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("inbound %v: HTTP %d", bad, resp.StatusCode)
		}
	}
}

func TestFaultsAndConcurrency(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, Config{
		MaxConcurrentRequests: 1,
		Fault: func(to string) Fault {
			switch to {
			case "+14155550001":
				return Fault{Status: 429, Code: 20429, RetryAfter: 7 * time.Second}
			case "+14155550002":
				return Fault{Status: 503}
			case "+14155550003":
				<-release // hold the one allowed request
			}
			return Fault{}
		},
	})
	if r := e.send(t, msg(longCode, "+14155550001", "hi")); r.status != 429 || r.err.Code != 20429 || r.retryAfter != "7" {
		t.Fatalf("fault: HTTP %d %s Retry-After %q", r.status, r.raw, r.retryAfter)
	}
	req, _ := http.NewRequest(http.MethodPost, e.api.URL+"/2010-04-01/Accounts/"+testAccount+"/Messages.json", strings.NewReader(msg(longCode, "+14155550002", "hi").Encode()))
	req.SetBasicAuth(testAccount, testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || strings.Contains(resp.Header.Get("Content-Type"), "json") {
		t.Fatalf("bare fault: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	done := make(chan reply, 1)
	go func() { done <- e.send(t, msg(longCode, "+14155550003", "hi")) }()
	// Poll until the held request is in flight, then a second one is over the limit.
	deadline := time.Now().Add(10 * time.Second)
	for e.sb.inflight.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r := e.send(t, msg(longCode, user, "hi")); r.status != 429 || r.err.Code != 20429 || r.retryAfter != "1" {
		t.Fatalf("over the concurrency limit: HTTP %d %s Retry-After %q", r.status, r.raw, r.retryAfter)
	}
	close(release)
	if r := <-done; r.status != http.StatusCreated {
		t.Fatalf("held request: HTTP %d %s", r.status, r.raw)
	}
}

func TestDeterministicShares(t *testing.T) {
	const n, rate = 20000, 0.1
	var unsub, land, undeliv, c30003 int
	for i := range n {
		num := number(i)
		if Unsubscribed(num, rate) {
			unsub++
		}
		if Landline(num, rate) {
			land++
		}
		if bad, code := Undeliverable(num, rate); bad {
			undeliv++
			if code == 30003 {
				c30003++
			}
		}
		if Unsubscribed(num, 0) || Landline(num, 0) {
			t.Fatal("rate 0 marked a number")
		}
		if a, _ := Undeliverable(num, rate); a != func() bool { b, _ := Undeliverable(num, rate); return b }() {
			t.Fatal("not deterministic")
		}
	}
	for name, got := range map[string]int{"unsubscribed": unsub, "landline": land, "undeliverable": undeliv} {
		if got < n*8/100 || got > n*12/100 {
			t.Errorf("%s: %d of %d at rate %v", name, got, n, rate)
		}
	}
	if c30003 < undeliv/3 || c30003 > undeliv*2/3 {
		t.Errorf("30003 for %d of %d undeliverable numbers", c30003, undeliv)
	}
}

func TestRecordsAndStatsEndpoints(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 3 {
		if r := e.send(t, msg(longCode, number(i), "hi")); r.status != http.StatusCreated {
			t.Fatal(r.raw)
		}
	}
	var recs []Record
	getJSON(t, e.api.URL+"/_sandbox/records?offset=1&limit=1", &recs)
	if len(recs) != 1 || recs[0].To != number(1) {
		t.Fatalf("records page %+v", recs)
	}
	var st Stats
	getJSON(t, e.api.URL+"/_sandbox/stats", &st)
	if st.Accepted != 3 || st.Segments != 3 {
		t.Fatalf("stats %+v", st)
	}
	resp, err := http.Get(e.api.URL + "/2010-04-01/Accounts/" + testAccount + "/Calls.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown path: HTTP %d", resp.StatusCode)
	}
}

func TestWaitIdleWithoutWork(t *testing.T) {
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := e.sb.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	e.run(t)
	for !e.sb.running.Load() { // poll until the first Run holds the sandbox
		time.Sleep(time.Millisecond)
	}
	if err := e.sb.Run(ctx); err == nil {
		t.Fatal("a second Run was allowed")
	}
}

func getJSON(t testing.TB, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
