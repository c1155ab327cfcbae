package segments

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// zonePrefixes returns the prefixes of phonenumbers' time zone map the trie holds,
// with every shorter prefix of them.
func zonePrefixes(t *zoneTrie) []string {
	var out []string
	var walk func(n int, prefix string)
	walk = func(n int, prefix string) {
		if prefix != "" {
			out = append(out, prefix)
		}
		for c := range 10 {
			if m := t.next[n*10+c]; m != 0 {
				walk(int(m), prefix+strconv.Itoa(c))
			}
		}
	}
	walk(0, "")
	return out
}

func randomDigits(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rng.IntN(10))
	}
	return string(b)
}

// The trie gives what GetTimezonesForPrefix and pickZone give for numbers under every
// prefix of phonenumbers' time zone map, at every length, in the regions of the
// calling code and the regions with a main zone; and parsePhone gives what
// phonenumbers alone gives for numbers under every prefix at the lengths their
// regions allow, digits taken at random and from example numbers.
func TestPhoneZoneMatchesPhonenumbers(t *testing.T) {
	tr := loadZoneTrie()
	if tr == nil {
		t.Fatal("the time zone trie does not build: every zone goes through GetTimezonesForPrefix")
	}
	rng := rand.New(rand.NewPCG(7, 7))
	capitals := []string{""}
	for r := range capitalZone {
		capitals = append(capitals, r)
	}
	slices.Sort(capitals)
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER,
		phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	examples := map[string][]string{} // region → example national numbers
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range types {
			if n := phonenumbers.GetExampleNumberForType(region, typ); n != nil {
				examples[region] = append(examples[region], phonenumbers.GetNationalSignificantNumber(n))
			}
		}
	}
	prefixes := zonePrefixes(tr)
	if raceEnabled {
		prefixes = sample(prefixes, 8)
	}
	zones, numbers, valid, fast := 0, 0, 0, 0
	for _, prefix := range prefixes {
		cc := 0
		for i := 1; i <= 3 && i <= len(prefix); i++ {
			if v, _ := strconv.Atoi(prefix[:i]); len(phonenumbers.GetRegionCodesForCountryCode(v)) > 0 {
				cc = v
				break
			}
		}
		regions := phonenumbers.GetRegionCodesForCountryCode(cc)
		zoneRegions := slices.Concat(regions, capitals)
		for l := len(prefix); l <= 12; l++ { // the map's prefixes have at most 9 digits
			digits := prefix + randomDigits(rng, l-len(prefix))
			want, err := phonenumbers.GetTimezonesForPrefix("+" + digits)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range zoneRegions {
				if got := tr.zone([]byte(digits), r); got != pickZone(want, r) {
					t.Fatalf("+%s in %q: zone %q, phonenumbers %q (%v)", digits, r, got, pickZone(want, r), want)
				}
				zones++
			}
		}
		if cc == 0 {
			continue
		}
		rest := prefix[len(strconv.Itoa(cc)):]
		var nsns []string
		for _, rc := range regions {
			md := regionMetadata()[rc]
			if md == nil {
				continue
			}
			for _, l := range md.GetGeneralDesc().GetPossibleLength() {
				if int(l) >= len(rest) {
					nsns = append(nsns, rest+randomDigits(rng, int(l)-len(rest)))
				}
			}
			for _, e := range examples[rc] {
				if len(e) > len(rest) {
					nsns = append(nsns, rest+e[len(rest):])
				}
			}
		}
		slices.Sort(nsns)
		nsns = slices.Compact(nsns)
		if len(nsns) > 8 { // +1: 25 regions
			rng.Shuffle(len(nsns), func(i, j int) { nsns[i], nsns[j] = nsns[j], nsns[i] })
			nsns = nsns[:8]
		}
		for _, nsn := range nsns {
			s := "+" + strconv.Itoa(cc) + " " + nsn
			p, err := parsePhone(s, "")
			q, qerr := parsePhoneSlow(s, "")
			if p != q || (err == nil) != (qerr == nil) {
				t.Fatalf("parsePhone(%q) = %+v, %v; phonenumbers alone %+v, %v", s, p, err, q, qerr)
			}
			numbers++
			if err == nil {
				valid++
			}
			if _, _, ok := fastPhone(s); ok {
				fast++
			}
		}
	}
	t.Logf("%d prefixes: %d zones compared; %d numbers, %d valid, %d answered by the fast path",
		len(prefixes), zones, numbers, valid, fast)
	if valid < numbers/4 {
		t.Fatalf("only %d of %d numbers valid: the comparison does not exercise zones of valid numbers", valid, numbers)
	}
}

// The trie's zones are the map's: each prefix's own zones, inherited by longer
// numbers, and phonenumbers' unknown zone ("") outside every prefix.
func TestZoneTrie(t *testing.T) {
	tr := loadZoneTrie()
	if tr == nil {
		t.Fatal("the time zone trie does not build")
	}
	for _, tt := range []struct {
		digits, region, zone string
	}{
		{"66812345678", "TH", "Asia/Bangkok"},
		{"4915112345678", "DE", "Europe/Berlin"},
		{"447400123456", "GB", "Europe/London"}, // several zones, London among them
		{"447400123456", "", ""},
		{"12015550123", "US", "America/New_York"},
		{"18005550100", "US", ""}, // toll-free: every US zone
		{"999", "", ""},
	} {
		if got := tr.zone([]byte(tt.digits), tt.region); got != tt.zone {
			t.Errorf("+%s in %q: zone %q, want %q", tt.digits, tt.region, got, tt.zone)
		}
	}
	if _, err := buildZoneTrie(phonenumbersTimezoneData[:len(phonenumbersTimezoneData)/2]); err == nil {
		t.Error("half of the data built a trie")
	}
}
