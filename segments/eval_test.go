package segments

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

func TestBitmapFromRedis(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 8191, 8192, 70000, 200003} {
		b := make([]byte, n)
		var want []uint32
		for i := range b {
			if rng.IntN(3) == 0 { // leave some bytes and words zero
				continue
			}
			b[i] = byte(rng.Uint32())
			for bit := range 8 {
				if b[i]&(0x80>>bit) != 0 {
					want = append(want, uint32(i*8+bit))
				}
			}
		}
		if got := bitmapFromRedis(b).ToArray(); !slices.Equal(got, want) {
			t.Fatalf("%d bytes: got %d ids, want %d", n, len(got), len(want))
		}
	}
}

func TestBitmapFromRedisServer(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	want := []uint32{0, 1, 7, 8, 63, 64, 65535, 65536, 1 << 20, 4_000_000, 9_999_999}
	pipe := rdb.Pipeline()
	for _, id := range want {
		pipe.SetBit(ctx, s.kTag("x"), int64(id), 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := rdb.Get(ctx, s.kTag("x")).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if got := bitmapFromRedis(b).ToArray(); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// model is the brute-force truth the store is checked against.
type model struct {
	tags    map[uint32]map[string]bool
	country map[uint32]string
	lang    map[uint32]string
}

func (m *model) match(x Expr, id uint32) bool {
	switch x := x.(type) {
	case *Term:
		for _, v := range x.Values {
			switch {
			case x.Field == FieldTag && m.tags[id][v], x.Field == FieldCountry && m.country[id] == v, x.Field == FieldLocale && m.lang[id] == v:
				return true
			}
		}
		return false
	case *Not:
		return !m.match(x.X, id)
	case *And:
		for _, y := range x.Xs {
			if !m.match(y, id) {
				return false
			}
		}
		return true
	case *Or:
		for _, y := range x.Xs {
			if m.match(y, id) {
				return true
			}
		}
		return false
	}
	panic("unknown expression")
}

var (
	testTags      = []string{"vip", "gold", "churned", "new", "b2b", "and"}
	testCountries = []string{"TH", "ID", "BR", "US"}
	testLangs     = []string{"th", "id", "pt", "en"}
	testPhones    = map[string]string{"TH": "+66812%06d", "ID": "+62812%07d", "BR": "+55119%08d", "US": "+1201555%04d"}
)

// randomExpr builds a random expression over the test vocabulary, plus names no
// contact has.
func randomExpr(rng *rand.Rand, depth int) Expr {
	if depth == 0 || rng.IntN(3) == 0 {
		pick := func(vs []string) []string {
			n := 1 + rng.IntN(2)
			out := make([]string, n)
			for i := range out {
				out[i] = vs[rng.IntN(len(vs))]
			}
			return out
		}
		switch rng.IntN(4) {
		case 0:
			return &Term{Field: FieldCountry, Values: pick(append(testCountries, "JP"))}
		case 1:
			return &Term{Field: FieldLocale, Values: pick(append(testLangs, "fr"))}
		default:
			return &Term{Field: FieldTag, Values: pick(append(testTags, "unknown"))}
		}
	}
	switch rng.IntN(3) {
	case 0:
		return &Not{X: randomExpr(rng, depth-1)}
	case 1:
		return &And{Xs: []Expr{randomExpr(rng, depth-1), randomExpr(rng, depth-1), randomExpr(rng, depth-1)}[:2+rng.IntN(2)]}
	}
	return &Or{Xs: []Expr{randomExpr(rng, depth-1), randomExpr(rng, depth-1), randomExpr(rng, depth-1)}[:2+rng.IntN(2)]}
}

// seed imports n random contacts through Upsert and returns the model of them.
func seed(t testing.TB, s *Store, n int, rng *rand.Rand) *model {
	t.Helper()
	m := &model{tags: map[uint32]map[string]bool{}, country: map[uint32]string{}, lang: map[uint32]string{}}
	cs := make([]Contact, n)
	for i := range cs {
		cc := testCountries[rng.IntN(len(testCountries))]
		cs[i] = Contact{Phone: fmt.Sprintf(testPhones[cc], i), Locale: testLangs[rng.IntN(len(testLangs))]}
		for _, tag := range testTags {
			if rng.IntN(3) == 0 {
				cs[i].Tags = append(cs[i].Tags, tag)
			}
		}
	}
	ids, err := s.Upsert(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		m.tags[id] = map[string]bool{}
		for _, tag := range cs[i].Tags {
			m.tags[id][tag] = true
		}
		p, _ := parsePhone(cs[i].Phone, "")
		m.country[id] = p.Region
		m.lang[id] = cs[i].Locale
	}
	if len(m.tags) != n {
		t.Fatalf("seeded %d contacts, want %d", len(m.tags), n)
	}
	return m
}

func TestEvaluateMatchesBruteForce(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	m := seed(t, s, 3000, rng)
	exprs := []string{"vip", "not vip", "vip and (country:TH or country:ID) and not churned", "country in (TH, BR)",
		"locale:th or locale:pt", "not unknown", "unknown", "tag:and and not (gold or new)", "not not vip"}
	for range 300 {
		exprs = append(exprs, randomExpr(rng, 4).String())
	}
	for _, e := range exprs {
		x, err := Parse(e)
		if err != nil {
			t.Fatalf("Parse(%q): %v", e, err)
		}
		var want []uint32
		for id := range m.tags {
			if m.match(x, id) {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		bm, err := s.Evaluate(ctx, strings.ToUpper(e)) // keywords, tags and values are case-insensitive
		if err != nil {
			t.Fatalf("Evaluate(%q): %v", e, err)
		}
		if got := bm.ToArray(); !slices.Equal(got, want) {
			t.Fatalf("Evaluate(%q) = %d contacts, brute force %d", e, len(got), len(want))
		}
		if n, err := s.Count(ctx, e); err != nil || n != uint64(len(want)) {
			t.Fatalf("Count(%q) = %d, %v, want %d", e, n, err, len(want))
		}
	}
}

func TestEvaluateOnlyLiveContacts(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	if _, err := s.Upsert(ctx, []Contact{{Phone: "+66812345678", Tags: []string{"vip"}}}); err != nil {
		t.Fatal(err)
	}
	// A stray bit for an id that is not a live contact (as an erasure leaves behind
	// until its cleanup) is not a member.
	rdb.SetBit(ctx, s.kTag("vip"), 500, 1)
	if got := members(t, s, "vip"); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("vip = %v", got)
	}
	if got := members(t, s, "not vip"); len(got) != 0 {
		t.Fatalf("not vip = %v", got)
	}
	if _, err := s.Evaluate(ctx, "vip and"); err == nil || !strings.HasPrefix(err.Error(), "segment: column 8:") {
		t.Fatalf("Evaluate(bad) = %v", err)
	}
}

func TestExplain(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	if _, err := s.Upsert(ctx, []Contact{
		{Phone: "+66812345678", Tags: []string{"vip", "gold"}, Locale: "th"},
		{Phone: "+66812345679", Tags: []string{"vip"}},
	}); err != nil {
		t.Fatal(err)
	}
	rdb.SetBit(ctx, s.kTag("emptied"), 1, 0) // a tag whose members were all removed
	ex, err := s.Explain(ctx, "VIP and not (vpi or emptied) and country in (TH, JP)")
	if err != nil {
		t.Fatal(err)
	}
	if ex.Expr != "vip and not (vpi or emptied) and country in (TH, JP)" || ex.Count != 2 {
		t.Fatalf("Explain = %+v", ex)
	}
	wantTerms := []TermCount{{"vip", 1, 2}, {"vpi", 14, 0}, {"emptied", 21, 0}, {"country in (TH, JP)", 34, 2}}
	if !slices.Equal(ex.Terms, wantTerms) {
		t.Fatalf("Terms = %+v, want %+v", ex.Terms, wantTerms)
	}
	var ws []string
	for _, w := range ex.Warnings {
		ws = append(ws, w.String())
	}
	want := []string{
		`column 14: unknown tag "vpi": no contact has it (TagCounts lists the tags)`,
		`column 21: tag "emptied" has no members`,
		`column 34: no contact has country:JP`,
	}
	if !slices.Equal(ws, want) {
		t.Fatalf("Warnings = %q, want %q", ws, want)
	}
}

// The evaluation result is the caller's: changing it must not change later results.
func TestEvaluateResultIsOwned(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	if _, err := s.Upsert(ctx, []Contact{{Phone: "+66812345678", Tags: []string{"vip"}}}); err != nil {
		t.Fatal(err)
	}
	bm, err := s.Evaluate(ctx, "vip")
	if err != nil {
		t.Fatal(err)
	}
	bm.Add(42)
	bm2, err := s.Evaluate(ctx, "vip")
	if err != nil {
		t.Fatal(err)
	}
	if !bm2.Equals(roaring.BitmapOf(1)) {
		t.Fatalf("second evaluation = %v", bm2.ToArray())
	}
}
