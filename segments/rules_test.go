package segments

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

func TestParseRules(t *testing.T) {
	good := "rules:\n  - tag: VIP\n    description: big spenders\n    query: SELECT contact_id FROM orders GROUP BY contact_id HAVING count() >= 2;\n  - tag: tier_a\n    query: |\n      WITH s AS (SELECT 1) SELECT contact_id FROM scores\n"
	rf, err := ParseRules(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(rf.Rules) != 2 || rf.Rules[0].Tag != "vip" || strings.HasSuffix(rf.Rules[0].Query, ";") || rf.Rules[1].Tag != "tier_a" {
		t.Fatalf("rules = %+v", rf)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"rules: []\n", "no rules"},
		{"rulez:\n  - tag: a\n", "field rulez not found"},
		{"rules:\n  - tag: a\n", "query is missing"},
		{"rules:\n  - tag: a\n    query: DELETE FROM x\n", "must be a SELECT"},
		{"rules:\n  - tag: a\n    query: SELECT 1; DROP TABLE x\n", "one statement only"},
		{"rules:\n  - tag: a\n    query: SELECT 1\n  - tag: A\n    query: SELECT 2\n", "both compute tag"},
		{"rules:\n  - tag: é\n    query: SELECT 1\n", "tags may use"},
		{"rules: [", "rules: yaml"},
	} {
		if _, err := ParseRules(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRules(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add("rules:\n  - tag: vip\n    query: SELECT contact_id FROM t\n")
	f.Add("rules: [{tag: a, query: 'WITH x AS (SELECT 1) SELECT 1'}]")
	f.Add("rules:\n  - tag: ''\n")
	f.Fuzz(func(t *testing.T, in string) {
		rf, err := ParseRules(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, r := range rf.Rules {
			if n, err := normTag(r.Tag); err != nil || n != r.Tag || r.Query == "" || strings.Contains(r.Query, ";") {
				t.Fatalf("%q: accepted rule %+v", in, r)
			}
		}
	})
}

// queryIDs answers rule queries from a table, as the analytics store would.
type queryIDs map[string][]uint32

func (q queryIDs) ContactIDs(_ context.Context, query string) (*roaring.Bitmap, error) {
	ids, ok := q[query]
	if !ok {
		return nil, errors.New("no such table")
	}
	return roaring.BitmapOf(ids...), nil
}

func TestComputeRulesReplacesMembership(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	importString(t, s, "phone,tags\n+66 81 900 0001,vip\n+66 81 900 0002,vip\n+66 81 900 0003,\n", ImportOptions{})
	id := func(p string) uint32 { return mustLookup(t, s, p) }
	a, b, c := id("+66819000001"), id("+66819000002"), id("+66819000003")
	rf := RuleFile{Rules: []Rule{{Tag: "vip", Query: "SELECT vip"}, {Tag: "tier_c", Query: "SELECT c"}}}
	q := queryIDs{"SELECT vip": {b, c, 424242}, "SELECT c": {}}
	res, err := s.ComputeRules(ctx, rf, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0] != (RuleResult{Tag: "vip", Members: 2, Added: 1, Removed: 1}) || res[1] != (RuleResult{Tag: "tier_c"}) {
		t.Fatalf("results %+v", res)
	}
	if got := members(t, s, "vip"); len(got) != 2 || got[0] != b || got[1] != c {
		t.Fatalf("vip = %v (a=%d)", got, a)
	}
	if p := mustProfile(t, s, a); len(p.Tags) != 0 {
		t.Fatalf("a kept tags %v", p.Tags)
	}
	counts, _ := s.TagCounts(ctx)
	if len(counts) != 2 || counts[0].Name != "tier_c" || counts[0].Count != 0 {
		t.Fatalf("library %v", counts)
	}
	// Again: nothing changes; a failing query stops before its tag.
	rf.Rules = append(rf.Rules, Rule{Tag: "x", Query: "SELECT missing"})
	res, err = s.ComputeRules(ctx, rf, q)
	if err == nil || len(res) != 2 || res[0].Added+res[0].Removed != 0 {
		t.Fatalf("again: %+v, %v", res, err)
	}
}
