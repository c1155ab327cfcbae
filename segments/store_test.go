package segments

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestUpsertAndProfiles(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	ids, err := s.Upsert(ctx, []Contact{
		{Phone: "+66812345678", Name: "Somchai", Tags: []string{"VIP"}, Attrs: map[string]string{"Plan": "pro"}},
		{Phone: "0812 3456 7890", Country: "id", Email: "Budi@Example.com", Locale: "id", TimeZone: "Asia/Makassar"},
		{Phone: "+66 81 234 5678", Tags: []string{"gold"}}, // the first contact again
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []uint32{1, 2, 1}) {
		t.Fatalf("ids = %v", ids)
	}
	ps, err := s.Profiles(ctx, []uint32{2, 99, 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []Contact{
		{ID: 2, Phone: "+6281234567890", Email: "budi@example.com", Country: "ID", TimeZone: "Asia/Makassar", Locale: "id"},
		{},
		{ID: 1, Phone: "+66812345678", Name: "Somchai", Country: "TH", TimeZone: "Asia/Bangkok", Tags: []string{"gold", "vip"}, Attrs: map[string]string{"plan": "pro"}},
	}
	for i := range want {
		if !equalContact(ps[i], want[i]) {
			t.Errorf("Profiles[%d] = %+v, want %+v", i, ps[i], want[i])
		}
	}
	// ProfileFields: the same without the tags.
	fs, err := s.ProfileFields(ctx, []uint32{2, 99, 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		w := want[i]
		w.Tags = nil
		if !equalContact(fs[i], w) || fs[i].Tags != nil {
			t.Errorf("ProfileFields[%d] = %+v, want %+v", i, fs[i], w)
		}
	}
	rec, err := rdb.HGet(ctx, prefix+"profiles:0", "1").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if p, err := decodeRecord(rec); err != nil || p.get(hSource) != "api" || p.get(hCreated) == "" {
		t.Fatalf("contact 1's record = %v, %v, want source and created", p, err)
	}

	// One invalid contact: nothing is written.
	before := snapshot(t, rdb, prefix)
	_, err = s.Upsert(ctx, []Contact{{Phone: "+66812345679", Name: "fine"}, {Phone: "12345", Name: "bad"}})
	if err == nil || !strings.Contains(err.Error(), `upsert contact 2 (phone "12345"): invalid phone`) {
		t.Fatalf("Upsert with a bad phone = %v", err)
	}
	for _, c := range []Contact{
		{Phone: ""}, {Phone: "+66812345679", Email: "nope"}, {Phone: "+66812345679", TimeZone: "Mars/Olympus"},
		{Phone: "+66812345679", Locale: "english!"}, {Phone: "+66812345679", Tags: []string{"ลูกค้า"}},
		{Phone: "+66812345679", Attrs: map[string]string{"แต้ม": "1"}}, {Phone: "0812345679", Country: "XX"},
	} {
		if _, err := s.Upsert(ctx, []Contact{c}); err == nil {
			t.Errorf("Upsert(%+v) succeeded", c)
		}
	}
	if d := diffSnapshots(before, snapshot(t, rdb, prefix)); len(d) > 0 {
		t.Fatalf("failed upserts wrote: %v", d)
	}
}

func TestLookupPhone(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	ids, err := s.Upsert(ctx, []Contact{{Phone: "+66812345678"}, {Phone: "+5511912345678"}, {Phone: "+525512345678"}})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]uint32{
		"+66812345678":          ids[0],
		"66812345678":           ids[0], // wa_id
		" +66 81-234-5678 ":     ids[0],
		"whatsapp:+66812345678": ids[0],
		"5511912345678":         ids[1],
		"551112345678":          0, // a BR wa_id without the ninth digit, different subscriber
		"551191234567":          0,
		"5215512345678":         ids[2], // MX wa_id with the old mobile "1"
	} {
		got, err := s.LookupPhone(ctx, in)
		switch {
		case want == 0 && !errors.Is(err, ErrNotFound):
			t.Errorf("LookupPhone(%q) = %d, %v, want ErrNotFound", in, got, err)
		case want != 0 && (err != nil || got != want):
			t.Errorf("LookupPhone(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	// A Brazilian mobile stored with its ninth digit, reported by WhatsApp without it.
	id, err := s.Upsert(ctx, []Contact{{Phone: "+5521987654321"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupPhone(ctx, "552187654321"); err != nil || got != id[0] {
		t.Errorf("LookupPhone(BR without 9) = %d, %v, want %d", got, err, id[0])
	}
	for _, in := range []string{"", "abc", "+"} {
		if _, err := s.LookupPhone(ctx, in); !errors.Is(err, ErrNotFound) {
			t.Errorf("LookupPhone(%q) = %v, want ErrNotFound", in, err)
		}
	}
}

func TestProfilesEmpty(t *testing.T) {
	s, _, _ := newStore(t)
	ps, err := s.Profiles(context.Background(), nil)
	if err != nil || len(ps) != 0 {
		t.Fatalf("Profiles(nil) = %v, %v", ps, err)
	}
	tc, err := s.TagCounts(context.Background())
	if err != nil || len(tc) != 0 {
		t.Fatalf("TagCounts on an empty store = %v, %v", tc, err)
	}
}

func TestNormalizers(t *testing.T) {
	for in, want := range map[string]string{"VIP": "vip", " Black Friday ": "black_friday", "a.b/c": "a_b_c",
		"x--y": "x--y", "vip!": "vip", "__a__": "a", "2024": "2024"} {
		if got, err := normTag(in); err != nil || got != want {
			t.Errorf("normTag(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "!!!", "--", "ลูกค้า", strings.Repeat("a", 65)} {
		if got, err := normTag(in); err == nil {
			t.Errorf("normTag(%q) = %q, want an error", in, got)
		}
	}
	for in, want := range map[string][2]string{"th": {"th", "th"}, "TH_th": {"th-TH", "th"}, "pt-br": {"pt-BR", "pt"},
		"zh-hant-tw": {"zh-Hant-TW", "zh"}, "es-419": {"es-419", "es"}} {
		loc, lang, err := normLocale(in)
		if err != nil || loc != want[0] || lang != want[1] {
			t.Errorf("normLocale(%q) = %q %q %v, want %v", in, loc, lang, err, want)
		}
	}
	for in, want := range map[string]string{"Phone Number": "phone_number", "WhatsApp Opt-In": "whatsapp_opt_in",
		" E-Mail ": "e_mail", "Points (2024)": "points_2024"} {
		if got := normName(in); got != want {
			t.Errorf("normName(%q) = %q, want %q", in, got, want)
		}
	}
	for _, z := range capitalZone {
		if !(&zoneCache{}).valid(z) {
			t.Errorf("capital zone %q is not a zone", z)
		}
	}
}
