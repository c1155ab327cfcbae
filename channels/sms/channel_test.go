package sms_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/sms"
	"github.com/herald-dev/herald/channels/sms/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
)

const (
	account  = "AC0123456789abcdef0123456789abcdef"
	token    = "auth-token-1"
	longCode = "+14155550100"
	user     = "+14155550123"
)

// hooks is the part of Herald's HTTP server an SMS wiring needs, built only from the
// package's API: POST /webhooks/sms/status and /webhooks/sms/inbound, each verified
// against the public URL Twilio requested, then decoded.
type hooks struct {
	srv     *httptest.Server
	ch      atomic.Pointer[sms.Channel]
	mu      sync.Mutex
	reports []dispatcher.Report
	inbound []dispatcher.Inbound
	refused atomic.Int64 // requests answered 403
	bad     atomic.Int64 // requests answered 400
}

func newHooks(t testing.TB) *hooks {
	h := &hooks{}
	verified := func(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
		form, err := sms.ReadForm(r.Body)
		if err != nil {
			h.bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return nil, false
		}
		// Behind a proxy the server sees another host: the signature covers the public URL.
		full := sms.FullURL(h.srv.URL, r.URL.RequestURI())
		if err := h.ch.Load().Verify(full, form, r.Header.Get(sms.SignatureHeader)); err != nil {
			h.refused.Add(1)
			http.Error(w, err.Error(), http.StatusForbidden)
			return nil, false
		}
		return form, true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+sms.StatusPath, func(w http.ResponseWriter, r *http.Request) {
		form, ok := verified(w, r)
		if !ok {
			return
		}
		rep, ok, err := sms.DecodeStatus(form, r.URL.Query().Get("cb"))
		if err != nil {
			h.bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if ok {
			h.mu.Lock()
			h.reports = append(h.reports, rep)
			h.mu.Unlock()
		}
	})
	mux.HandleFunc("POST "+sms.InboundPath, func(w http.ResponseWriter, r *http.Request) {
		form, ok := verified(w, r)
		if !ok {
			return
		}
		in, err := sms.DecodeInbound(form)
		if err != nil {
			h.bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.inbound = append(h.inbound, in)
		h.mu.Unlock()
	})
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hooks) got() ([]dispatcher.Report, []dispatcher.Inbound) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]dispatcher.Report(nil), h.reports...), append([]dispatcher.Inbound(nil), h.inbound...)
}

// env is Herald's SMS channel talking to a sandbox over loopback, with the sandbox's
// callbacks going to hooks.
type env struct {
	sb    *sandbox.Sandbox
	api   *httptest.Server
	hooks *hooks
	ch    *sms.Channel
}

func newEnv(t testing.TB, cfg sandbox.Config, senders map[string]sms.SenderConfig) *env {
	t.Helper()
	e := &env{hooks: newHooks(t)}
	cfg.AccountSID, cfg.AuthToken = account, token
	if cfg.InboundURL == "" {
		cfg.InboundURL = e.hooks.srv.URL + sms.InboundPath
	}
	if cfg.DelayScale == 0 {
		cfg.DelayScale = 0.01
	}
	cfg.RetryBase, cfg.RetryMax = time.Millisecond, 10*time.Millisecond
	e.sb = sandbox.New(cfg, nil)
	e.api = httptest.NewServer(e.sb.Handler())
	t.Cleanup(e.api.Close)
	if senders == nil {
		senders = map[string]sms.SenderConfig{"s1": {AccountSID: account, AuthToken: token, From: longCode, Type: sms.LongCode}}
	}
	ch, err := sms.New(sms.Config{BaseURL: e.api.URL, PublicURL: e.hooks.srv.URL, Senders: senders})
	if err != nil {
		t.Fatal(err)
	}
	e.ch = ch
	e.hooks.ch.Store(ch)
	return e
}

