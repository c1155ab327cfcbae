package templates

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSMSSegments(t *testing.T) {
	for _, tc := range []struct {
		text string
		segs int
		enc  string
	}{
		{"", 0, EncodingGSM7},
		{strings.Repeat("a", 160), 1, EncodingGSM7},
		{strings.Repeat("a", 161), 2, EncodingGSM7},
		{strings.Repeat("a", 306), 2, EncodingGSM7},
		{strings.Repeat("a", 307), 3, EncodingGSM7},
		{strings.Repeat("€", 80), 1, EncodingGSM7},                                  // extension characters count twice
		{strings.Repeat("€", 81), 2, EncodingGSM7},                                  // 162 septets
		{strings.Repeat("a", 152) + "€" + strings.Repeat("a", 10), 2, EncodingGSM7}, // the pair moves to part 2
		{strings.Repeat("ã", 70), 1, EncodingUCS2},
		{strings.Repeat("ã", 71), 2, EncodingUCS2},
		{strings.Repeat("ã", 134), 2, EncodingUCS2},
		{strings.Repeat("ã", 135), 3, EncodingUCS2},
		{strings.Repeat("🎉", 35), 1, EncodingUCS2}, // surrogate pairs: two units each
		{strings.Repeat("🎉", 36), 2, EncodingUCS2},
		{"Olá “amigo”", 1, EncodingUCS2}, // curly quotes are not GSM-7
		{"Hi {there} [x] ~ ^ | \\", 1, EncodingGSM7},
	} {
		segs, enc := SMSSegments(tc.text)
		if segs != tc.segs || enc != tc.enc {
			t.Errorf("%.30q (%d chars): %d %s, want %d %s", tc.text, utf8.RuneCountInString(tc.text), segs, enc, tc.segs, tc.enc)
		}
	}
}

func TestSMSLimitAtSave(t *testing.T) {
	src := "name: s\nchannel: sms\nlocale: th_TH\nkind: text\nbody: \"" + strings.Repeat("ข", 700) + "\"\n"
	_, err := ParseFile([]byte(src), "s.yaml")
	if err == nil || !strings.Contains(err.Error(), "s.yaml:5: body: with the example values: too long: 11 UCS-2 segments; the limit is 10") {
		t.Fatalf("got %v", err)
	}
	bad := "name: s\nchannel: sms\nlocale: th_TH\nkind: whatsapp_template\nwhatsapp: {name: x, category: UTILITY}\n"
	if _, err := ParseFile([]byte(bad), "s.yaml"); err == nil || !strings.Contains(err.Error(), "kind whatsapp_template is for channel whatsapp, not sms") {
		t.Fatalf("whatsapp_template on sms: %v", err)
	}
	email := "name: e\nchannel: email\nlocale: en_US\nkind: email\nemail:\n  subject: \"{{ s }}\"\n"
	if _, err := ParseFile([]byte(email), "e.yaml"); err == nil || !strings.Contains(err.Error(), "e.yaml:6: email.text: required: the plain-text part") {
		t.Errorf("email without text: %v", err)
	}
	email += "  text: hi\nvariables:\n  s: {example: \"" + strings.Repeat("x", 300) + "\"}\n"
	if _, err := ParseFile([]byte(email), "e.yaml"); err == nil || !strings.Contains(err.Error(), "e.yaml:6: email.subject: with the example values") ||
		!strings.Contains(err.Error(), "300 characters; the limit is 255") {
		t.Errorf("email with a long subject: %v", err)
	}
}

// FuzzSMSSegments: no panic; more text never needs fewer segments; the count matches
// the character budget.
func FuzzSMSSegments(f *testing.F) {
	f.Add("hello €")
	f.Add("Olá 🎉")
	f.Fuzz(func(t *testing.T, s string) {
		n, enc := SMSSegments(s)
		m, _ := SMSSegments(s + s)
		if m < n {
			t.Fatalf("%q: %d segments, doubled %d", s, n, m)
		}
		if s != "" && n < 1 || enc != EncodingGSM7 && enc != EncodingUCS2 {
			t.Fatalf("%q: %d %s", s, n, enc)
		}
	})
}
