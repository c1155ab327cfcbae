package sandbox

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeSend: the request decoder never panics, refuses with a known code, and what
// it accepts is a well-formed text or template request to a valid number.
func FuzzDecodeSend(f *testing.F) {
	f.Add([]byte(templateBody("+16505551234", "42:9")))
	f.Add([]byte(`{"messaging_product":"whatsapp","recipient_type":"individual","to":"+16505551234","type":"text","text":{"preview_url":true,"body":"hi"}}`))
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"16505551234","text":{"body":"default type"}}`))
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"+1","type":"image"}`))
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"+16505551234","type":"template","template":{"name":"x"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, digits, gerr := decodeSend(body)
		if gerr != nil {
			switch gerr.code {
			case 100, 131008, 131051:
			default:
				t.Fatalf("unexpected code %d: %v", gerr.code, gerr)
			}
			if gerr.status != 400 || gerr.details == "" {
				t.Fatalf("error %+v", gerr)
			}
			return
		}
		if len(digits) < 8 || len(digits) > 15 || strings.TrimPrefix(req.To, "+") != digits || req.MessagingProduct != "whatsapp" {
			t.Fatalf("accepted %+v (digits %q)", req, digits)
		}
		switch req.Type {
		case "text":
			if req.Text == nil || req.Text.Body == "" || utf8.RuneCountInString(req.Text.Body) > 4096 {
				t.Fatalf("accepted text %+v", req.Text)
			}
		case "template":
			if req.Template == nil || req.Template.Name == "" || req.Template.Language.Code == "" {
				t.Fatalf("accepted template %+v", req.Template)
			}
		default:
			t.Fatalf("accepted type %q", req.Type)
		}
	})
}

// FuzzPlaceholders: template bodies never panic the parser or the renderer, and a parsed
// body renders with every placeholder filled.
func FuzzPlaceholders(f *testing.F) {
	f.Add("Hi {{first_name}}, order {{order_number}}")
	f.Add("{{1}} {{2}} {{1}}")
	f.Add("{{ a }}{{")
	f.Add("{{{{a}}}}")
	f.Fuzz(func(t *testing.T, body string) {
		named, positional, err := placeholders(body)
		if err != nil {
			return
		}
		if named != nil && positional > 0 || positional > 100 {
			t.Fatalf("named %v and positional %d", named, positional)
		}
		uses := 0
		if err := scanPlaceholders(body, func(string) error { uses++; return nil }); err != nil {
			t.Fatalf("scan after a successful parse: %v", err)
		}
		vals := make([]string, positional+len(named))
		for i := range vals {
			vals[i] = "\x00"
		}
		out := render(body, named, vals)
		if filled := strings.Count(out, "\x00") - strings.Count(body, "\x00"); filled != uses {
			t.Fatalf("render(%q) = %q: %d of %d placeholders filled", body, out, filled, uses)
		}
	})
}
