package templates

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/text/currency"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	xnumber "golang.org/x/text/number"
)

// Locale-aware number and currency filters:
//
//	{{ points | number: locale }}               1.234.567 (de_DE), 1,234,567 (en_US)
//	{{ points | number: "pt_BR", 2 }}           1.234.567,00
//	{{ price | currency: "BRL", locale }}        R$ 1.234,50 (pt_BR), 1.234,50 € (EUR, de_DE)
//	{{ price | currency: "", locale }}          the currency of the locale's region
//
// A locale is a BCP 47 tag or a POSIX-style one (th_TH, id-ID, pt-BR, de); an empty or
// unknown one formats as en_US, so a contact with a bad profile still gets a message:
// give the variable a default (locale: {default: th_TH}). Separators come from CLDR
// (golang.org/x/text); the symbol goes before the amount except in locales that write
// it after (de, fr, es, it, ...). Grouping is always by thousands.

type localeFormat struct {
	group, decimal string
	region         language.Region
	symbolAfter    bool
	space          bool // between symbol and amount
}

var localeCache sync.Map // normalized locale -> *localeFormat

// symbolAfterLangs write the currency symbol after the amount, with a space.
var symbolAfterLangs = map[string]bool{"de": true, "fr": true, "es": true, "it": true, "pl": true, "cs": true, "sk": true,
	"ru": true, "uk": true, "sv": true, "da": true, "fi": true, "nb": true, "no": true, "vi": true, "hu": true, "ro": true, "bg": true, "hr": true, "el": true}

// spacedBeforeLangs write the symbol before the amount, with a space.
var spacedBeforeLangs = map[string]bool{"pt": true, "nl": true, "id": true, "ms": true}

func lookupLocale(s string) *localeFormat {
	key := strings.ReplaceAll(strings.TrimSpace(s), "_", "-")
	if f, ok := localeCache.Load(key); ok {
		return f.(*localeFormat)
	}
	tag, err := language.Parse(key)
	if err != nil || len(key) > 35 {
		if key == "en-US" {
			panic("templates: en-US does not parse")
		}
		return lookupLocale("en-US")
	}
	p := message.NewPrinter(tag)
	sample := p.Sprint(xnumber.Decimal(1234567.5, xnumber.Scale(1)))
	// sample is 1<g>234<g>567<d>5: take the separators between the digits
	f := &localeFormat{group: ",", decimal: "."}
	if parts := splitDigits(sample); len(parts) == 4 {
		f.group, f.decimal = parts[1], parts[3]
		if parts[1] != parts[2] {
			f.group = parts[1] // e.g. lakh grouping: keep the thousands one
		}
	}
	f.region, _ = tag.Region()
	base, _ := tag.Base()
	pt := tag == language.MustParse("pt-PT")
	f.symbolAfter = symbolAfterLangs[base.String()] || pt
	f.space = f.symbolAfter || spacedBeforeLangs[base.String()]
	if len(f.group) > 8 || len(f.decimal) > 8 {
		f.group, f.decimal = ",", "."
	}
	if n := 0; true {
		localeCache.Range(func(any, any) bool { n++; return n < 4096 })
		if n < 4096 { // bounded: locales come from contact data
			localeCache.Store(key, f)
		}
	}
	return f
}

// splitDigits splits "1,234,567.5" into the separators between digit runs:
// ["", ",", ",", "."] for runs 1, 234, 567, 5.
func splitDigits(s string) []string {
	var seps []string
	cur := ""
	inDigits := false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if !inDigits {
				seps = append(seps, cur)
				cur = ""
			}
			inDigits = true
			continue
		}
		inDigits = false
		cur += string(r)
	}
	return seps
}

// formatLocal formats x with dec decimals (half away from zero) and the locale's
// separators.
func formatLocal(x number, dec int, f *localeFormat) (string, error) {
	v := x.f()
	if math.IsInf(v, 0) || math.IsNaN(v) || math.Abs(v) > 1e18 {
		return "", fmt.Errorf("cannot format %v", v)
	}
	var s string
	if !x.float && dec == 0 {
		s = strconv.FormatInt(x.i, 10)
	} else {
		p := math.Pow10(dec)
		if r := math.Round(v*p) / p; !math.IsInf(r, 0) && !math.IsNaN(r) {
			v = r
		}
		s = strconv.FormatFloat(v, 'f', dec, 64)
	}
	out, err := delimit(s, f.group, f.decimal)
	if err != nil {
		return "", err
	}
	return out.(string), nil
}

func numberFilter(in any, a []any) (any, error) {
	x, err := toNumber(in)
	if err != nil {
		return nil, err
	}
	f := lookupLocale(stringArg(a, 0, ""))
	def := 0
	if x.float {
		def = 2
	}
	dec, err := intArg(a, 1, def)
	if err != nil {
		return nil, err
	}
	return formatLocal(x, max(0, min(dec, 10)), f)
}

func currencyFilter(in any, a []any) (any, error) {
	x, err := toNumber(in)
	if err != nil {
		return nil, err
	}
	f := lookupLocale(stringArg(a, 1, ""))
	code := strings.ToUpper(strings.TrimSpace(stringArg(a, 0, "")))
	var unit currency.Unit
	if code == "" {
		var ok bool
		if unit, ok = currency.FromRegion(f.region); !ok {
			unit = currency.USD
		}
	} else if unit, err = currency.ParseISO(code); err != nil {
		return nil, fmt.Errorf("unknown currency %q (use an ISO 4217 code like THB, IDR, BRL, EUR, USD)", truncate(code, 10, "..."))
	}
	dec, _ := currency.Standard.Rounding(unit)
	amount, err := formatLocal(x, dec, f)
	if err != nil {
		return nil, err
	}
	sym := currencySymbol(unit)
	neg := strings.HasPrefix(amount, "-")
	amount = strings.TrimPrefix(amount, "-")
	sep := ""
	if f.space {
		sep = " "
	}
	var out string
	if f.symbolAfter {
		out = amount + sep + sym
	} else {
		out = sym + sep + amount
	}
	if neg {
		out = "-" + out
	}
	return out, nil
}

var symbols sync.Map // currency.Unit -> string

// currencySymbol is the narrow symbol of a currency in CLDR's root locale (฿, Rp, R$,
// €, $), or its ISO code.
func currencySymbol(u currency.Unit) string {
	if s, ok := symbols.Load(u); ok {
		return s.(string)
	}
	s := message.NewPrinter(language.Und).Sprint(currency.NarrowSymbol(u.Amount(0)))
	s = strings.TrimSpace(strings.TrimRightFunc(s, func(r rune) bool { return r == '0' || r == '.' || r == ',' || r == ' ' || r == '\u00a0' }))
	if s == "" {
		s = u.String()
	}
	symbols.Store(u, s)
	return s
}

// checkCurrencyLiteral validates a literal currency code at parse time.
func checkCurrencyLiteral(i int, lit string) error {
	if i != 0 || lit == "" {
		return nil
	}
	if _, err := currency.ParseISO(strings.ToUpper(lit)); err != nil {
		return fmt.Errorf("unknown currency %q (use an ISO 4217 code like THB, IDR, BRL, EUR, USD)", truncate(lit, 10, "..."))
	}
	return nil
}
