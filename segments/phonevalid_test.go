package segments

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// checkValidity fails when validRegion answers a number differently from phonenumbers.
func checkValidity(t testing.TB, n *phonenumbers.PhoneNumber) bool {
	t.Helper()
	wantReg := phonenumbers.GetRegionCodeForNumber(n)
	want := phonenumbers.IsValidNumberForRegion(n, wantReg)
	reg, valid := validRegion(n)
	if valid != want || want && reg != wantReg {
		t.Fatalf("+%d %d (leading zeros %d): validRegion = %q %v, phonenumbers %q %v",
			n.GetCountryCode(), n.GetNationalNumber(), n.GetNumberOfLeadingZeros(), reg, valid, wantReg, want)
	}
	if want {
		p, err := checkPhone(n)
		q, qerr := checkPhoneLib(n)
		if err != nil || qerr != nil || p != q {
			t.Fatalf("checkPhone = %+v %v, with phonenumbers alone %+v %v", p, err, q, qerr)
		}
	}
	return want
}

func numberOf(cc int, nsn string) *phonenumbers.PhoneNumber {
	v, _ := strconv.ParseUint(nsn, 10, 64)
	cc32 := int32(cc)
	n := &phonenumbers.PhoneNumber{CountryCode: &cc32, NationalNumber: &v}
	zeros := 0
	for zeros < len(nsn)-1 && nsn[zeros] == '0' {
		zeros++
	}
	if zeros > 0 {
		t, z := true, int32(zeros)
		n.ItalianLeadingZero, n.NumberOfLeadingZeros = &t, &z
	}
	return n
}

// Validity and region without regular expressions agree with phonenumbers on every
// example number of every region and type, on each of them with digits changed,
// dropped and added, and on random digits after every calling code.
func TestPhoneValidityMatchesPhonenumbers(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER,
		phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	total, valid, seen := 0, 0, 0
	check := func(cc int, nsn string) {
		if seen++; nsn == "" || len(nsn) > 17 || raceEnabled && seen%4 != 0 {
			return
		}
		total++
		if checkValidity(t, numberOf(cc, nsn)) {
			valid++
		}
	}
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range types {
			n := phonenumbers.GetExampleNumberForType(region, typ)
			if n == nil {
				continue
			}
			cc, nsn := int(n.GetCountryCode()), phonenumbers.GetNationalSignificantNumber(n)
			check(cc, nsn)
			for i := range len(nsn) {
				for range 2 {
					b := []byte(nsn)
					b[i] = byte('0' + rng.IntN(10))
					check(cc, string(b))
				}
				check(cc, nsn[:i]+nsn[i+1:])
				check(cc, nsn[:i]+strconv.Itoa(rng.IntN(10))+nsn[i:])
			}
		}
	}
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		for l := 1; l <= 17; l++ {
			for range 4 {
				b := make([]byte, l)
				for i := range b {
					b[i] = byte('0' + rng.IntN(10))
				}
				check(cc, string(b))
			}
		}
	}
	for _, cc := range []int{0, 999, 42, 1, 39, 800, 882} {
		check(cc, "1234567890")
	}
	t.Logf("%d numbers, %d valid", total, valid)
	if valid < total/4 {
		t.Fatalf("only %d of %d numbers valid: the comparison does not exercise valid numbers", valid, total)
	}
}

func TestDigitDFA(t *testing.T) {
	for _, tt := range []struct {
		pattern      string
		full, prefix []string
		neither      []string
	}{
		{`8[1-9]\d{7}`, []string{"812345678"}, []string{"8123456789"}, []string{"80", "81234567", "x"}},
		{`(?:2|3[0-4])\d{0,2}`, []string{"2", "3099"}, []string{"21234"}, []string{"35", "", "1"}},
		{`1(?:2|3)?`, []string{"1", "12"}, []string{"14", "134"}, []string{"2"}},
		{`(5\d{2})$|1`, []string{"523", "1"}, []string{"12", "10"}, []string{"5234", "52", "5"}}, // national_prefix_for_parsing
		{`(?:00)?(1\d)$`, []string{"12", "0012"}, nil, []string{"123", "001", "0"}},
	} {
		d, ok := compileDigitDFA(tt.pattern)
		if !ok {
			t.Fatalf("%s does not compile", tt.pattern)
		}
		for _, s := range tt.full {
			s := []byte(s)
			if !d.full(s) || !d.prefix(s) {
				t.Errorf("%s: %q: full %v prefix %v, want both", tt.pattern, s, d.full(s), d.prefix(s))
			}
		}
		for _, s := range tt.prefix {
			s := []byte(s)
			if d.full(s) || !d.prefix(s) {
				t.Errorf("%s: %q: full %v prefix %v, want prefix only", tt.pattern, s, d.full(s), d.prefix(s))
			}
		}
		for _, s := range tt.neither {
			s := []byte(s)
			if d.full(s) || d.prefix(s) {
				t.Errorf("%s: %q: full %v prefix %v, want neither", tt.pattern, s, d.full(s), d.prefix(s))
			}
		}
	}
	for _, p := range []string{`^1`, `\b1`, `(`, `1$|^2`} {
		if _, ok := compileDigitDFA(p); ok {
			t.Errorf("%s compiled", p)
		}
	}
}

func FuzzPhoneValidity(f *testing.F) {
	for _, s := range []struct {
		cc  uint16
		nsn string
	}{{66, "812345678"}, {1, "2015550123"}, {44, "7400123456"}, {39, "0612345678"}, {7, "7012345678"}, {800, "12345678"}, {262, "692123456"}} {
		f.Add(s.cc, s.nsn)
	}
	f.Fuzz(func(t *testing.T, cc uint16, nsn string) {
		if len(nsn) == 0 || len(nsn) > 17 {
			return
		}
		for i := 0; i < len(nsn); i++ {
			if nsn[i] < '0' || nsn[i] > '9' {
				return
			}
		}
		checkValidity(t, numberOf(int(cc%1000), nsn))
	})
}
