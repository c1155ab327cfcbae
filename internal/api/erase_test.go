package api

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// A contact is found by each of its identities, and erased by an admin only: the
// ledger gets its tombstone (a revoke per channel and purpose), its identities find
// nothing afterwards, and erasing it again is 404. Refused calls change nothing.
func TestFindAndEraseContact(t *testing.T) {
	e := newEnv(t)
	const lineID = "U4af4980629d8ef6e1cc5d5a27e6bf99c"
	ids, err := e.comp.Contacts.Upsert(e.ctx, []segments.Contact{
		{Phone: "+66817500001", Email: "ann@example.com", TelegramChatID: "777001", LineUserID: lineID, Name: "Ann", Tags: []string{"vip"}},
		{Phone: "+66817500002", Name: "Bob"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ann := ids[0]
	if _, err := e.comp.Ledger.Apply(e.ctx, []throttle.Change{{ContactID: ann, Channel: "whatsapp", Purpose: "marketing",
		Action: events.Grant, Source: "api"}}, false); err != nil {
		t.Fatal(err)
	}
	type found struct {
		Items []segments.Contact `json:"items"`
	}
	for _, q := range []url.Values{{"phone": {"+66817500001"}}, {"email": {"ANN@example.com"}},
		{"telegram_chat_id": {"777001"}}, {"line_user_id": {lineID}}} {
		var f found
		res := e.do(req{method: "GET", path: "/v1/contacts?" + q.Encode(), key: "analyst", invalid: true})
		if res.status != 403 {
			t.Fatalf("an analyst looked a contact up: %d", res.status)
		}
		e.do(req{method: "GET", path: "/v1/contacts?" + q.Encode(), key: "marketer"}).decode(t, &f)
		if len(f.Items) != 1 || f.Items[0].ID != ann || f.Items[0].Name != "Ann" {
			t.Fatalf("find by %v: %+v", q, f.Items)
		}
	}
	var none found
	e.do(req{method: "GET", path: "/v1/contacts?phone=%2B66817599999", key: "marketer"}).decode(t, &none)
	if len(none.Items) != 0 {
		t.Fatalf("an unknown phone found %+v", none.Items)
	}
	for _, q := range []string{"", "phone=%2B66817500001&email=ann@example.com"} {
		if res := e.do(req{method: "GET", path: "/v1/contacts?" + q, key: "marketer", invalid: true}); res.status != 400 {
			t.Fatalf("lookup with %q: %d %s", q, res.status, res.body)
		}
	}

	annPath := fmt.Sprintf("/v1/contacts/%d", ann)
	for _, key := range []string{"marketer", "launcher", "analyst", "auditor"} {
		if res := e.do(req{method: "DELETE", path: annPath, key: key, invalid: true}); res.status != 403 {
			t.Fatalf("%s erased a contact: %d %s", key, res.status, res.body)
		}
	}
	if res := e.do(req{method: "DELETE", path: annPath + "?purpose=everything", key: "admin", invalid: true}); res.status != 400 {
		t.Fatalf("a bad purpose: %d %s", res.status, res.body)
	}
	if id, err := e.comp.Contacts.LookupPhone(e.ctx, "+66817500001"); err != nil || id != ann {
		t.Fatalf("refused erasures changed the contact: %d %v", id, err)
	}
	var er segments.Erased
	res := e.do(req{method: "DELETE", path: annPath, key: "admin"})
	res.decode(t, &er)
	if res.status != 200 || er.ContactID != ann || er.Tags != 1 {
		t.Fatalf("erase: %d %s", res.status, res.body)
	}
	for _, ref := range []string{"+66817500001", "ann@example.com", "telegram:777001", "line:" + lineID} {
		if id, err := e.comp.Contacts.Lookup(e.ctx, ref); err == nil {
			t.Errorf("%s still finds contact %d", ref, id)
		}
	}
	st, err := e.comp.Ledger.States(e.ctx, "whatsapp", "marketing", []uint32{ann})
	if err != nil || st[0].Granted || st[0].RecordID == "" {
		t.Fatalf("after the erasure the ledger says %+v (%v), want a revoke", st, err)
	}
	if res := e.do(req{method: "DELETE", path: annPath, key: "admin", invalid: true}); res.status != 404 {
		t.Fatalf("erase again: %d %s", res.status, res.body)
	}
	if res := e.do(req{method: "GET", path: annPath, key: "marketer", invalid: true}); res.status != 404 {
		t.Fatalf("get an erased contact: %d", res.status)
	}
	if id, err := e.comp.Contacts.LookupPhone(e.ctx, "+66817500002"); err != nil || id != ids[1] {
		t.Fatalf("the other contact: %d %v", id, err)
	}
}
