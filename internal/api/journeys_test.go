package api

import (
	"strings"
	"testing"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/journeys"
	"github.com/herald-dev/herald/templates"
)

const journeyTemplate = `name: nudge
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: nudge
  language: en_US
  category: MARKETING
`

const journeyDef = `id: nudge-readers
senders: ["106540352242922"]
entry: read
exit_on: [replied]
steps:
  - id: wait
    wait_for: {event: replied, timeout: 30m, on_timeout: nudge}
  - id: nudge
    send: nudge
`

// Journeys through the API: a marketer adds (bad definitions refused with the line),
// versions, pauses, resumes and archives them; an analyst reads but may not write; a
// custom event is accepted for a contact found by phone.
func TestJourneysAPI(t *testing.T) {
	e := newEnv(t)
	tpl, err := templates.ParseFile([]byte(journeyTemplate), "nudge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.comp.Templates.Save(e.ctx, tpl, []byte(journeyTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := e.comp.Senders.Put(e.ctx, dispatcher.Sender{ID: "106540352242922", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: "t", Rate: 10}); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(journeyDef, "send: nudge", "send: nope", 1)
	r := e.do(req{method: "POST", path: "/v1/journeys", key: "marketer", body: map[string]string{"definition": bad}})
	if p := r.problem(t); r.status != 422 || !strings.Contains(p.Detail, "line 9") || !strings.Contains(p.Detail, `unknown template "nope"`) {
		t.Fatalf("%d %+v", r.status, p)
	}
	r = e.do(req{method: "POST", path: "/v1/journeys", key: "analyst", body: map[string]string{"definition": journeyDef}})
	if r.status != 403 {
		t.Fatalf("analyst add: %d", r.status)
	}
	var in journeys.Info
	r = e.do(req{method: "POST", path: "/v1/journeys", key: "marketer", body: map[string]string{"definition": journeyDef}})
	r.decode(t, &in)
	if r.status != 201 || in.ID != "nudge-readers" || in.Version != 1 || in.State != journeys.Active {
		t.Fatalf("%d %+v", r.status, in)
	}
	e.do(req{method: "POST", path: "/v1/journeys", key: "marketer", body: map[string]string{"definition": journeyDef}}).decode(t, &in)
	if in.Version != 2 {
		t.Fatalf("second version: %+v", in)
	}
	var list struct{ Items []journeys.Info }
	e.do(req{method: "GET", path: "/v1/journeys", key: "analyst"}).decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].Version != 2 {
		t.Fatalf("list %+v", list)
	}
	e.do(req{method: "GET", path: "/v1/journeys/nudge-readers", key: "analyst"}).decode(t, &in)
	if !strings.Contains(in.Source, "wait_for") {
		t.Fatalf("get %+v", in)
	}
	if r := e.do(req{method: "GET", path: "/v1/journeys/nobody", key: "analyst"}); r.status != 404 {
		t.Fatalf("unknown journey: %d", r.status)
	}
	if r := e.do(req{method: "POST", path: "/v1/journeys/nudge-readers/resume", key: "marketer"}); r.status != 409 {
		t.Fatalf("resume an active journey: %d", r.status)
	}
	for _, step := range []struct{ verb, state string }{{"pause", journeys.Paused}, {"resume", journeys.Active}, {"archive", journeys.Archived}} {
		r := e.do(req{method: "POST", path: "/v1/journeys/nudge-readers/" + step.verb, key: "marketer"})
		r.decode(t, &in)
		if r.status != 200 || in.State != step.state {
			t.Fatalf("%s: %d %+v", step.verb, r.status, in)
		}
	}
	var rep app.JourneyReport
	r = e.do(req{method: "GET", path: "/v1/reports/journey?id=nudge-readers", key: "analyst"})
	r.decode(t, &rep)
	if r.status != 200 || rep.Journey != "nudge-readers" || len(rep.Steps) != 2 || rep.Entered != 0 {
		t.Fatalf("report %d %+v", r.status, rep)
	}
	if r := e.do(req{method: "GET", path: "/v1/reports/journey?id=nobody", key: "analyst"}); r.status != 404 {
		t.Fatalf("report of an unknown journey: %d", r.status)
	}
	if _, err := app.ImportContacts(e.ctx, e.d, strings.NewReader("phone,name\n+66810000009,Dee\n"), app.ImportOptions{Source: "t.csv"}); err != nil {
		t.Fatal(err)
	}
	var sent app.SentEvent
	r = e.do(req{method: "POST", path: "/v1/events", key: "marketer", body: map[string]any{"id": "o-1", "name": "order_placed", "phone": "+66810000009",
		"properties": map[string]string{"order_id": "o-1"}}})
	r.decode(t, &sent)
	if r.status != 202 || sent.ContactID == 0 || sent.Name != "order_placed" {
		t.Fatalf("%d %+v", r.status, sent)
	}
	if r := e.do(req{method: "POST", path: "/v1/events", key: "analyst", body: map[string]any{"name": "x", "contact_id": 1}}); r.status != 403 {
		t.Fatalf("analyst event: %d", r.status)
	}
	if r := e.do(req{method: "POST", path: "/v1/events", key: "marketer", body: map[string]any{"name": "bad name!", "contact_id": 1}}); r.status != 422 {
		t.Fatalf("bad name: %d", r.status)
	}
}
