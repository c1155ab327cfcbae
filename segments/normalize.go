package segments

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// phone is a normalized, valid phone number.
type phone struct {
	E164   string
	Region string // ISO 3166 region of the number, "" for non-geographic numbers
	Zone   string // IANA zone of the number when phonenumbers knows one, else ""
}

var (
	errNoCountryCode = errors.New("no country code")
	errInvalidPhone  = errors.New("not a valid number")
)

// parsePhone normalizes a phone number written by a person: international (+66 81 234
// 5678, 0066…) or national (081 234 5678) when region is set. It accepts only numbers
// phonenumbers considers valid.
func parsePhone(s, region string) (phone, error) {
	s = strings.TrimSpace(s)
	if p, valid, ok := fastPhone(s); ok {
		if !valid {
			return phone{}, errInvalidPhone
		}
		return p, nil
	}
	if region == "" && !strings.HasPrefix(strings.TrimLeft(s, "'\" ("), "+") {
		return phone{}, errNoCountryCode
	}
	n, err := phonenumbers.Parse(s, region)
	if err != nil {
		return phone{}, err
	}
	return checkPhone(n)
}

// parsePhoneSlow is parsePhone with phonenumbers alone (no fast path, regular
// expressions for validity, GetTimezonesForPrefix for the zone), for tests and
// benchmarks comparing the two.
func parsePhoneSlow(s, region string) (phone, error) {
	s = strings.TrimSpace(s)
	if region == "" && !strings.HasPrefix(strings.TrimLeft(s, "'\" ("), "+") {
		return phone{}, errNoCountryCode
	}
	n, err := phonenumbers.Parse(s, region)
	if err != nil {
		return phone{}, err
	}
	return checkPhoneLib(n)
}

// checkPhone keeps a parsed number when phonenumbers considers it valid: the region
// and validity phonenumbers.GetRegionCodeForNumber and IsValidNumberForRegion give
// (validRegion computes them without regular expressions), then E.164 as
// phonenumbers.Format writes it (+, calling code, national significant number).
func checkPhone(n *phonenumbers.PhoneNumber) (phone, error) {
	reg, ok := validRegion(n)
	if !ok {
		return phone{}, errInvalidPhone
	}
	return phoneOf(n, reg), nil
}

// checkPhoneLib is checkPhone with phonenumbers alone, for tests comparing the two.
func checkPhoneLib(n *phonenumbers.PhoneNumber) (phone, error) {
	reg := phonenumbers.GetRegionCodeForNumber(n)
	if !phonenumbers.IsValidNumberForRegion(n, reg) {
		return phone{}, errInvalidPhone
	}
	p := phone{E164: phonenumbers.Format(n, phonenumbers.E164), Region: reg}
	if p.Region == phonenumbers.UNKNOWN_REGION || p.Region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
		p.Region = ""
	}
	if zones, err := phonenumbers.GetTimezonesForPrefix(p.E164); err == nil {
		p.Zone = pickZone(zones, p.Region)
	}
	return p, nil
}

func phoneOf(n *phonenumbers.PhoneNumber, reg string) phone {
	var buf [32]byte
	b := append(buf[:0], '+')
	b = strconv.AppendInt(b, int64(n.GetCountryCode()), 10)
	if n.GetItalianLeadingZero() && n.GetNumberOfLeadingZeros() > 0 {
		b = append(b, phonenumbers.GetNationalSignificantNumber(n)...)
	} else {
		b = strconv.AppendUint(b, n.GetNationalNumber(), 10)
	}
	p := phone{E164: string(b), Region: reg}
	if p.Region == phonenumbers.UNKNOWN_REGION || p.Region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
		p.Region = ""
	}
	p.Zone = phoneZone(b[1:], p.Region)
	return p
}

// phoneZone is pickZone(phonenumbers.GetTimezonesForPrefix(digits), region) for the
// digits of an E.164 number.
func phoneZone(digits []byte, region string) string {
	if t := loadZoneTrie(); t != nil {
		return t.zone(digits, region)
	}
	zones, err := phonenumbers.GetTimezonesForPrefix(string(digits))
	if err != nil {
		return ""
	}
	return pickZone(zones, region)
}

