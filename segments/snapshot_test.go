package segments

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

func TestSnapshotStreamsInIDOrderAndResumes(t *testing.T) {
	bm := roaring.New()
	for _, id := range []uint32{1, 2, 3, 70000, 70001, 1 << 20, 1<<32 - 1} {
		bm.Add(id)
	}
	sn := NewSnapshot(bm)
	bm.Add(5) // the snapshot is a copy
	want := []uint32{1, 2, 3, 70000, 70001, 1 << 20, 1<<32 - 1}
	if got := slices.Collect(sn.After(0)); !slices.Equal(got, want) {
		t.Fatalf("After(0) = %v, want %v", got, want)
	}
	if got := slices.Collect(sn.After(3)); !slices.Equal(got, want[3:]) {
		t.Fatalf("After(3) = %v", got)
	}
	if got := slices.Collect(sn.After(1<<32 - 1)); len(got) != 0 {
		t.Fatalf("After(max) = %v", got)
	}
	for _, size := range []int{1, 2, 3, 100} {
		var got []uint32
		buf := make([]uint32, size)
		var after uint32
		for {
			ids := sn.Next(after, buf)
			if len(ids) == 0 {
				break
			}
			got = append(got, ids...)
			after = ids[len(ids)-1]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Next in batches of %d = %v, want %v", size, got, want)
		}
	}
	if sn.Len() != uint64(len(want)) || sn.Contains(5) || !sn.Contains(70000) {
		t.Fatalf("Len %d, Contains(5) %v", sn.Len(), sn.Contains(5))
	}
}

func TestPreviewSamplesMembers(t *testing.T) {
	s, _, _ := newStore(t)
	var b strings.Builder
	b.WriteString("phone,name,tags\n")
	for i := range 50 {
		tags := "lead"
		if i%5 == 0 {
			tags = "vip"
		}
		fmt.Fprintf(&b, "+66 81 300 %04d,Name %d,%s\n", i, i, tags)
	}
	importString(t, s, b.String(), ImportOptions{})
	p, err := s.Preview(context.Background(), "vip and not unknowntag", 4)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 10 || len(p.Sample) != 4 || len(p.Warnings) != 1 {
		t.Fatalf("preview = %+v", p)
	}
	for i, c := range p.Sample {
		if !slices.Equal(c.Tags, []string{"vip"}) || i > 0 && c.ID <= p.Sample[i-1].ID {
			t.Fatalf("sample %d = %+v", i, c)
		}
	}
	if p.Sample[0].Name != "Name 0" || p.Sample[3].Name == "Name 15" {
		t.Fatalf("sample is not spread over the members: %+v", p.Sample)
	}
	if p, err := s.Preview(context.Background(), "vip", 100); err != nil || len(p.Sample) != 10 {
		t.Fatalf("preview of all = %d contacts, %v", len(p.Sample), err)
	}
	if _, err := s.Preview(context.Background(), "vip and", 1); err == nil {
		t.Fatal("a bad expression previewed")
	}
}
