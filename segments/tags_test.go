package segments

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

func TestTagContactsBySegmentPhoneAndList(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	importString(t, s, "phone,tags\n+66 81 500 0001,vip\n+66 81 500 0002,vip;churned\n+66 81 500 0003,\n", ImportOptions{})
	seg, err := s.Evaluate(ctx, "vip and not churned")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.TagContacts(ctx, "Gold Tier", seg, true)
	if err != nil || ch.Tag != "gold_tier" || ch.Matched != 1 || ch.Changed != 1 {
		t.Fatalf("add by segment = %+v, %v", ch, err)
	}
	// Again: nothing changes.
	if ch, err = s.TagContacts(ctx, "gold_tier", seg, true); err != nil || ch.Changed != 0 {
		t.Fatalf("add again = %+v, %v", ch, err)
	}
	ids, rejects, err := s.PhoneIDs(ctx, []string{"0815000003", "+66 81 500 0009", "12"}, "TH")
	if err != nil {
		t.Fatal(err)
	}
	if ids.GetCardinality() != 1 || len(rejects) != 2 || rejects[0].Line != 2 || rejects[0].Reason != "no such contact" || rejects[1].Reason != "invalid phone" {
		t.Fatalf("PhoneIDs = %v, %+v", ids.ToArray(), rejects)
	}
	ids.Add(999999) // not a contact: ignored
	if ch, err = s.TagContacts(ctx, "gold_tier", ids, true); err != nil || ch.Matched != 1 || ch.Changed != 1 {
		t.Fatalf("add by phone = %+v, %v", ch, err)
	}
	if got := members(t, s, "gold_tier"); len(got) != 2 {
		t.Fatalf("gold_tier = %v", got)
	}
	id1 := mustLookup(t, s, "+66815000001")
	if c := mustProfile(t, s, id1); !slices.Equal(c.Tags, []string{"gold_tier", "vip"}) {
		t.Fatalf("profile tags = %v", c.Tags)
	}
	var calls [][2]uint64
	ch, err = s.TagContactsProgress(ctx, "vip", roaring.BitmapOf(id1), false, func(done, total uint64) { calls = append(calls, [2]uint64{done, total}) })
	if err != nil || ch.Changed != 1 || len(calls) != 1 || calls[0] != [2]uint64{1, 1} {
		t.Fatalf("remove = %+v, %v, progress %v", ch, err, calls)
	}
	if c := mustProfile(t, s, id1); !slices.Equal(c.Tags, []string{"gold_tier"}) {
		t.Fatalf("profile tags after remove = %v", c.Tags)
	}
	counts, err := s.TagCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []TagCount{{"churned", 1}, {"gold_tier", 2}, {"vip", 1}}
	if !slices.Equal(counts, want) {
		t.Fatalf("TagCounts = %v, want %v", counts, want)
	}
	if _, err := s.TagContacts(ctx, "été", ids, true); err == nil {
		t.Fatal("a non-ASCII tag was accepted")
	}
}

func TestReadPhoneList(t *testing.T) {
	phones, lines, err := ReadPhoneList(strings.NewReader("\uFEFFphone\r\n+66 81 500 0001\r\n\r\n# comment\n0815000002\n"))
	if err != nil || !slices.Equal(phones, []string{"+66 81 500 0001", "0815000002"}) || !slices.Equal(lines, []int{2, 5}) {
		t.Fatalf("ReadPhoneList = %q %v %v", phones, lines, err)
	}
}

type erasureRecorder struct {
	ids  []uint32
	fail error
}

func (e *erasureRecorder) RecordErasure(_ context.Context, id uint32) error {
	if e.fail != nil {
		return e.fail
	}
	e.ids = append(e.ids, id)
	return nil
}

func TestEraseContact(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	importString(t, s, "phone,name,tags,locale\n+66 81 600 0001,Ann,vip;gold,th\n+66 81 600 0002,Bob,vip,th\n", ImportOptions{})
	id := mustLookup(t, s, "+66816000001")
	failing := &erasureRecorder{fail: errors.New("ledger down")}
	before := snapshot(t, rdb, prefix)
	if _, err := s.EraseContact(ctx, "+66816000001", failing); err == nil {
		t.Fatal("erased although the ledger failed")
	}
	if d := diffSnapshots(before, snapshot(t, rdb, prefix)); len(d) > 0 {
		t.Fatalf("a failed erasure changed Redis: %v", d)
	}
	led := &erasureRecorder{}
	er, err := s.EraseContact(ctx, "66816000001", led) // as WhatsApp's wa_id
	if err != nil || er.ContactID != id || er.Tags != 2 || !slices.Equal(led.ids, []uint32{id}) {
		t.Fatalf("EraseContact = %+v, %v (ledger %v)", er, err, led.ids)
	}
	for _, expr := range []string{"vip", "gold", "country:TH", "locale:th", "not vip"} {
		if got := members(t, s, expr); slices.Contains(got, id) {
			t.Errorf("%s still has the erased contact: %v", expr, got)
		}
	}
	if _, err := s.LookupPhone(ctx, "+66816000001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LookupPhone after erasure: %v", err)
	}
	if p := mustProfile(t, s, id); p.ID != 0 {
		t.Fatalf("profile after erasure: %+v", p)
	}
	// Nothing under the prefix still holds the phone number.
	for k, v := range snapshot(t, rdb, prefix) {
		if strings.Contains(v, "+66816000001") || strings.Contains(k, "+66816000001") {
			t.Fatalf("%s still holds the phone: %q", k, v)
		}
	}
	if _, err := s.EraseContact(ctx, "+66816000001", led); !errors.Is(err, ErrNotFound) {
		t.Fatalf("erasing twice: %v", err)
	}
	if got := members(t, s, "vip"); len(got) != 1 {
		t.Fatalf("the other contact lost its tag: %v", got)
	}
}