// regionZone returns the time zone of a region (ISO 3166) when its calling code has
// one zone, or its main zone (capitalZone) among several; "" otherwise (US, RU, ID,
// and regions sharing a calling code without a main zone listed). It is the default
// of contacts whose phone does not settle it, or who have no phone.
func regionZone(region string) string {
	if region == "" {
		return ""
	}
	if z, ok := regionZones.Load(region); ok {
		return z.(string)
	}
	z := ""
	if cc := phonenumbers.GetCountryCodeForRegion(region); cc != 0 {
		zones, err := phonenumbers.GetTimezonesForPrefix("+" + strconv.Itoa(cc))
		switch {
		case err != nil:
		case len(phonenumbers.GetRegionCodesForCountryCode(cc)) == 1:
			z = pickZone(zones, region)
		case slices.Contains(zones, capitalZone[region]):
			z = capitalZone[region] // GB among GB, GG, IM and JE
		}
	}
	regionZones.Store(region, z)
	return z
}

var regionZones sync.Map // region → zone, "" for none

// capitalZone settles numbers whose prefix phonenumbers maps to several zones of the
// same country (UK mobiles: Guernsey, Isle of Man, London) on the zone most people use.
var capitalZone = map[string]string{
	"GB": "Europe/London", "FI": "Europe/Helsinki", "IT": "Europe/Rome", "NO": "Europe/Oslo",
	"PT": "Europe/Lisbon", "ES": "Europe/Madrid", "DK": "Europe/Copenhagen", "FR": "Europe/Paris",
	"NL": "Europe/Amsterdam", "MY": "Asia/Kuala_Lumpur", "MA": "Africa/Casablanca",
}

// pickZone chooses the default time zone of a number: its only zone, or the country's
// main zone when that is a candidate; "" when the number spans zones (a US toll-free
// number, an Indonesian landline without area), so that quiet-hours policy can apply
// its own fallback rather than a guess.
func pickZone(zones []string, region string) string {
	if len(zones) == 1 {
		if zones[0] == phonenumbers.UNKNOWN_TIMEZONE {
			return ""
		}
		return zones[0]
	}
	if c, ok := capitalZone[region]; ok {
		for _, z := range zones {
			if z == c {
				return c
			}
		}
	}
	return ""
}

// waPhone normalizes a lookup key: E.164, or WhatsApp wa_id digits (country code and
// number without "+"). It returns the E.164 candidates to try: WhatsApp reports some
// Brazilian mobiles without their ninth digit and Mexican mobiles with the old "1".
func waPhone(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "whatsapp:")
	if s == "" {
		return nil, errors.New("empty phone")
	}
	if s[0] != '+' {
		s = "+" + s
	}
	n, err := phonenumbers.Parse(s, "")
	if err != nil {
		return nil, err
	}
	e := phonenumbers.Format(n, phonenumbers.E164)
	out := []string{e}
	switch {
	case strings.HasPrefix(e, "+55") && len(e) == 13: // +55 DD NNNNNNNN: mobile without the 9
		if c := e[5]; c >= '6' && c <= '9' {
			out = append(out, e[:5]+"9"+e[5:])
		}
	case strings.HasPrefix(e, "+521") && len(e) == 14: // +52 1 DD NNNNNNNN: pre-2019 mobile form
		out = append(out, "+52"+e[4:])
	}
	return out, nil
}

// normTag normalizes a tag as imports and the API write it: lower case, ASCII letters and
// digits, "_" and "-"; spaces and other ASCII punctuation become "_". Non-ASCII letters
// are not guessed at: the tag is rejected.
func normTag(s string) (string, error) {
	if isNormTag(s) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	under := false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
			fallthrough
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_':
			if r == '_' && under {
				continue
			}
			under = r == '_'
			b.WriteRune(r)
		case r < 0x80:
			if !under && b.Len() > 0 {
				b.WriteByte('_')
				under = true
			}
		default:
			return "", fmt.Errorf("tag %q: tags may use letters a-z, digits, \"_\" and \"-\"", s)
		}
	}
	t := strings.Trim(b.String(), "_")
	if strings.Trim(t, "_-") == "" {
		return "", fmt.Errorf("tag %q has no letters or digits", s)
	}
	if len(t) > maxNameLen {
		return "", fmt.Errorf("tag %q is longer than %d characters", s, maxNameLen)
	}
	return t, nil
}

