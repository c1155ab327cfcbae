package segments

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// checkFastPhone fails when the fast path answers s differently from phonenumbers
// alone (Parse in any default region, then checkPhoneLib) or parsePhone differently
// from parsePhoneSlow. It reports whether the fast path answered.
func checkFastPhone(t testing.TB, s string) bool {
	t.Helper()
	s = strings.TrimSpace(s) // as parsePhone does
	for _, region := range []string{"", "TH", "US", "BR"} {
		p, err := parsePhone(s, region)
		q, qerr := parsePhoneSlow(s, region)
		if p != q || (err == nil) != (qerr == nil) {
			t.Fatalf("parsePhone(%q, %q) = %+v, %v; without the fast path %+v, %v", s, region, p, err, q, qerr)
		}
	}
	p, valid, ok := fastPhone(s)
	if !ok {
		return false
	}
	for _, region := range []string{"", "TH", "US", "DE", "BR"} {
		n, err := phonenumbers.Parse(s, region)
		if err != nil {
			t.Fatalf("fast path accepts %q, phonenumbers.Parse(%q) fails: %v", s, region, err)
		}
		if n.GetExtension() != "" || n.GetItalianLeadingZero() {
			t.Fatalf("fast path accepts %q, phonenumbers.Parse(%q) = %v", s, region, n)
		}
		q, err := checkPhoneLib(n)
		if p != q || valid != (err == nil) {
			t.Fatalf("%q: fast path %+v (valid %v), phonenumbers (default region %q) %+v, %v", s, p, valid, region, q, err)
		}
	}
	return true
}

// The fast path gives what phonenumbers.Parse gives, for random digits after every
// calling code phonenumbers knows, at every national length, written plain, with
// spaces and with hyphens, and for every example number of every region and type.
func TestFastPhoneMatchesParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	var inputs []string
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		for l := 1; l <= 17; l++ {
			for range 3 {
				var b strings.Builder
				for range l {
					b.WriteByte(byte('0' + rng.IntN(10)))
				}
				nsn := b.String()
				inputs = append(inputs, fmt.Sprintf("+%d%s", cc, nsn), fmt.Sprintf("+%d %s", cc, nsn))
				if l > 4 {
					inputs = append(inputs, fmt.Sprintf("+%d-%s-%s", cc, nsn[:2], nsn[2:]))
				}
			}
		}
	}
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.PREMIUM_RATE, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range types {
			if n := phonenumbers.GetExampleNumberForType(region, typ); n != nil {
				inputs = append(inputs, phonenumbers.Format(n, phonenumbers.E164), phonenumbers.Format(n, phonenumbers.INTERNATIONAL))
			}
		}
	}
	inputs = append(inputs, "+", "+1", "+12", "+0123456789", "+66 ", "+66  812345678", "+66-", "+66 81 234 5678 ", "++66812345678",
		"+44 020 7946 0000", "+4402079460000", "+39 06 1234 5678", "+7 8 495 123 4567", "+55 0 11 98765 4321", "+800 1234 5678")
	if raceEnabled {
		inputs = sample(inputs, 8)
	}
	fast, valid := 0, 0
	for _, s := range inputs {
		if checkFastPhone(t, s) {
			fast++
			if _, err := parsePhone(s, ""); err == nil {
				valid++
			}
		}
	}
	t.Logf("%d inputs, %d answered by the fast path (%d of them valid numbers)", len(inputs), fast, valid)
	if fast < len(inputs)/3 || valid < 500/8 {
		t.Fatalf("the fast path answered only %d of %d inputs (%d valid): it is not being exercised", fast, len(inputs), valid)
	}
}

// The fast path answers the shapes imports mostly see, with at most the E.164 string
// allocated.
func TestFastPhoneAnswers(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want phone
	}{
		{"+66812345678", phone{"+66812345678", "TH", "Asia/Bangkok"}},
		{"+66 81 234 5678", phone{"+66812345678", "TH", "Asia/Bangkok"}},
		{"+6281234567890", phone{"+6281234567890", "ID", "Asia/Jakarta"}},
		{"+55 11 98765-4321", phone{"+5511987654321", "BR", "America/Sao_Paulo"}},
		{"+49 151 12345678", phone{"+4915112345678", "DE", "Europe/Berlin"}},
		{"+44 7400 123456", phone{"+447400123456", "GB", "Europe/London"}},
		{"+1 201-555-0123", phone{"+12015550123", "US", "America/New_York"}},
		{"+1 268 464 1234", phone{"+12684641234", "AG", "America/Antigua"}},
		{"+81 90 1234 5678", phone{"+819012345678", "JP", "Asia/Tokyo"}}, // national_prefix_for_parsing by regexp
	} {
		t.Run(tt.in, func(t *testing.T) {
			p, valid, ok := fastPhone(tt.in)
			if !ok || !valid || p != tt.want {
				t.Fatalf("fastPhone = %+v, valid %v, ok %v; want %+v", p, valid, ok, tt.want)
			}
			checkFastPhone(t, tt.in)
			if raceEnabled {
				return
			}
			if a := testing.AllocsPerRun(20, func() { parsePhone(tt.in, "") }); a > 1 {
				t.Errorf("parsePhone allocates %v times", a)
			}
		})
	}
}

// Every region's national_prefix_for_parsing compiles to a digit DFA, and its prefix
// test is regexp's ^(?:pattern) on random digits and on example numbers.
func TestNationalPrefixDFA(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for region, md := range regionMetadata() {
		p := md.GetNationalPrefixForParsing()
		if p == "" {
			continue
		}
		d, ok := compileDigitDFA(p)
		if !ok {
			t.Errorf("%s: national_prefix_for_parsing %s does not compile to a digit DFA", region, p)
			continue
		}
		re := regexp.MustCompile("^(?:" + p + ")")
		var inputs []string
		for l := range 18 {
			for range 20 {
				inputs = append(inputs, randomDigits(rng, l))
			}
		}
		for _, typ := range []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE} {
			if n := phonenumbers.GetExampleNumberForType(region, typ); n != nil {
				nsn := phonenumbers.GetNationalSignificantNumber(n)
				inputs = append(inputs, nsn, md.GetNationalPrefix()+nsn, "0"+nsn, "1"+nsn)
			}
		}
		for _, s := range inputs {
			if got, want := d.prefix([]byte(s)), re.MatchString(s); got != want {
				t.Fatalf("%s: %s on %q: DFA %v, regexp %v", region, p, s, got, want)
			}
		}
	}
}

func FuzzFastPhone(f *testing.F) {
	for _, s := range []string{"+66812345678", "+66 81 234 5678", "+55-11-98765-4321", "+4402079460000", "+1 800 555 0100", "+39 06 1234 5678", "+800 1234 5678", "+0",
		"+81 90 1234 5678", "+1 268 464 1234", "+44 7624 123456", "+7 701 234 5678", "+262 692 12 34 56"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkFastPhone(t, s)
	})
}

// sample keeps every nth input.
func sample[T any](in []T, n int) []T {
	var out []T
	for i := 0; i < len(in); i += n {
		out = append(out, in[i])
	}
	return out
}