func (e *env) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.sb.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func (e *env) waitIdle(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.sb.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

func message(to, text, cb string) dispatcher.Message {
	return dispatcher.Message{To: to, Rendered: templates.Rendered{Channel: "sms", Text: text}, CallbackData: cb}
}

// number returns the i-th test recipient: a valid US number.
func number(i int) string { return "+1415" + strconv.Itoa(2000000+i) }

func findNumber(t testing.TB, pred func(string) bool) string {
	t.Helper()
	for i := range 100000 {
		if n := number(i); pred(n) {
			return n
		}
	}
	t.Fatal("no such number")
	return ""
}

// TestSendThroughSandbox: what the channel sends is what the sandbox recorded: the
// form fields, the segments as templates count them, and a StatusCallback that carries
// the callback data.
func TestSendThroughSandbox(t *testing.T) {
	e := newEnv(t, sandbox.Config{}, map[string]sms.SenderConfig{
		"s1":  {AccountSID: account, AuthToken: token, From: longCode},
		"svc": {AccountSID: account, AuthToken: token, MessagingServiceSID: "MG0123", Type: sms.ShortCode, ValidityPeriod: 10 * time.Minute},
	})
	bodies := []string{
		"Hi Jessica, your order SKBUP2-4CPIG9 is confirmed.",
		strings.Repeat("Sale {today} only € ", 10),        // GSM-7 with extension characters: 2 septets each
		strings.Repeat("Hello 👋 from Herald ", 8),         // UCS-2, surrogate pairs
		"Línea con acentos: ¿qué tal? ñ — and an em dash", // the em dash is not GSM-7
	}
	type sent struct{ id, sender, to, body, cb string }
	var want []sent
	for i, body := range bodies {
		for _, sender := range []string{"s1", "svc"} {
			cb := "cmp-7:" + strconv.Itoa(i)
			if sender == "svc" {
				cb += ":v.b"
			}
			to := number(i)
			id, err := e.ch.Send(context.Background(), dispatcher.Sender{ID: sender}, message(to, body, cb))
			if err != nil {
				t.Fatalf("send %d from %s: %v", i, sender, err)
			}
			want = append(want, sent{id, sender, to, body, cb})
		}
	}
	recs := e.sb.Records()
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		w := want[i]
		segs, enc := templates.SMSSegments(w.body)
		if r.SID != w.id || r.To != w.to || r.Body != w.body || r.AccountSID != account || r.Segments != segs || r.Encoding != enc {
			t.Fatalf("record %d: %+v, want %+v (%d %s segments)", i, r, w, segs, enc)
		}
		if r.StatusCallback != sms.StatusCallbackURL(e.hooks.srv.URL, w.cb) || r.CallbackData != w.cb {
			t.Fatalf("record %d: callback %q (cb %q), want cb %q", i, r.StatusCallback, r.CallbackData, w.cb)
		}
		switch w.sender {
		case "s1":
			if r.From != longCode || r.MessagingServiceSID != "" || r.ValidityPeriod != 0 || r.SenderType != sms.LongCode {
				t.Fatalf("record %d: %+v", i, r)
			}
		case "svc":
			if r.From != "" || r.MessagingServiceSID != "MG0123" || r.ValidityPeriod != 600 {
				t.Fatalf("record %d: %+v", i, r)
			}
		}
	}
	if got := []int{recs[0].Segments, recs[2].Segments, recs[4].Segments}; !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("segments %v: the bodies should span 1-3 segments", got)
	}
	// Without callback data no StatusCallback is set: its statuses could not be attributed.
	if _, err := e.ch.Send(context.Background(), dispatcher.Sender{ID: "s1"}, message(user, "test", "")); err != nil {
		t.Fatal(err)
	}
	if recs := e.sb.Records(); recs[len(recs)-1].StatusCallback != "" {
		t.Fatalf("StatusCallback %q without callback data", recs[len(recs)-1].StatusCallback)
	}
}

