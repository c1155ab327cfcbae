package segments

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

// Matches answers for a few contacts what Evaluate answers for all, for expressions with
// tags, attributes, not, and, or (and an erased contact is nobody's member).
func TestMatchesAgreesWithEvaluate(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var csv strings.Builder
	csv.WriteString("phone,tags\n")
	tags := []string{"vip", "churned", "gold", ""}
	for i := 0; i < 300; i++ {
		csv.WriteString(fmt.Sprintf("+6681%07d,%s\n", 1000000+i, tags[rng.IntN(len(tags))]))
	}
	if _, err := s.ImportCSV(ctx, strings.NewReader(csv.String()), ImportOptions{Source: "t"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Evaluate(ctx, "not nothing_here")
	if err != nil {
		t.Fatal(err)
	}
	ids := all.ToArray()
	ids = append(ids, ids[len(ids)-1]+1, 0) // not a contact
	for _, expr := range []string{"vip", "vip and not churned", "vip or gold", "not (vip or gold) and country:TH", "country:ID", "gold and not country:TH", "missing_tag or vip"} {
		want, err := s.Evaluate(ctx, expr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Matches(ctx, expr, ids)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if got[i] != want.Contains(id) {
				t.Fatalf("%q: contact %d Matches %v, Evaluate %v", expr, id, got[i], want.Contains(id))
			}
		}
	}
}

// The tag hook sees exactly the flips: TagContacts' and an import's, not a repeat.
func TestTagHookSeesFlips(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]*roaring.Bitmap{}
	s.OnTagChange(func(_ context.Context, tag string, added bool, ids []uint32) {
		mu.Lock()
		defer mu.Unlock()
		k := fmt.Sprint(tag, added)
		if got[k] == nil {
			got[k] = roaring.New()
		}
		for _, id := range ids {
			if got[k].Contains(id) {
				t.Errorf("%s: contact %d twice", k, id)
			}
			got[k].Add(id)
		}
	})
	if _, err := s.ImportCSV(ctx, strings.NewReader("phone,tags\n+66810000001,vip\n+66810000002,\n"), ImportOptions{Source: "t"}); err != nil {
		t.Fatal(err)
	}
	one, _ := s.Lookup(ctx, "+66810000001")
	two, _ := s.Lookup(ctx, "+66810000002")
	if k := "viptrue"; got[k] == nil || got[k].GetCardinality() != 1 || !got[k].Contains(one) {
		t.Fatalf("after the import: %v", got)
	}
	both := roaring.BitmapOf(one, two)
	if _, err := s.TagContacts(ctx, "vip", both, true); err != nil { // one already has it
		t.Fatal(err)
	}
	if _, err := s.TagContacts(ctx, "vip", roaring.BitmapOf(one), false); err != nil {
		t.Fatal(err)
	}
	if got["viptrue"].GetCardinality() != 2 || !got["viptrue"].Contains(two) || got["vipfalse"] == nil || got["vipfalse"].ToArray()[0] != one || got["vipfalse"].GetCardinality() != 1 {
		t.Fatalf("flips %v", got)
	}
}
