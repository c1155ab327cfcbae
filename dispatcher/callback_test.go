package dispatcher

import (
	"strings"
	"testing"
)

func TestCallbackData(t *testing.T) {
	if got := CallbackData("42", 9); got != "42:9" {
		t.Errorf("CallbackData = %q", got)
	}
	for _, c := range []struct {
		in       string
		campaign string
		contact  uint32
		ok       bool
	}{
		{"42:9", "42", 9, true},
		{"spring-sale:4294967295", "spring-sale", 4294967295, true},
		{"a:b:0", "a:b", 0, true},
		{"42:4294967296", "", 0, false},
		{"42:", "", 0, false},
		{":9", "", 0, false},
		{"42", "", 0, false},
		{"42:09", "", 0, false},
		{"42:+9", "", 0, false},
		{"42:-9", "", 0, false},
		{"campaign-42:contact-9", "", 0, false},
		{"", "", 0, false},
		{strings.Repeat("x", 600) + ":1", "", 0, false},
	} {
		camp, contact, ok := ParseCallbackData(c.in)
		if camp != c.campaign || contact != c.contact || ok != c.ok {
			t.Errorf("ParseCallbackData(%q) = %q %d %v, want %q %d %v", c.in, camp, contact, ok, c.campaign, c.contact, c.ok)
		}
		if ok {
			if back := CallbackData(camp, contact); back != c.in {
				t.Errorf("round trip %q -> %q", c.in, back)
			}
		}
	}
}

// FuzzParseCallbackData: whatever parses prints back to the same string.
func FuzzParseCallbackData(f *testing.F) {
	f.Add("42:9")
	f.Add("a:b:4294967295")
	f.Add(":")
	f.Add("42:9:v.b")
	f.Fuzz(func(t *testing.T, s string) {
		camp, contact, variant, ok := ParseCallbackVariant(s)
		if !ok {
			return
		}
		if camp == "" || CallbackDataVariant(camp, contact, variant) != s {
			t.Fatalf("ParseCallbackVariant(%q) = %q %d %q", s, camp, contact, variant)
		}
		if c2, k2, ok2 := ParseCallbackData(s); !ok2 || c2 != camp || k2 != contact {
			t.Fatalf("ParseCallbackData(%q) disagrees with ParseCallbackVariant", s)
		}
	})
}

func TestCallbackDataVariant(t *testing.T) {
	for _, tc := range []struct {
		s        string
		campaign string
		contact  uint32
		variant  string
		ok       bool
	}{
		{"42:9", "42", 9, "", true},
		{"42:9:v.b", "42", 9, "b", true},
		{"a:b:7:v.spring_2", "a:b", 7, "spring_2", true},
		{"42:9:v.", "", 0, "", false},
		{"v.b", "", 0, "", false},
		{"42:v.b", "", 0, "", false},
	} {
		c, k, v, ok := ParseCallbackVariant(tc.s)
		if c != tc.campaign || k != tc.contact || v != tc.variant || ok != tc.ok {
			t.Errorf("ParseCallbackVariant(%q) = %q %d %q %v", tc.s, c, k, v, ok)
		}
	}
	if got := CallbackDataVariant("42", 9, "b"); got != "42:9:v.b" {
		t.Fatalf("CallbackDataVariant = %q", got)
	}
	if got := CallbackDataVariant("42", 9, ""); got != "42:9" {
		t.Fatalf("CallbackDataVariant without variant = %q", got)
	}
}
