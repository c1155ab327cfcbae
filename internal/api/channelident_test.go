package api

import (
	"fmt"
	"testing"

	"github.com/herald-dev/herald/segments"
)

// Contacts carry their Telegram chat id and LINE user id through the API, and a
// contact known by one of them only is found, updated and refused like any other.
func TestContactChannelIdentities(t *testing.T) {
	e := newEnv(t)
	const lineID = "U4af4980629d8ef6e1cc5d5a27e6bf99c"
	var ct segments.Contact
	res := e.do(req{method: "POST", path: "/v1/contacts", key: "launcher", body: map[string]any{"telegram_chat_id": " 123456789 ", "line_user_id": "U4AF4980629D8EF6E1CC5D5A27E6BF99C", "name": "Tg"}})
	res.decode(t, &ct)
	if res.status != 201 || ct.ID == 0 || ct.TelegramChatID != "123456789" || ct.LineUserID != lineID || ct.Phone != "" {
		t.Fatalf("POST: %d %s", res.status, res.body)
	}
	var got segments.Contact
	e.do(req{method: "GET", path: fmt.Sprintf("/v1/contacts/%d", ct.ID), key: "launcher"}).decode(t, &got)
	if got.TelegramChatID != "123456789" || got.LineUserID != lineID || got.Name != "Tg" {
		t.Fatalf("GET: %+v", got)
	}
	// Known by its chat id only, the contact takes a new name, and a phone.
	res = e.do(req{method: "PUT", path: fmt.Sprintf("/v1/contacts/%d", ct.ID), key: "launcher", body: map[string]any{"name": "Renamed", "phone": "+66817400001"}})
	res.decode(t, &got)
	if res.status != 200 || got.Name != "Renamed" || got.Phone != "+66817400001" || got.TelegramChatID != "123456789" {
		t.Fatalf("PUT: %d %s", res.status, res.body)
	}
	// Posting the same chat id again updates the contact rather than creating one.
	res = e.do(req{method: "POST", path: "/v1/contacts", key: "launcher", body: map[string]any{"telegram_chat_id": "123456789", "locale": "th"}})
	res.decode(t, &got)
	if res.status != 200 || got.ID != ct.ID || got.Locale != "th" {
		t.Fatalf("POST again: %d %s", res.status, res.body)
	}
	other, err := e.comp.Contacts.Upsert(e.ctx, []segments.Contact{{Email: "other@example.com", TelegramChatID: "55"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		pointer                  string
	}{
		{"bad chat id", "POST", "/v1/contacts", `{"telegram_chat_id":"1.23457E+11"}`, 422, "/telegram_chat_id"},
		{"bad line id", "POST", "/v1/contacts", `{"line_user_id":"Cabc"}`, 422, "/line_user_id"},
		{"put another's line id", "PUT", fmt.Sprintf("/v1/contacts/%d", other[0]), `{"line_user_id":"` + lineID + `"}`, 409, "/line_user_id"},
		{"bulk conflict", "POST", "/v1/contacts:bulk", `{"contacts":[{"email":"other@example.com","telegram_chat_id":"123456789"}]}`, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(req{method: tc.method, path: tc.path, key: "launcher", body: []byte(tc.body), invalid: tc.status >= 400})
			if res.status != tc.status {
				t.Fatalf("%d, want %d: %s", res.status, tc.status, res.body)
			}
			if tc.pointer == "" {
				return
			}
			p := res.problem(t)
			found := false
			for _, fp := range p.Errors {
				found = found || fp.Pointer == tc.pointer
			}
			if !found {
				t.Errorf("no error points at %s: %s", tc.pointer, res.body)
			}
		})
	}
	var bulk struct {
		Rejects []struct{ Field, Value string }
	}
	e.do(req{method: "POST", path: "/v1/contacts:bulk", key: "launcher", body: []byte(`{"contacts":[{"line_user_id":"` + lineID + `","telegram_chat_id":"55"}]}`)}).decode(t, &bulk)
	if len(bulk.Rejects) != 1 || bulk.Rejects[0].Field != "telegram_chat_id" || bulk.Rejects[0].Value != "55" {
		t.Fatalf("bulk rejects %+v", bulk.Rejects)
	}
	if id, err := e.comp.Contacts.LookupIdentity(e.ctx, "line", lineID); err != nil || id != ct.ID {
		t.Fatalf("the LINE id finds %d, %v", id, err)
	}
}
