package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates/links"
	"github.com/herald-dev/herald/throttle"
)

// One-click unsubscribe (RFC 8058): a GET shows the button and changes nothing, the POST
// a mail client sends revokes email marketing in the ledger at once, once; a forged or
// click token changes nothing.
func TestOneClickUnsubscribe(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	ids, err := f.store.Upsert(ctx, []segments.Contact{{Email: "ann@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	ann := ids[0]
	ledger := throttle.NewLedger(f.rdb, f.prefix, f.cons)
	if _, err := ledger.Apply(ctx, []throttle.Change{{ContactID: ann, Channel: "email", Purpose: "marketing", Action: events.Grant, Source: "web_form"}}, false); err != nil {
		t.Fatal(err)
	}
	codec, _ := links.NewCodec([]byte("unsubscribe-test-key-0123"))
	srv := httptest.NewServer(New(Config{Events: f.evs, Inbound: f.inbound, Tracker: f.tracker, Policy: f.policy, Ledger: ledger,
		Contacts: f.store, Clicks: codec}).Handler())
	t.Cleanup(srv.Close)
	tr := &links.Tracker{Codec: codec, Base: srv.URL}
	link, err := tr.UnsubscribeURL("7", ann, "email")
	if err != nil {
		t.Fatal(err)
	}
	allowed := func() bool {
		t.Helper()
		ds, err := f.policy.Preview(ctx, []throttle.Job{{ContactID: ann, Channel: "email", Purpose: "marketing"}})
		if err != nil {
			t.Fatal(err)
		}
		return ds[0].Verdict == throttle.Allow
	}
	do := func(method, u string) (int, string) {
		t.Helper()
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("List-Unsubscribe=One-Click")
		}
		req, _ := http.NewRequest(method, u, body)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, page := do("GET", link); code != 200 || !strings.Contains(page, `<form method="post">`) || !allowed() {
		t.Fatalf("GET: %d, allowed %v\n%s", code, allowed(), page)
	}
	click, _ := codec.Token(links.Click{Campaign: "7", Contact: ann, URL: "https://shop.example.com/"})
	for _, bad := range []string{srv.URL + "/u/" + click, srv.URL + "/u/" + url.PathEscape(strings.Replace(link[len(srv.URL)+3:], "A", "B", 1)) + "x"} {
		if code, _ := do("POST", bad); code != 404 || !allowed() {
			t.Fatalf("POST %s: %d, allowed %v; want 404 and nothing changed", bad, code, allowed())
		}
	}
	for range 2 { // a client retrying: one revoke
		if code, page := do("POST", link); code != 200 || !strings.Contains(page, "You are unsubscribed") {
			t.Fatalf("POST: %d\n%s", code, page)
		}
	}
	if allowed() {
		t.Fatal("still allowed after the one-click unsubscribe")
	}
	if len(f.cons.msgs) != 3 { // setup's grant, this test's grant, the revoke
		t.Fatalf("%d consent records, want 3", len(f.cons.msgs))
	}
	rec, err := events.UnmarshalConsent(f.cons.msgs[2].Value)
	if err != nil || rec.Action != events.Revoke || rec.Channel != "email" || rec.Source != "one_click" || !strings.Contains(rec.Proof, "campaign 7") {
		t.Fatalf("revoke record %+v, %v", rec, err)
	}
	var opted int
	for _, e := range f.evs.events(t) {
		if e.Kind == events.OptedOut && e.ContactID == ann && e.CampaignID == "7" && e.ConsentRef == rec.ID {
			opted++
		}
	}
	if opted != 1 {
		t.Fatalf("%d opted_out events naming the revoke, want 1", opted)
	}
}
