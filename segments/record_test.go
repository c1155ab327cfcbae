package segments

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func fieldMap(p profile) map[string]string {
	m := map[string]string{}
	for _, f := range p.f {
		m[f.k] = f.v
	}
	return m
}

// Records give back every field, whatever its bytes, in any order the profile had
// them, and two profiles with the same fields have the same record.
func TestRecordRoundTrip(t *testing.T) {
	long := strings.Repeat("ยาว", 100) // a length over one uvarint byte
	for _, fs := range [][]field{
		{{hPhone, "+66812345678"}},
		{{hEmail, "a@example.com"}, {hName, `Somchai, "Big" S.`}},
		{{hPhone, "+66812345678"}, {hName, "line one\nline two\r\n"}, {hCountry, "TH"}, {hTZ, "Asia/Bangkok"},
			{hLocale, "th"}, {hCreated, "1700000000123"}, {hSource, "crm, export.csv"}, {hAttr + "plan", "pro"}, {hAttr + "note", long}},
		{{hName, "พลอย 🌸 مرحبا \x00 \xff"}, {hPhone, "+390612345678"}, {hTZ, "Mars/Olympus"}, {hCreated, "0123"}},
		{{hPhone, "66812345678"}},           // not E.164: kept as written
		{{hPhone, "+0812345678"}},           // a leading zero
		{{hPhone, "+99999999999999999999"}}, // over 64 bits
		{{hEmail, "x@example.com"}, {hTZ, "UTC"}, {hCreated, "abc"}, {"unknown", "kept"}, {hAttr + "z", "1"}, {hAttr + "a", "2"}},
	} {
		p := profile{f: fs}
		rec := encodeRecord(&p)
		got, err := decodeRecord(rec)
		if err != nil {
			t.Fatalf("%q: %v", fs, err)
		}
		if !maps.Equal(fieldMap(got), fieldMap(p)) {
			t.Errorf("round trip of %q gave %q", fs, got.f)
		}
		rev := profile{f: slices.Clone(fs)}
		slices.Reverse(rev.f)
		if r2 := encodeRecord(&rev); string(r2) != string(rec) {
			t.Errorf("%q: the record depends on the fields' order", fs)
		}
	}
	// Empty values are not stored.
	if rec := encodeRecord(&profile{f: []field{{hPhone, "+66812345678"}, {hName, ""}}}); len(fieldMap(mustDecode(t, rec))) != 1 {
		t.Error("an empty field was stored")
	}
}

