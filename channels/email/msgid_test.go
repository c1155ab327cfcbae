package email

import (
	"regexp"
	"testing"

	"github.com/herald-dev/herald/dispatcher"
)

// dotAtom is RFC 5322's dot-atom-text @ a domain: what a Message-ID must look like.
var dotAtom = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~-]+)*@[A-Za-z0-9.-]+$`)

func TestMessageIDRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		campaign string
		contact  uint32
		variant  string
	}{
		{"42", 9, ""},
		{"42", 0, "b"},
		{"spring-sale_2026", 4294967295, ""},
		{"a.b c<d>@e=f", 7, "v.1"},
		{"ünïcode", 1, "ß"},
	} {
		id := NewMessageID(tc.campaign, tc.contact, tc.variant, "shop.example")
		if !dotAtom.MatchString(id) {
			t.Errorf("%q is not a dot-atom Message-ID", id)
		}
		key, variant, ok := ParseMessageID("<" + id + ">")
		if !ok || key != (dispatcher.Key{Campaign: tc.campaign, Contact: tc.contact}) || variant != tc.variant {
			t.Errorf("ParseMessageID(%q) = %+v %q %v, want %q %d %q", id, key, variant, ok, tc.campaign, tc.contact, tc.variant)
		}
	}
	if NewMessageID("1", 1, "", "d") == NewMessageID("1", 1, "", "d") {
		t.Error("two Message-IDs are equal")
	}
	for _, bad := range []string{"", "<x@y>", "herald.42.9@d", "herald.42.09.abcdefghijklmnop@d", "herald..9.abcdefghijklmnop@d",
		"herald.4=412.9.abcdefghijklmnop@d", "herald.4=3.9.abcdefghijklmnop@d", "herald.42.9.short@d", "herald.42.-9.abcdefghijklmnop@d",
		"herald.42.4294967296.abcdefghijklmnop@d", "herald.a.b.c.d.e@d"} {
		if _, _, ok := ParseMessageID(bad); ok {
			t.Errorf("ParseMessageID(%q) accepted", bad)
		}
	}
}
