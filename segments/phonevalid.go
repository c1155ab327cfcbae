package segments

import (
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// Validity without regular expressions. phonenumbers.IsValidNumberForRegion matches a
// national number against up to eleven of its region's patterns with package regexp
// (a backtracking or one-pass matcher behind a mutex-guarded cache), ~4 µs a number:
// most of an import's CPU. A phone number is digits only, so each pattern is compiled
// here once into a DFA over the digits 0–9 (a table lookup per digit), and validity is
// decided exactly as phonenumbers decides it: the general pattern, then any type's
// possible lengths and pattern. Regions whose patterns cannot be compiled (none at
// the time of writing) and non-geographic numbers go through phonenumbers.
// TestPhoneValidityMatchesPhonenumbers and FuzzPhoneValidity compare the two.

// digitDFA is a regular expression over the digits 0–9 as a DFA.
type digitDFA struct {
	next      []int32 // state*10 + digit → state; -1: no match can follow
	accept    []bool
	acceptEnd []bool // accepts at the end of the text only ($ in national_prefix_for_parsing)
}

// maxDFAStates bounds a pattern's DFA; a pattern needing more is left to regexp.
const maxDFAStates = 4096

// compileDigitDFA compiles a pattern of phonenumbers' metadata. ok is false when the
// pattern does not parse or needs something a digit DFA cannot do (anchors other than
// $, word boundaries) or too many states.
func compileDigitDFA(pattern string) (d *digitDFA, ok bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, false
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, false
	}
	// closure adds pc and what it reaches without consuming input; it reports false
	// for instructions the DFA does not support.
	var closure func(set []uint32, seen []bool, pc uint32) ([]uint32, bool)
	closure = func(set []uint32, seen []bool, pc uint32) ([]uint32, bool) {
		if seen[pc] {
			return set, true
		}
		seen[pc] = true
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			var ok bool
			if set, ok = closure(set, seen, in.Out); !ok {
				return nil, false
			}
			return closure(set, seen, in.Arg)
		case syntax.InstCapture, syntax.InstNop:
			return closure(set, seen, in.Out)
		case syntax.InstFail:
			return set, true
		case syntax.InstMatch, syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			return append(set, pc), true
		case syntax.InstEmptyWidth:
			if syntax.EmptyOp(in.Arg) == syntax.EmptyEndText { // $: kept in the set, passed at the end
				return append(set, pc), true
			}
		}
		return nil, false
	}
	// atEnd reports whether set matches at the end of the text: a match, or one after $.
	var atEnd func(set []uint32, seen []bool) (match, ok bool)
	atEnd = func(set []uint32, seen []bool) (match, ok bool) {
		for _, pc := range set {
			switch in := &prog.Inst[pc]; in.Op {
			case syntax.InstMatch:
				match = true
			case syntax.InstEmptyWidth:
				next, ok := closure(nil, seen, in.Out)
				if !ok {
					return false, false
				}
				m, ok := atEnd(next, seen)
				if !ok {
					return false, false
				}
				match = match || m
			}
		}
		return match, true
	}
	d = &digitDFA{}
	failed := false
	index := map[string]int32{}
	var queue [][]uint32
	add := func(set []uint32) int32 {
		slices.Sort(set)
		var b strings.Builder
		for _, pc := range set {
			b.WriteString(strconv.FormatUint(uint64(pc), 36))
			b.WriteByte(',')
		}
		k := b.String()
		if id, ok := index[k]; ok {
			return id
		}
		id := int32(len(queue))
		index[k] = id
		queue = append(queue, set)
		acc := false
		for _, pc := range set {
			acc = acc || prog.Inst[pc].Op == syntax.InstMatch
		}
		end, ok := atEnd(set, make([]bool, len(prog.Inst)))
		failed = failed || !ok
		d.accept = append(d.accept, acc)
		d.acceptEnd = append(d.acceptEnd, end)
		d.next = append(d.next, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
		return id
	}
	start, ok := closure(nil, make([]bool, len(prog.Inst)), uint32(prog.Start))
	if !ok {
		return nil, false
	}
	add(start)
	for s := 0; s < len(queue); s++ {
		if len(queue) > maxDFAStates {
			return nil, false
		}
		for c := range 10 {
			var set []uint32
			seen := make([]bool, len(prog.Inst))
			for _, pc := range queue[s] {
				in := &prog.Inst[pc]
				if in.Op != syntax.InstMatch && in.Op != syntax.InstEmptyWidth && in.MatchRune('0'+rune(c)) {
					if set, ok = closure(set, seen, in.Out); !ok {
						return nil, false
					}
				}
			}
			if len(set) > 0 {
				d.next[s*10+c] = add(set)
			}
		}
	}
	if failed {
		return nil, false
	}
	return d, true
}

// full reports whether the whole of s (digits) matches.
func (d *digitDFA) full(s []byte) bool {
	st := int32(0)
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return false
		}
		if st = d.next[int(st)*10+int(c)]; st < 0 {
			return false
		}
	}
	return d.acceptEnd[st]
}

// prefix reports whether some prefix of s (digits), maybe empty, matches.
func (d *digitDFA) prefix(s []byte) bool {
	st := int32(0)
	for i := 0; ; i++ {
		if d.accept[st] {
			return true
		}
		if i == len(s) {
			return d.acceptEnd[st]
		}
		c := s[i] - '0'
		if c > 9 {
			return false
		}
		if st = d.next[int(st)*10+int(c)]; st < 0 {
			return false
		}
	}
}

// numberDesc is a PhoneNumberDesc compiled: isNumberMatchingDesc of phonenumbers.
type numberDesc struct {
	lengths []int32 // possible lengths; empty: any
	dfa     *digitDFA
}