// isNormTag reports whether normTag would return s unchanged: a-z, 0-9, "-" and
// single "_" inside, at most maxNameLen, not only "-".
func isNormTag(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] == '_' || s[len(s)-1] == '_' {
		return false
	}
	alnum := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			alnum = true
		case c == '-':
		case c == '_':
			if s[i-1] == '_' {
				return false
			}
		default:
			return false
		}
	}
	return alnum
}

// splitTags splits a cell of tags separated by ";", "|" or ",".
func splitTags(cell string) []string {
	return strings.FieldsFunc(cell, func(r rune) bool { return r == ';' || r == '|' || r == ',' })
}

// normLocale normalizes a locale to language[-REGION] (th, pt-BR) and returns its
// language, the indexed part.
func normLocale(s string) (locale, lang string, err error) {
	parts := strings.FieldsFunc(strings.TrimSpace(s), func(r rune) bool { return r == '-' || r == '_' })
	if len(parts) == 0 || len(parts[0]) < 2 || len(parts[0]) > 3 || !isAlpha(parts[0]) {
		return "", "", fmt.Errorf("locale %q: expected a language code such as th or pt-BR", s)
	}
	lang = strings.ToLower(parts[0])
	out := []string{lang}
	for _, p := range parts[1:] {
		if len(p) < 2 || len(p) > 8 || !isAlnum(p) {
			return "", "", fmt.Errorf("locale %q: expected a language code such as th or pt-BR", s)
		}
		switch {
		case len(p) == 2 && isAlpha(p):
			p = strings.ToUpper(p)
		case len(p) == 4 && isAlpha(p):
			p = strings.ToUpper(p[:1]) + strings.ToLower(p[1:])
		default:
			p = strings.ToLower(p)
		}
		out = append(out, p)
	}
	return strings.Join(out, "-"), lang, nil
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z') {
			return false
		}
	}
	return true
}

// normEmail lower-cases and checks an email address (a bare address, no display name).
func normEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return "", fmt.Errorf("email %q is not an address like name@example.com", s)
	}
	return strings.ToLower(s), nil
}

// zoneCache validates IANA zone names with time.LoadLocation, which reads the zone
// database on every call; an import sees few distinct zones, so answers are cached (up
// to a bound, then checked each time).
type zoneCache struct {
	mu sync.Mutex
	m  map[string]bool
}

func (z *zoneCache) valid(name string) bool {
	if name == "" || name == "Local" {
		return false
	}
	z.mu.Lock()
	ok, hit := z.m[name]
	z.mu.Unlock()
	if hit {
		return ok
	}
	_, err := time.LoadLocation(name)
	ok = err == nil
	z.mu.Lock()
	if z.m == nil {
		z.m = map[string]bool{}
	}
	if len(z.m) < 4096 {
		z.m[name] = ok
	}
	z.mu.Unlock()
	return ok
}

// normName normalizes a CSV header or custom attribute name: lower case, runs of spaces
// and ASCII punctuation become "_" ("WhatsApp Opt-In" → whatsapp_opt_in). Non-ASCII
// letters are kept (and later refused as attribute names).
func normName(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + 'a' - 'A')
			under = false
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			under = false
		case r < 0x80:
			if !under {
				b.WriteByte('_')
				under = true
			}
		default:
			b.WriteRune(r)
			under = false
		}
	}
	return strings.Trim(b.String(), "_")
}

// validAttrName reports whether n (already normalized) can name a custom attribute:
// what a template can reference as {{ n }}.
func validAttrName(n string) bool {
	if n == "" || len(n) > maxNameLen {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// parseBool reads an opted_in cell: 1 true, 0 false, -1 empty (not given).
func parseBool(s string) (int8, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return -1, true
	case "true", "yes", "y", "1", "t":
		return 1, true
	case "false", "no", "n", "0", "f":
		return 0, true
	}
	return -1, false
}