// TestRefusalsAreClassified: each documented refusal comes back as a *SendError with
// the table's action and retryability, a Retry-After when Twilio sends one.
func TestRefusalsAreClassified(t *testing.T) {
	const (
		rateLimited = "+14155550001"
		bare503     = "+14155550002"
		server500   = "+14155550003"
	)
	cfg := sandbox.Config{
		Senders:          map[string]sms.SenderType{longCode: sms.LongCode, "+14155550101": sms.LongCode},
		AllowedCountries: []string{"US"},
		UnsubscribedRate: 0.2,
		LandlineRate:     0.2,
		MaxQueueTime:     2 * time.Second,
		Fault: func(to string) sandbox.Fault {
			switch to {
			case rateLimited:
				return sandbox.Fault{Status: 429, Code: 20429, RetryAfter: 7 * time.Second}
			case bare503:
				return sandbox.Fault{Status: 503, RetryAfter: 2 * time.Second}
			case server500:
				return sandbox.Fault{Status: 500, Code: 20500}
			}
			return sandbox.Fault{}
		},
	}
	e := newEnv(t, cfg, map[string]sms.SenderConfig{
		"s1":       {AccountSID: account, AuthToken: token, From: longCode},
		"queued":   {AccountSID: account, AuthToken: token, From: "+14155550101"},
		"notours":  {AccountSID: account, AuthToken: token, From: "+14155550199"},
		"badtoken": {AccountSID: "AC1", AuthToken: "wrong", From: longCode},
	})
	ok := func(n string) bool { return !sandbox.Unsubscribed(n, 0.2) && !sandbox.Landline(n, 0.2) }
	unsubscribed := findNumber(t, func(n string) bool { return sandbox.Unsubscribed(n, 0.2) })
	landline := findNumber(t, func(n string) bool { return !sandbox.Unsubscribed(n, 0.2) && sandbox.Landline(n, 0.2) })
	good := findNumber(t, ok)
	// Fill the "queued" sender's queue: 2 s at 1 segment/s.
	for i := range 3 {
		if _, err := e.ch.Send(context.Background(), dispatcher.Sender{ID: "queued"}, message(good, "x", "1:"+strconv.Itoa(i))); err != nil {
			t.Fatalf("filling the queue: %v", err)
		}
	}
	tests := []struct {
		name, sender, to, body string
		code                   int
		action                 string
		retryable              bool
		wait                   time.Duration
	}{
		{"unsubscribed", "s1", unsubscribed, "hi", 21610, dispatcher.ActionOptOut, false, 0},
		{"invalid To", "s1", "+1555", "hi", 21211, dispatcher.ActionUndeliverable, false, 0},
		{"landline", "s1", landline, "hi", 21614, dispatcher.ActionUndeliverable, false, 0},
		{"region", "s1", "+66812345678", "hi", 21408, dispatcher.ActionSkipCountry, false, 0},
		{"From not ours", "notours", good, "hi", 21606, dispatcher.ActionPauseSender, false, 0},
		{"bad credentials", "badtoken", good, "hi", 20003, dispatcher.ActionPauseAccount, false, 0},
		{"empty body", "s1", good, "", 21602, dispatcher.ActionFailJob, false, 0},
		{"body too long", "s1", good, strings.Repeat("a", 1601), 21617, dispatcher.ActionFailJob, false, 0},
		{"queue full", "queued", good, "x", 21611, dispatcher.ActionRetry, true, time.Minute},
		{"429 with Retry-After", "s1", rateLimited, "hi", 20429, dispatcher.ActionRetry, true, 7 * time.Second},
		{"bare 503", "s1", bare503, "hi", sms.CodeTransport, dispatcher.ActionTransport, true, 2 * time.Second},
		{"500 with a code", "s1", server500, "hi", 20500, dispatcher.ActionRetry, true, 0},
		{"no SMS configuration", "whatsapp-1", good, "hi", 0, dispatcher.ActionPauseAccount, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := e.ch.Send(context.Background(), dispatcher.Sender{ID: tt.sender}, message(tt.to, tt.body, "9:1"))
			se, ok := errors.AsType[*dispatcher.SendError](err)
			if !ok || id != "" {
				t.Fatalf("Send = %q, %v; want a *SendError", id, err)
			}
			if se.Code != tt.code || se.Action != tt.action || se.Retryable != tt.retryable || se.RetryAfter != tt.wait {
				t.Fatalf("SendError{Code %d, Action %s, Retryable %v, RetryAfter %v} (%v), want code %d %s retryable %v after %v",
					se.Code, se.Action, se.Retryable, se.RetryAfter, se.Err, tt.code, tt.action, tt.retryable, tt.wait)
			}
		})
	}
	if _, err := e.ch.Send(context.Background(), dispatcher.Sender{ID: "whatsapp-1"}, message(good, "hi", "9:1")); !errors.Is(err, sms.ErrUnknownSender) {
		t.Fatalf("unknown sender: %v", err)
	}
	if n := len(e.sb.Records()); n != 3 {
		t.Fatalf("%d records: only the three queued messages were accepted", n)
	}
}

func TestTransportErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ch, err := sms.New(sms.Config{BaseURL: "http://" + addr, PublicURL: "https://herald.example",
		Senders: map[string]sms.SenderConfig{"s1": {AccountSID: account, AuthToken: token, From: longCode}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.Send(context.Background(), dispatcher.Sender{ID: "s1"}, message(user, "hi", "1:1"))
	se, ok := errors.AsType[*dispatcher.SendError](err)
	if !ok || se.Action != dispatcher.ActionTransport || !se.Retryable || se.Code != 0 {
		t.Fatalf("connection refused: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = ch.Send(ctx, dispatcher.Sender{ID: "s1"}, message(user, "hi", "1:1"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if _, ok := errors.AsType[*dispatcher.SendError](err); ok {
		t.Fatal("a cancelled send is not a provider refusal")
	}
}

// TestStatusCallbacksReachHerald: the sandbox's signed callbacks verify at Herald's
// status route and decode to the Reports the sandbox's truth implies: campaign,
// contact, variant, kind, code and action.
func TestStatusCallbacksReachHerald(t *testing.T) {
	e := newEnv(t, sandbox.Config{
		Rates:             map[sms.SenderType]float64{sms.LongCode: 500},
		UndeliverableRate: 0.25,
		FilterWords:       []string{"crypto"},
	}, nil)
	e.run(t)
	const n = 80
	for i := range n {
		body := "Your code is " + strconv.Itoa(i)
		if i%8 == 0 {
			body = "Buy crypto now"
		}
		cb := "cmp-7:" + strconv.Itoa(i+1)
		if i%3 == 0 {
			cb += ":v.a"
		}
		if _, err := e.ch.Send(context.Background(), dispatcher.Sender{ID: "s1"}, message(number(i), body, cb)); err != nil {
			t.Fatal(err)
		}
	}
	e.waitIdle(t)
	reports, _ := e.hooks.got()
	if e.hooks.refused.Load() != 0 || e.hooks.bad.Load() != 0 {
		t.Fatalf("%d callbacks refused, %d bad", e.hooks.refused.Load(), e.hooks.bad.Load())
	}
	byID := map[string][]dispatcher.Report{}
	for _, r := range reports {
		byID[r.MessageID] = append(byID[r.MessageID], r)
	}
	kinds := map[events.Kind]int{}
	for i, rec := range e.sb.Records() {
		reps := byID[rec.SID]
		if len(reps) != 3 {
			t.Fatalf("message %d: %d reports, want 3 (queued, sent, final)", i, len(reps))
		}
		wantFinal := dispatcher.Report{Kind: events.Delivered, Key: dispatcher.Key{Campaign: "cmp-7", Contact: uint32(i + 1)},
			Channel: "sms", SenderRef: longCode, MessageID: rec.SID}
		if i%3 == 0 {
			wantFinal.Variant = "a"
		}
		if rec.ErrorCode != 0 {
			wantFinal.Kind, wantFinal.Code, wantFinal.Action = events.Failed, rec.ErrorCode, sms.ClassifyCode(rec.ErrorCode).Action
		}
		var sentCount int
		for _, r := range reps {
			if r.Kind == events.Sent {
				sentCount++
				w := wantFinal
				w.Kind, w.Code, w.Action = events.Sent, 0, ""
				if r != w {
					t.Fatalf("message %d: sent report %+v, want %+v", i, r, w)
				}
				continue
			}
			if r.Time.IsZero() {
				t.Fatalf("message %d: final report without the carrier's time", i)
			}
			r.Time = time.Time{}
			if r != wantFinal {
				t.Fatalf("message %d: final report %+v, want %+v", i, r, wantFinal)
			}
			kinds[r.Kind]++
			if r.Kind == events.Failed {
				kinds[events.Kind(r.Action)]++
			}
		}
		if sentCount != 2 {
			t.Fatalf("message %d: %d sent reports (queued and sent)", i, sentCount)
		}
	}
	if kinds[events.Delivered] == 0 || kinds[events.Kind(dispatcher.ActionUndeliverable)] == 0 || kinds[events.Kind(dispatcher.ActionDrop)] == 0 {
		t.Fatalf("outcomes %v: want delivered, undeliverable and filtered messages", kinds)
	}
}

// TestForgedCallbacksAreRefused: a callback without a valid X-Twilio-Signature for the
// exact URL and form — unsigned, signed with another token, altered after signing,
// replayed to another contact's URL, naming an account Herald does not have — is
// refused and records nothing.
func TestForgedCallbacksAreRefused(t *testing.T) {
	e := newEnv(t, sandbox.Config{}, nil)
	statusURL := sms.StatusCallbackURL(e.hooks.srv.URL, "cmp-7:5")
	form := url.Values{
		"AccountSid": {account}, "ApiVersion": {"2010-04-01"}, "MessageSid": {"SM1"}, "SmsSid": {"SM1"},
		"MessageStatus": {"undelivered"}, "SmsStatus": {"undelivered"}, "ErrorCode": {"30005"},
		"From": {longCode}, "To": {user},
	}
	post := func(u string, f url.Values, sig string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sig != "" {
			req.Header.Set(sms.SignatureHeader, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	altered := url.Values{}
	for k, v := range form {
		altered[k] = v
	}
	altered.Set("ErrorCode", "21610") // turn an undeliverable into an opt-out
	otherAccount := url.Values{}
	for k, v := range form {
		otherAccount[k] = v
	}
	otherAccount.Set("AccountSid", "AC999")
	good := sms.Sign(token, statusURL, form)
	tests := []struct {
		name, url string
		form      url.Values
		sig       string
	}{
		{"unsigned", statusURL, form, ""},
		{"other token", statusURL, form, sms.Sign("guess", statusURL, form)},
		{"altered form", statusURL, altered, good},
		{"replayed to another contact", sms.StatusCallbackURL(e.hooks.srv.URL, "cmp-7:6"), form, good},
		{"unknown account", statusURL, otherAccount, sms.Sign(token, statusURL, otherAccount)},
		{"garbage signature", statusURL, form, "!!!"},
	}
	for _, tt := range tests {
		if code := post(tt.url, tt.form, tt.sig); code != http.StatusForbidden {
			t.Errorf("%s: HTTP %d, want 403", tt.name, code)
		}
	}
	inbound := url.Values{"AccountSid": {account}, "MessageSid": {"SM2"}, "From": {user}, "To": {longCode}, "Body": {"STOP"}}
	inURL := e.hooks.srv.URL + sms.InboundPath
	if code := post(inURL, inbound, sms.Sign(token, statusURL, inbound)); code != http.StatusForbidden {
		t.Errorf("inbound signed for another URL: HTTP %d", code)
	}
	if reports, in := e.hooks.got(); len(reports) != 0 || len(in) != 0 {
		t.Fatalf("forged requests recorded %v %v", reports, in)
	}
	// The control: the genuine request is taken.
	if code := post(statusURL, form, good); code != http.StatusOK {
		t.Fatalf("genuine callback: HTTP %d", code)
	}
	if reports, _ := e.hooks.got(); len(reports) != 1 || reports[0].Code != 30005 || reports[0].Action != dispatcher.ActionUndeliverable || reports[0].Contact != 5 {
		t.Fatalf("genuine callback decoded to %+v", reports)
	}
}

// TestInboundStop: a user's STOP reaches Herald's inbound route, verified and decoded,
// is recognised as an opt-out, and from then on the sandbox refuses sends to that user
// from that number with 21610, which the channel classifies as an opt-out. Casual text
// changes nothing.
func TestInboundStop(t *testing.T) {
	e := newEnv(t, sandbox.Config{}, nil)
	e.run(t)
	ctx := context.Background()
	if _, err := e.sb.Inbound(ctx, user, longCode, "stop by the store later?"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sb.Inbound(ctx, user, longCode, " Stop\n"); err != nil {
		t.Fatal(err)
	}
	e.waitIdle(t)
	_, in := e.hooks.got()
	if len(in) != 2 || e.hooks.refused.Load() != 0 {
		t.Fatalf("inbound %+v, %d refused", in, e.hooks.refused.Load())
	}
	slices.SortFunc(in, func(a, b dispatcher.Inbound) int { return len(b.Text) - len(a.Text) })
	for i, want := range []bool{false, true} {
		m := in[i]
		if m.Channel != "sms" || m.From != user || m.SenderRef != longCode || !strings.HasPrefix(m.MessageID, "SM") {
			t.Fatalf("inbound %+v", m)
		}
		if optOut, optIn := sms.Keyword(m.Text); optOut != want || optIn {
			t.Fatalf("Keyword(%q) = %v, %v", m.Text, optOut, optIn)
		}
	}
	_, err := e.ch.Send(ctx, dispatcher.Sender{ID: "s1"}, message(user, "Last chance!", "cmp-8:1"))
	se, ok := errors.AsType[*dispatcher.SendError](err)
	if !ok || se.Code != 21610 || se.Action != dispatcher.ActionOptOut || se.Retryable {
		t.Fatalf("send after STOP: %v", err)
	}
	if _, err := e.sb.Inbound(ctx, user, longCode, "START"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ch.Send(ctx, dispatcher.Sender{ID: "s1"}, message(user, "Welcome back", "cmp-8:1")); err != nil {
		t.Fatalf("send after START: %v", err)
	}
}

// TestSenderPacing: many concurrent sends through the channel are drained by the
// sandbox at each sender's configured rate, counted per second of its queue clock; the
// overflow is refused with 21611, a retry that asks the governor to slow the sender.
func TestSenderPacing(t *testing.T) {
	now := time.Unix(1750000000, 0).UTC()
	const longRate, tollFreeRate = 4, 12
	e := newEnv(t, sandbox.Config{
		Now:          func() time.Time { return now },
		Rates:        map[sms.SenderType]float64{sms.LongCode: longRate, sms.TollFree: tollFreeRate},
		MaxQueueTime: 5 * time.Second,
	}, map[string]sms.SenderConfig{
		"lc1": {AccountSID: account, AuthToken: token, From: longCode, Type: sms.LongCode},
		"lc2": {AccountSID: account, AuthToken: token, From: "+14155550101", Type: sms.LongCode},
		"tf":  {AccountSID: account, AuthToken: token, From: "+18005550100", Type: sms.TollFree},
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := map[string]int{}
	for _, sender := range []string{"lc1", "lc2", "tf"} {
		for w := range 4 {
			wg.Go(func() {
				for i := range 20 {
					_, err := e.ch.Send(context.Background(), dispatcher.Sender{ID: sender}, message(number(w*100+i), "hello", "c:1"))
					if err == nil {
						continue
					}
					se, ok := errors.AsType[*dispatcher.SendError](err)
					if !ok || se.Code != 21611 || se.Action != dispatcher.ActionRetry || !se.Retryable || !sms.ClassifyCode(se.Code).SlowSender {
						t.Errorf("send: %v", err)
						return
					}
					mu.Lock()
					refused[sender]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	drained := map[string]map[int]int{}
	for _, r := range e.sb.Records() {
		if drained[r.From] == nil {
			drained[r.From] = map[int]int{}
		}
		drained[r.From][int((r.SentAt.Sub(now)-time.Nanosecond)/time.Second)] += r.Segments
	}
	for from, rate := range map[string]int{longCode: longRate, "+14155550101": longRate, "+18005550100": tollFreeRate} {
		for sec := range 5 {
			if got := drained[from][sec]; got != rate {
				t.Errorf("%s drained %d segments in second %d, want %d (%v)", from, got, sec, rate, drained[from])
			}
		}
	}
	// 80 submitted per sender; 5 s of queue (and the message at exactly 5 s) fit.
	for sender, rate := range map[string]int{"lc1": longRate, "lc2": longRate, "tf": tollFreeRate} {
		if want := 80 - (5*rate + 1); refused[sender] != want {
			t.Errorf("%s: %d refused, want %d", sender, refused[sender], want)
		}
	}
}

func BenchmarkSend(b *testing.B) {
	e := newEnv(b, sandbox.Config{Rates: map[sms.SenderType]float64{sms.LongCode: 1e9}}, nil)
	ctx := context.Background()
	s := dispatcher.Sender{ID: "s1"}
	m := message(user, "Hi Jessica, your order SKBUP2-4CPIG9 is confirmed. Reply STOP to opt out.", "cmp-7:42")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.ch.Send(ctx, s, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawPOST sends the same requests with plain net/http, for the ratio.
func BenchmarkRawPOST(b *testing.B) {
	e := newEnv(b, sandbox.Config{Rates: map[sms.SenderType]float64{sms.LongCode: 1e9}}, nil)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	u := e.api.URL + "/2010-04-01/Accounts/" + account + "/Messages.json"
	form := url.Values{
		"To": {user}, "From": {longCode},
		"Body":           {"Hi Jessica, your order SKBUP2-4CPIG9 is confirmed. Reply STOP to opt out."},
		"StatusCallback": {sms.StatusCallbackURL(e.hooks.srv.URL, "cmp-7:42")},
	}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form))
		if err != nil {
			b.Fatal(err)
		}
		req.SetBasicAuth(account, token)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m struct {
			SID string `json:"sid"`
		}
		if err != nil || resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &m) != nil || m.SID == "" {
			b.Fatalf("HTTP %d %s: %v", resp.StatusCode, body, err)
		}
	}
}
