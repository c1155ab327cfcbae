package email

import (
	"regexp"
	"strings"
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
		id := NewMessageID(tc.campaign, tc.contact, tc.variant, "shop.example", testKey)
		if !dotAtom.MatchString(id) {
			t.Errorf("%q is not a dot-atom Message-ID", id)
		}
		key, variant, ok := VerifyMessageID("<"+id+">", testKey)
		if !ok || key != (dispatcher.Key{Campaign: tc.campaign, Contact: tc.contact}) || variant != tc.variant {
			t.Errorf("VerifyMessageID(%q) = %+v %q %v, want %q %d %q", id, key, variant, ok, tc.campaign, tc.contact, tc.variant)
		}
	}
	if NewMessageID("1", 1, "", "d", testKey) == NewMessageID("1", 1, "", "d", testKey) {
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

// A Message-ID names a (campaign, contact) only when its signature holds: one forged for
// a guessed contact, altered, made under another key, or made before ids were signed
// (though it parses) names nothing a report may act on.
func TestMessageIDForgeries(t *testing.T) {
	id := NewMessageID("42", 9, "b", "shop.example", testKey)
	if _, _, ok := VerifyMessageID(id, testKey); !ok {
		t.Fatalf("%q does not verify", id)
	}
	at := strings.LastIndexByte(id, '@')
	random := id[at-signedLen : at]
	flipped := []byte(random)
	flipped[len(flipped)-1] = map[bool]byte{true: 'b', false: 'a'}[flipped[len(flipped)-1] == 'a']
	for name, forged := range map[string]string{
		"another contact":       strings.Replace(id, ".9.", ".10.", 1),
		"another campaign":      strings.Replace(id, "herald.42.", "herald.43.", 1),
		"no variant":            strings.Replace(id, ".b.", ".", 1),
		"a changed signature":   id[:at-signedLen] + string(flipped) + id[at:],
		"an unsigned id":        "herald.42.9.b.k3vq7ztm2xw4hy5a@shop.example",
		"a guessed random part": "herald.42.9.b.aaaaaaaaaaaaaaaaaaaaaaaa@shop.example",
	} {
		if _, _, ok := VerifyMessageID(forged, testKey); ok {
			t.Errorf("%s (%q) verifies", name, forged)
		}
	}
	if _, _, ok := VerifyMessageID(id, MessageKey("the key of another Herald install")); ok {
		t.Error("an id verifies under another key")
	}
	if _, _, ok := ParseMessageID("herald.42.9.b.k3vq7ztm2xw4hy5a@shop.example"); !ok {
		t.Error("an id made before ids were signed no longer parses")
	}
}
