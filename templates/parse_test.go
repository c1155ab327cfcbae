package templates

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseFileModel(t *testing.T) {
	src := `name: reminder
description: Appointment reminder
channel: whatsapp
locale: th_TH
kind: whatsapp_template
whatsapp:
  name: appt_reminder
  category: UTILITY
  body:
    when: "{{ at | date: '%H:%M', 'Asia/Bangkok' }}"
    count: "{{ visits | plus: 1 }}"
variables:
  at: {type: date, required: true, example: "2025-01-01T02:00:00Z", description: start time}
  visits: number
  vip: {type: bool, default: yes}
`
	tpl, err := ParseFile([]byte(src), "reminder.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Variable{
		{Name: "at", Type: TypeDate, Required: true, Example: "2025-01-01T02:00:00Z", Description: "start time"},
		{Name: "visits", Type: TypeNumber},
		{Name: "vip", Type: TypeBool, Default: true},
	}
	if !reflect.DeepEqual(tpl.Variables, want) {
		t.Errorf("variables = %+v, want %+v", tpl.Variables, want)
	}
	if tpl.Description != "Appointment reminder" || len(tpl.Variants) != 1 || tpl.Variants[0].Name != "default" {
		t.Errorf("template = %+v", tpl)
	}
	wa := tpl.Variants[0].WhatsApp
	if wa.Language != "th_TH" || wa.Name != "appt_reminder" || len(wa.Params) != 2 || wa.Params[1].Name != "count" {
		t.Errorf("whatsapp = %+v (language defaults to locale; params keep file order)", wa)
	}
	c, err := Compile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Render("c", 1, map[string]any{"at": "2025-06-01T12:30:00Z", "visits": 2})
	if err != nil {
		t.Fatal(err)
	}
	if p := r.WhatsApp.Components[0].Parameters; p[0].Text != "19:30" || p[1].Text != "3" {
		t.Errorf("parameters = %+v", p)
	}
}

func TestParseFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want string
	}{
		{"empty", "", "x.yaml: file is empty"},
		{"not utf8", "name: \xff\n", "x.yaml: file is not valid UTF-8"},
		{"too big", "name: x\n" + strings.Repeat("#", MaxFileBytes), "bytes; the limit is 262144"},
		{"not yaml", "name: [x\n", "x.yaml:"},
		{"list at top", "- a\n- b\n", "x.yaml:1:"},
		{"missing all", "description: x\n", "x.yaml: name: required"},
		{"literal block line", "name: x\nchannel: whatsapp\nlocale: en_US\nkind: text\nbody: |\n  one\n\n  three {{ oops }}\nvariables: {}\n", `x.yaml:8: body: unknown variable "oops" (declared: none)`},
		{"duplicate key", "name: x\nname: y\n", `x.yaml:2: mapping key "name" already defined at line 1`},
		{"duplicate variable", "name: x\nchannel: whatsapp\nlocale: en_US\nkind: text\nbody: hi\nvariables:\n  a: {}\n  a: {}\n", `x.yaml:8: variable "a" is declared twice`},
		{"button key", "name: x\nchannel: whatsapp\nlocale: en_US\nkind: whatsapp_template\nwhatsapp:\n  name: x\n  category: UTILITY\n  buttons:\n    - {index: 0, sub_type: url, url: x}\n", `x.yaml:9: unknown key "url" (allowed: index, sub_type, text, payload)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFile([]byte(tc.src), "x.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "x.yaml" {
				t.Fatalf("got %#v, want *FieldError", err)
			}
		})
	}
}