func mustDecode(t testing.TB, rec []byte) profile {
	t.Helper()
	p, err := decodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A record of a typical contact fits Redis's listpack value limit (64 bytes), so a
// bucket of them stays compact; measured on the shapes of the bench's contacts.
func TestTypicalRecordIsSmall(t *testing.T) {
	p := profile{f: []field{{hPhone, "+6281234567890"}, {hName, "Contact 1234567"}, {hCountry, "ID"}, {hTZ, "Asia/Jakarta"},
		{hLocale, "id"}, {hCreated, "1760000000000"}, {hSource, "contacts.csv"}, {hAttr + "plan", "pro"}}}
	if n := len(encodeRecord(&p)); n > 64 {
		t.Fatalf("record of %d bytes", n)
	}
}

func TestDecodeRecordRejectsCorruption(t *testing.T) {
	good := encodeRecord(&profile{f: []field{{hPhone, "+66812345678"}, {hName, "Somchai"}}})
	for _, rec := range [][]byte{nil, {}, {2}, good[:len(good)-1], append(slices.Clone(good), 99), {recVersion, recZone, 0},
		{recVersion, recZone, 0xff, 0x7f}, {recVersion, recName, 5, 'a'}} {
		if p, err := decodeRecord(rec); err == nil {
			t.Errorf("decodeRecord(%q) = %q", rec, p.f)
		}
	}
}

func FuzzRecord(f *testing.F) {
	f.Add([]byte{recVersion, recPhone, 1}, "Somchai", "plan", "pro")
	f.Add(encodeRecord(&profile{f: []field{{hPhone, "+66812345678"}, {hTZ, "Asia/Bangkok"}}}), "a,\"b\"\n", "x", "")
	f.Add(encodeRecord(&profile{f: []field{{hTelegram, "-1001234567890"}, {hLine, "U4af4980629d8ef6e1cc5d5a27e6bf99c"}}}), "U4af4980629d8ef6e1cc5d5a27e6bf99c", "x", "123")
	f.Add([]byte{recVersion, recTelegram, 0x80}, "UABC", "y", "-0")
	f.Fuzz(func(t *testing.T, rec []byte, name, attr, value string) {
		// Any bytes: decoded without panicking, and a decoded record encodes to one
		// decoding to the same fields.
		if p, err := decodeRecord(rec); err == nil {
			again, err := decodeRecord(encodeRecord(&p))
			if err != nil || !maps.Equal(fieldMap(again), fieldMap(p)) {
				t.Fatalf("%q: %q, then %q, %v", rec, p.f, again.f, err)
			}
		}
		// Any strings round trip.
		p := profile{f: []field{{hEmail, "a@example.com"}}}
		p.set(hName, name)
		p.set(hAttr+attr, value)
		p.set(hTelegram, value) // canonical chat ids as numbers, any other string as written
		p.set(hLine, name)
		got, err := decodeRecord(encodeRecord(&p))
		if err != nil || !maps.Equal(fieldMap(got), fieldMap(p)) {
			t.Fatalf("%q: %q, %v", p.f, got.f, err)
		}
	})
}

func TestBuckets(t *testing.T) {
	for id, b := range map[uint32]uint32{1: 0, 127: 0, 128: 1, 255: 1, 256: 2, 1 << 31: 1 << 24, ^uint32(0): 1<<25 - 1} {
		if got := profileBucketOf(id); got != b {
			t.Errorf("profileBucketOf(%d) = %d, want %d", id, got, b)
		}
	}
	// identBucket is FNV-1a 32 (a stored layout: it must never change).
	for _, x := range []string{"", "+66812345678", "a@example.com", "ลูกค้า"} {
		h := fnv.New32a()
		h.Write([]byte(x))
		if got := identBucket(x); got != h.Sum32()%identBuckets {
			t.Errorf("identBucket(%q) = %d", x, got)
		}
	}
}

// Contacts on both sides of bucket boundaries are stored in their buckets and read
// back; a bucket of typical contacts keeps Redis's compact encoding.
func TestBucketBoundaries(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	const n = 2*profileBucket + 3
	cs := make([]Contact, n)
	for i := range cs {
		cs[i] = Contact{Phone: fmt.Sprintf("+628123%07d", i), Name: fmt.Sprintf("Contact %d", i+1), Tags: []string{fmt.Sprintf("t%d", i%3)},
			Attrs: map[string]string{"plan": "pro"}}
	}
	ids, err := s.Upsert(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	for b, want := range []int64{profileBucket - 1, profileBucket, 4} {
		k := prefix + "profiles:" + strconv.Itoa(b)
		if got := rdb.HLen(ctx, k).Val(); got != want {
			t.Errorf("%s holds %d records, want %d", k, got, want)
		}
		if enc := rdb.ObjectEncoding(ctx, k).Val(); enc != "listpack" {
			t.Errorf("%s is encoded as %s", k, enc)
		}
	}
	ps, err := s.Profiles(ctx, append([]uint32{0, n + 1}, ids...))
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].ID != 0 || ps[1].ID != 0 {
		t.Fatalf("contacts 0 and %d: %+v %+v", n+1, ps[0], ps[1])
	}
	for i, p := range ps[2:] {
		if p.ID != uint32(i+1) || p.Phone != fmt.Sprintf("+628123%07d", i) || p.Name != cs[i].Name ||
			!slices.Equal(p.Tags, []string{fmt.Sprintf("t%d", i%3)}) || p.Attrs["plan"] != "pro" {
			t.Fatalf("contact %d: %+v", i+1, p)
		}
	}
	for _, id := range []uint32{127, 128, 255, 256} {
		if er, err := s.EraseContact(ctx, fmt.Sprintf("+628123%07d", id-1), nil); err != nil || er.ContactID != id || er.Tags != 1 {
			t.Fatalf("erase %d: %+v, %v", id, er, err)
		}
	}
	ps = profilesOf(t, s, []uint32{126, 127, 128, 129, 255, 256, 257})
	for i, want := range []uint32{126, 0, 0, 129, 0, 0, 257} {
		if ps[i].ID != want {
			t.Errorf("after erasure, profile %d is %+v", i, ps[i])
		}
	}
}
