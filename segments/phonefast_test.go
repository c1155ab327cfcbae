package segments

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// checkFastPhone fails when the fast path answers s differently from phonenumbers.Parse
// (in any default region) or parsePhone differently from parsePhoneSlow. It reports
// whether the fast path answered.
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
	n, ok := fastNationalNumber(s)
	if !ok {
		return false
	}
	for _, region := range []string{"", "TH", "US", "DE", "BR"} {
		m, err := phonenumbers.Parse(s, region)
		if err != nil {
			t.Fatalf("fast path accepts %q, phonenumbers.Parse(%q) fails: %v", s, region, err)
		}
		if n.GetCountryCode() != m.GetCountryCode() || n.GetNationalNumber() != m.GetNationalNumber() ||
			n.GetItalianLeadingZero() != m.GetItalianLeadingZero() || n.GetNumberOfLeadingZeros() != m.GetNumberOfLeadingZeros() ||
			n.GetExtension() != m.GetExtension() || n.GetRawInput() != m.GetRawInput() {
			t.Fatalf("%q: fast path %v, phonenumbers.Parse(%q) %v", s, n, region, m)
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

func FuzzFastPhone(f *testing.F) {
	for _, s := range []string{"+66812345678", "+66 81 234 5678", "+55-11-98765-4321", "+4402079460000", "+1 800 555 0100", "+39 06 1234 5678", "+800 1234 5678", "+0"} {
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
