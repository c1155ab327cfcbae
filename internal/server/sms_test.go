package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/herald-dev/herald/channels/sms"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// SMS webhooks: a signed inbound STOP revokes SMS marketing; a forged, altered,
// malformed or oversized request is refused and changes nothing; a status callback is
// ingested like WhatsApp's.
func TestSMSWebhooks(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	const account, token = "AC0123456789abcdef0123456789abcdef", "sms-token"
	ids, err := f.store.Upsert(ctx, []segments.Contact{{Phone: "+14155550123"}})
	if err != nil {
		t.Fatal(err)
	}
	bob := ids[0]
	ledger := throttle.NewLedger(f.rdb, f.prefix, f.cons)
	if _, err := ledger.Apply(ctx, []throttle.Change{{ContactID: bob, Channel: "sms", Purpose: "marketing", Action: events.Grant, Source: "web_form"}}, false); err != nil {
		t.Fatal(err)
	}
	ch, err := sms.New(sms.Config{PublicURL: "https://herald.example.com", Senders: map[string]sms.SenderConfig{
		"us-1": {AccountSID: account, AuthToken: token, From: "+18005550100"}}})
	if err != nil {
		t.Fatal(err)
	}
	reactor := dispatcher.NewReactor(dispatcher.ReactorConfig{Ledger: ledger, Policy: f.policy, Contacts: f.store, Events: f.evs,
		Campaigns: dispatcher.NewCampaigns(dispatcher.CampaignsConfig{Redis: f.rdb, Prefix: f.prefix})})
	srv := httptest.NewServer(New(Config{Events: f.evs, Inbound: f.inbound, Tracker: f.tracker, Policy: f.policy, Ledger: ledger,
		Reactor: reactor, Contacts: f.store, SMS: &SMSConfig{Channel: ch, PublicURL: "https://herald.example.com"}}).Handler())
	t.Cleanup(srv.Close)
	post := func(path string, form url.Values, sig string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sig != "" {
			req.Header.Set("X-Twilio-Signature", sig)
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
		st, err := f.policy.Consent(ctx, "sms", "marketing", []uint32{bob})
		if err != nil {
			t.Fatal(err)
		}
		return st[0].Granted
	}
	stop := url.Values{"AccountSid": {account}, "MessageSid": {"SM1"}, "From": {"+14155550123"}, "To": {"+18005550100"}, "Body": {"STOP"}}
	good := sms.Sign(token, "https://herald.example.com"+sms.InboundPath, stop)
	altered := url.Values{}
	for k, v := range stop {
		altered[k] = v
	}
	altered.Set("From", "+14155550999")
	for name, c := range map[string]struct {
		form url.Values
		sig  string
		want int
	}{
		"no signature":    {stop, "", 403},
		"wrong token":     {stop, sms.Sign("other", "https://herald.example.com"+sms.InboundPath, stop), 403},
		"altered body":    {altered, good, 403},
		"unknown account": {url.Values{"AccountSid": {"ACffff"}, "Body": {"STOP"}}, good, 403},
	} {
		if code := post(sms.InboundPath, c.form, c.sig); code != c.want || !granted() || len(f.inbound.msgs) != 0 {
			t.Fatalf("%s: %d (want %d), granted %v, %d inbound", name, code, c.want, granted(), len(f.inbound.msgs))
		}
	}
	// Oversized and malformed bodies.
	req, _ := http.NewRequest("POST", srv.URL+sms.InboundPath, strings.NewReader("Body="+strings.Repeat("x", MaxBody+10)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode < 400 || resp.StatusCode >= 500 || !granted() {
		t.Fatalf("oversized body: %v %v", resp, err)
	}
	if code := post(sms.InboundPath, url.Values{"%zz": {"1"}}, "x"); code < 400 || code >= 500 || !granted() {
		t.Fatalf("malformed body: %d", code)
	}
	// The genuine STOP, twice (a redelivery): one revoke, SMS only.
	for range 2 {
		if code := post(sms.InboundPath, stop, good); code != 200 {
			t.Fatalf("genuine STOP: %d", code)
		}
	}
	if granted() {
		t.Fatal("a signed STOP did not revoke SMS marketing")
	}
	if wa, _ := f.policy.Consent(ctx, "whatsapp", "marketing", []uint32{f.contact}); !wa[0].Granted {
		t.Fatal("an SMS STOP touched another contact's WhatsApp consent")
	}
	// A status callback of campaign 5's send to bob: failed 21610 → an opt-out (already
	// out: no new record), recorded as a failed event with the code.
	cb := "5:" + itoa(bob)
	status := url.Values{"AccountSid": {account}, "MessageSid": {"SM2"}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30003"},
		"From": {"+18005550100"}, "To": {"+14155550123"}}
	path := sms.StatusPath + "?cb=" + url.QueryEscape(cb)
	if code := post(path, status, sms.Sign(token, "https://herald.example.com"+path, status)); code != 200 {
		t.Fatalf("status callback: %d", code)
	}
	var failed bool
	for _, e := range f.evs.events(t) {
		failed = failed || (e.Kind == events.Failed && e.ContactID == bob && e.ErrorCode == 30003 && e.Channel == "sms")
	}
	sups, _ := f.policy.Suppressions(ctx, "sms", []uint32{bob})
	if !failed || sups[0].Reason != throttle.ReasonUndeliverable {
		t.Fatalf("undelivered 30003: failed event %v, suppression %+v", failed, sups[0])
	}
}
