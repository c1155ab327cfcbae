package segments

import (
	"regexp"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// The fast path of parsePhone. phonenumbers.Parse spends most of its ~12 µs in
// regular expressions that cannot apply to a number written "+<digits>" with optional
// single spaces or hyphens (extensions need letters, "#", "," or ";"; a second number
// needs "/"). For that shape, Parse reduces to: strip "+", take the 1–3 digit calling
// code, and keep the rest as the national number, unless the region's
// national_prefix_for_parsing matches its start (then Parse may strip a prefix) or it
// starts with 0 (Italian leading zeros). fastNationalNumber does exactly that and
// declines every other case, which goes through Parse. TestFastPhoneMatchesParse and
// FuzzFastPhone compare the two on every calling code.

// phoneTables is what the fast path needs from phonenumbers' metadata, built once.
type phoneTables struct {
	prefix map[string]*regexp.Regexp // region → ^(?:national_prefix_for_parsing), nil when none
}

var loadPhoneTables = sync.OnceValue(func() *phoneTables {
	t := &phoneTables{prefix: map[string]*regexp.Regexp{}}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return nil // no fast path; Parse reports what is wrong
	}
	for _, md := range coll.GetMetadata() {
		id := md.GetId()
		if id == "001" {
			continue
		}
		var re *regexp.Regexp
		if p := md.GetNationalPrefixForParsing(); p != "" {
			if re, err = regexp.Compile("^(?:" + p + ")"); err != nil {
				delete(t.prefix, id)
				continue
			}
		}
		t.prefix[id] = re
	}
	return t
})

// fastNationalNumber returns what phonenumbers.Parse(s, any region) returns when s is
// "+" and digits with optional single spaces or hyphens between digits; ok is false
// when s is not of that shape or when Parse could do more than split off the calling
// code.
func fastNationalNumber(s string) (n *phonenumbers.PhoneNumber, ok bool) {
	if len(s) < 4 || len(s) > 40 || s[0] != '+' {
		return nil, false
	}
	var buf [24]byte
	d := buf[:0]
	prevDigit := false
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if len(d) == cap(d) {
				return nil, false
			}
			d = append(d, c)
			prevDigit = true
		case (c == ' ' || c == '-') && prevDigit && i+1 < len(s):
			prevDigit = false
		default:
			return nil, false
		}
	}
	if !prevDigit || len(d) <= phonenumbers.MIN_LENGTH_FOR_NSN || d[0] == '0' {
		return nil, false
	}
	cc, v := 0, 0
	for i := 1; i <= phonenumbers.MAX_LENGTH_COUNTRY_CODE && i < len(d); i++ {
		v = v*10 + int(d[i-1]-'0')
		if len(phonenumbers.GetRegionCodesForCountryCode(v)) > 0 {
			cc, d = v, d[i:]
			break
		}
	}
	if cc == 0 || len(d) < phonenumbers.MIN_LENGTH_FOR_NSN || len(d) > phonenumbers.MAX_LENGTH_FOR_NSN || d[0] == '0' {
		return nil, false
	}
	t := loadPhoneTables()
	if t == nil {
		return nil, false
	}
	re, known := t.prefix[phonenumbers.GetRegionCodeForCountryCode(cc)]
	if !known || re != nil && re.Match(d) {
		return nil, false
	}
	var nn uint64 // at most MAX_LENGTH_FOR_NSN (17) digits: no overflow
	for _, c := range d {
		nn = nn*10 + uint64(c-'0')
	}
	cc32 := int32(cc)
	return &phonenumbers.PhoneNumber{CountryCode: &cc32, NationalNumber: &nn}, true
}
