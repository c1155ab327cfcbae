package segments

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

// The bench scenario at a small size: its figures must describe what it wrote.
func TestRunBenchSmall(t *testing.T) {
	_, rdb, prefix := newStore(t)
	const n, rows = 3000, 2000
	res, err := RunBench(context.Background(), BenchConfig{Redis: rdb, Prefix: prefix, Contacts: n, ImportRows: rows, Dir: t.TempDir(), Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if res.Import.Created != rows || res.Import.Read != rows {
		t.Errorf("import report %+v, want %d rows created", res.Import, rows)
	}
	if res.StreamIDs != n {
		t.Errorf("streamed %d ids, want %d", res.StreamIDs, n)
	}
	// Replay the generator to count the expression's members independently.
	rng := rand.New(rand.NewPCG(7, 1))
	var want uint64
	var first benchContact
	for id := uint32(1); id <= n; id++ {
		c := genContact(rng, id, BenchTags)
		if id == 1 {
			first = c
		}
		vip, churned := slices.Contains(c.tags, 0), slices.Contains(c.tags, 1)
		if vip && !churned && (c.country == "TH" || c.country == "ID") && c.lang == "th" {
			want++
		}
	}
	if res.EvalMembers != want || want == 0 {
		t.Errorf("expression has %d members, the generator made %d", res.EvalMembers, want)
	}
	if res.MemoryPerContact <= 0 {
		t.Errorf("memory per contact %v", res.MemoryPerContact)
	}
	gen := NewStore(rdb, prefix+"gen:")
	id := mustLookup(t, gen, first.phone)
	p := mustProfile(t, gen, id)
	if id != 1 || p.Phone != first.phone || p.Country != first.country || len(p.Tags) != BenchTags {
		t.Errorf("contact 1 is %+v (id %d), generated %+v", p, id, first)
	}
	tc, err := gen.TagCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, c := range tc {
		sum += c.Count
	}
	if sum != n*BenchTags {
		t.Errorf("tag bitmaps hold %d memberships, want %d", sum, n*BenchTags)
	}
}
