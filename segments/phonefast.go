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
// starts with 0 (Italian leading zeros). fastPhone does exactly that, then what
// checkPhone does with the result (region and validity, E.164, time zone) on the
// digits themselves, from tables built once per calling code; it declines every other
// case, which goes through Parse and checkPhone. TestFastPhoneMatchesParse and
// FuzzFastPhone compare it with phonenumbers on every calling code.

// callingCode is what the fast path needs of one calling code, compiled on first use.
type callingCode struct {
	once     sync.Once
	ok       bool           // false: numbers go through Parse (non-geographic, patterns that do not compile)
	regions  []string       // phonenumbers.GetRegionCodesForCountryCode, main region first
	rules    []*regionRules // of each region
	prefix   *digitDFA      // the main region's national_prefix_for_parsing; nil when none or prefixRE
	prefixRE *regexp.Regexp // ^(?:national_prefix_for_parsing) when it does not compile to a DFA
}

// callingCodes indexes the calling codes phonenumbers knows by value: they have 1–3
// digits and do not start with 0, so each value is one code.
var callingCodes = sync.OnceValue(func() *[1000]*callingCode {
	var t [1000]*callingCode
	for cc := 1; cc < len(t); cc++ {
		if len(phonenumbers.GetRegionCodesForCountryCode(cc)) > 0 {
			t[cc] = &callingCode{}
		}
	}
	return &t
})

func (c *callingCode) load(cc int) {
	c.regions = phonenumbers.GetRegionCodesForCountryCode(cc)
	md := regionMetadata()[c.regions[0]] // nil for "001": non-geographic numbers go through Parse
	if md == nil {
		return
	}
	if p := md.GetNationalPrefixForParsing(); p != "" {
		var ok bool
		if c.prefix, ok = compileDigitDFA(p); !ok {
			re, err := regexp.Compile("^(?:" + p + ")")
			if err != nil {
				return
			}
			c.prefixRE = re
		}
	}
	for _, rc := range c.regions {
		r := rulesFor(rc)
		if r == nil {
			return
		}
		c.rules = append(c.rules, r)
	}
	c.ok = true
}

// fastPhone answers parsePhone(s, any region) when s is "+" and digits with optional
// single spaces or hyphens between digits: the number, or valid false when
// phonenumbers does not consider it a valid number. ok is false when s is not of that
// shape or when Parse could do more than split off the calling code.
func fastPhone(s string) (p phone, valid, ok bool) {
	if len(s) < 4 || len(s) > 40 || s[0] != '+' {
		return phone{}, false, false
	}
	var buf [25]byte // E.164: "+" and at most 24 digits
	buf[0] = '+'
	n := 1
	prevDigit := false
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n == len(buf) {
				return phone{}, false, false
			}
			buf[n] = c
			n++
			prevDigit = true
		case (c == ' ' || c == '-') && prevDigit && i+1 < len(s):
			prevDigit = false
		default:
			return phone{}, false, false
		}
	}
	digits := buf[1:n]
	if !prevDigit || len(digits) <= phonenumbers.MIN_LENGTH_FOR_NSN || digits[0] == '0' {
		return phone{}, false, false
	}
	codes := callingCodes()
	var c *callingCode
	cc, nsn := 0, digits
	for i := 1; i <= phonenumbers.MAX_LENGTH_COUNTRY_CODE && i < len(digits); i++ {
		cc = cc*10 + int(digits[i-1]-'0')
		if c = codes[cc]; c != nil {
			nsn = digits[i:]
			break
		}
	}
	if c == nil || len(nsn) < phonenumbers.MIN_LENGTH_FOR_NSN || len(nsn) > phonenumbers.MAX_LENGTH_FOR_NSN || nsn[0] == '0' {
		return phone{}, false, false
	}
	c.once.Do(func() { c.load(cc) })
	if !c.ok || c.prefix != nil && c.prefix.prefix(nsn) || c.prefixRE != nil && c.prefixRE.MatchString(string(nsn)) {
		return phone{}, false, false
	}
	zones := loadZoneTrie()
	if zones == nil {
		return phone{}, false, false
	}
	region, valid := regionOf(c.regions, c.rules, nsn)
	if !valid {
		return phone{}, false, true
	}
	// The national number has no leading zero: E.164 is "+" and the digits as written.
	return phone{E164: string(buf[:n]), Region: region, Zone: zones.zone(digits, region)}, true, true
}