func compileDesc(d *phonenumbers.PhoneNumberDesc) (numberDesc, bool) {
	dfa, ok := compileDigitDFA(d.GetNationalNumberPattern())
	return numberDesc{lengths: d.GetPossibleLength(), dfa: dfa}, ok
}

func (d *numberDesc) match(nsn []byte) bool {
	if len(d.lengths) > 0 && !slices.Contains(d.lengths, int32(len(nsn))) {
		return false
	}
	return d.dfa.full(nsn)
}

// regionRules is what validity needs of one region's metadata.
type regionRules struct {
	general    numberDesc
	types      []numberDesc // every type but fixed line and mobile
	fixed      numberDesc
	mobile     numberDesc
	sameFixMob bool      // mobile numbers are the fixed-line pattern
	leading    *digitDFA // leading digits, nil when the region has none
	hasLeading bool
}

// valid is getNumberTypeHelper(nsn) != UNKNOWN: the general pattern, and any type's
// (the types phonenumbers tries first are the rarest, so they are tried last here).
func (r *regionRules) valid(nsn []byte) bool {
	if !r.general.match(nsn) {
		return false
	}
	if r.fixed.match(nsn) || !r.sameFixMob && r.mobile.match(nsn) {
		return true
	}
	for i := range r.types {
		if r.types[i].match(nsn) {
			return true
		}
	}
	return false
}

var regionRulesCache sync.Map // region → *regionRules, or nil when it cannot be compiled

// rulesFor returns a region's compiled rules, nil when they cannot be compiled.
func rulesFor(region string) *regionRules {
	if v, ok := regionRulesCache.Load(region); ok {
		return v.(*regionRules)
	}
	r := compileRegion(region)
	v, _ := regionRulesCache.LoadOrStore(region, r)
	return v.(*regionRules)
}

// regionMetadata indexes phonenumbers' metadata by region.
var regionMetadata = sync.OnceValue(func() map[string]*phonenumbers.PhoneMetadata {
	m := map[string]*phonenumbers.PhoneMetadata{}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return m // every region through phonenumbers
	}
	for _, md := range coll.GetMetadata() {
		if id := md.GetId(); id != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
			m[id] = md
		}
	}
	return m
})

func compileRegion(region string) *regionRules {
	md := regionMetadata()[region]
	if md == nil {
		return nil
	}
	r := &regionRules{sameFixMob: md.GetSameMobileAndFixedLinePattern()}
	var ok bool
	if r.general, ok = compileDesc(md.GetGeneralDesc()); !ok {
		return nil
	}
	for _, d := range []*phonenumbers.PhoneNumberDesc{md.GetPremiumRate(), md.GetTollFree(), md.GetSharedCost(), md.GetVoip(),
		md.GetPersonalNumber(), md.GetPager(), md.GetUan(), md.GetVoicemail()} {
		nd, ok := compileDesc(d)
		if !ok {
			return nil
		}
		r.types = append(r.types, nd)
	}
	if r.fixed, ok = compileDesc(md.GetFixedLine()); !ok {
		return nil
	}
	if r.mobile, ok = compileDesc(md.GetMobile()); !ok {
		return nil
	}
	if ld := md.GetLeadingDigits(); ld != "" {
		r.hasLeading = true
		if r.leading, ok = compileDigitDFA(ld); !ok {
			return nil
		}
	}
	return r
}

// validRegion returns the region of a parsed number (phonenumbers.GetRegionCodeForNumber)
// and whether the number is valid for it (phonenumbers.IsValidNumberForRegion), with
// the compiled rules where it can.
func validRegion(n *phonenumbers.PhoneNumber) (region string, valid bool) {
	cc := int(n.GetCountryCode())
	regions := phonenumbers.GetRegionCodesForCountryCode(cc)
	if len(regions) == 0 {
		return "", false
	}
	var buf [24]byte
	var nsn []byte
	if n.GetItalianLeadingZero() && n.GetNumberOfLeadingZeros() > 0 {
		nsn = append(buf[:0], phonenumbers.GetNationalSignificantNumber(n)...)
	} else {
		nsn = strconv.AppendUint(buf[:0], n.GetNationalNumber(), 10)
	}
	region = regions[0]
	if len(regions) > 1 {
		region = ""
		for _, rc := range regions {
			r := rulesFor(rc)
			if r == nil {
				region = phonenumbers.GetRegionCodeForNumber(n)
				break
			}
			if r.inRegion(nsn) {
				region = rc
				break
			}
		}
		if region == "" {
			return "", false
		}
	}
	if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
		return region, phonenumbers.IsValidNumberForRegion(n, region)
	}
	r := rulesFor(region)
	if r == nil {
		return region, phonenumbers.IsValidNumberForRegion(n, region)
	}
	return region, r.valid(nsn)
}

// inRegion is the test phonenumbers.GetRegionCodeForNumber makes of each region
// sharing a calling code, in order: its leading digits match the start of the
// number, or, for a region without leading digits, the number is valid there.
func (r *regionRules) inRegion(nsn []byte) bool {
	if r.hasLeading {
		return r.leading.prefix(nsn)
	}
	return r.valid(nsn)
}

// regionOf is validRegion for the national significant number of a calling code
// whose regions all have rules (rules[i] of regions[i]).
func regionOf(regions []string, rules []*regionRules, nsn []byte) (region string, valid bool) {
	i := 0
	if len(regions) > 1 {
		for i < len(rules) && !rules[i].inRegion(nsn) {
			i++
		}
		if i == len(rules) {
			return "", false
		}
	}
	return regions[i], rules[i].valid(nsn)
}
