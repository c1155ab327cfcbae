package segments

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"
)

// downgrade rewrites a store in the layout Herald wrote before buckets: a hash per
// contact (P contact:ID, its tags as t.NAME = 1 fields, or with commaTags as the
// comma-separated tags field of the layout before that) and one hash per identity
// kind, and deletes the buckets.
func downgrade(t testing.TB, rdb *redis.Client, s *Store, commaTags bool) {
	t.Helper()
	ctx := context.Background()
	lib := rdb.SMembers(ctx, s.kTags()).Val()
	slices.Sort(lib)
	var keys []string
	iter := rdb.Scan(ctx, 0, s.prefix+"profiles:*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		for f, rec := range rdb.HGetAll(ctx, k).Val() {
			id, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			p, err := decodeRecord([]byte(rec))
			if err != nil {
				t.Fatal(err)
			}
			var args []any
			for _, fl := range p.f {
				args = append(args, fl.k, fl.v)
			}
			var tags []string
			for _, tag := range lib {
				if rdb.GetBit(ctx, s.kTag(tag), int64(id)).Val() == 1 {
					tags = append(tags, tag)
					if !commaTags {
						args = append(args, hTag+tag, "1")
					}
				}
			}
			if commaTags && len(tags) > 0 {
				args = append(args, hTags, strings.Join(tags, ","))
			}
			rdb.HSet(ctx, s.kContactOld(uint32(id)), args...)
		}
		rdb.Del(ctx, k)
	}
	for _, email := range []bool{false, true} {
		old, bucket := s.kIdentPhoneOld(), s.kIdentPhoneBucket
		if email {
			old, bucket = s.kIdentEmailOld(), s.kIdentEmailBucket
		}
		for x, id := range identEntries(t, rdb, s, email) {
			rdb.HSet(ctx, old, x, id)
		}
		for b := range uint32(identBuckets) {
			rdb.Del(ctx, bucket(b))
		}
	}
}

// awkwardCSV has names and attributes with commas, quotes, line breaks and any
// script, contacts known by email only, several tags, locales and zones.
const awkwardCSV = "phone,email,name,tags,locale,tz,country,note\n" +
	"+66 81 700 0001,,\"Somchai, \"\"Big\"\" S.\",vip;gold,th,,,\"line one\nline two\"\n" +
	"+66817000002,ploy@example.com,พลอย 🌸,vip,,Asia/Tokyo,,\n" +
	",only@example.com,\"O'Brien; \\ / \t tab\",churned,en-GB,,GB,x\n" +
	"+5511987000003,,مرحبا,,pt-BR,,,\"=1+2, ; |\"\n" +
	"+4915170000004,,,,,,,\n"

func awkwardIDs(t testing.TB, s *Store) []uint32 {
	t.Helper()
	var ids []uint32
	for _, who := range []string{"+66817000001", "ploy@example.com", "only@example.com", "+5511987000003", "+4915170000004"} {
		id, err := s.Lookup(context.Background(), who)
		if err != nil {
			t.Fatalf("Lookup(%s): %v", who, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func profilesOf(t testing.TB, s *Store, ids []uint32) []Contact {
	t.Helper()
	ps, err := s.Profiles(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func oldKeys(t testing.TB, rdb *redis.Client, s *Store) []string {
	t.Helper()
	ctx := context.Background()
	keys := rdb.Keys(ctx, s.prefix+"contact:*").Val()
	for _, k := range []string{s.kIdentPhoneOld(), s.kIdentEmailOld()} {
		if rdb.Exists(ctx, k).Val() == 1 {
			keys = append(keys, k)
		}
	}
	return keys
}

// A store of the layout before buckets is read as it was (lookups, profiles with
// their tags, previews, tagging, erasure), then upgraded by the next import, which
// finds nothing to change.
func TestOldLayoutIsReadThenUpgraded(t *testing.T) {
	for _, commaTags := range []bool{false, true} {
		t.Run(fmt.Sprintf("comma tags %v", commaTags), func(t *testing.T) {
			_, rdb, prefix := newStore(t)
			ctx := context.Background()
			s := NewStore(rdb, prefix)
			rep := importString(t, s, awkwardCSV, ImportOptions{})
			if rep.Created != 5 {
				t.Fatalf("report %+v", rep)
			}
			ids := awkwardIDs(t, s)
			want := profilesOf(t, s, ids)
			if want[0].Name != `Somchai, "Big" S.` || want[0].Attrs["note"] != "line one\nline two" || want[1].Name != "พลอย 🌸" ||
				!slices.Equal(want[0].Tags, []string{"gold", "vip"}) || want[2].Phone != "" || want[2].Email != "only@example.com" {
				t.Fatalf("profiles %+v", want)
			}
			downgrade(t, rdb, s, commaTags)

			old := NewStore(rdb, prefix)
			if got := awkwardIDs(t, old); !slices.Equal(got, ids) {
				t.Fatalf("ids in the old layout %v, want %v", got, ids)
			}
			if got := profilesOf(t, old, ids); !equalContacts(got, want) {
				t.Fatalf("profiles in the old layout:\n%+v\nwant\n%+v", got, want)
			}
			if n, err := old.Count(ctx, "vip and not churned"); err != nil || n != 2 {
				t.Fatalf("count = %d, %v", n, err)
			}
			pv, err := old.Preview(ctx, "vip", 10)
			if err != nil || len(pv.Sample) != 2 || pv.Sample[1].Name != "พลอย 🌸" {
				t.Fatalf("preview = %+v, %v", pv, err)
			}
			if ch, err := old.TagContacts(ctx, "new", roaring.BitmapOf(ids[3]), true); err != nil || ch.Changed != 1 {
				t.Fatalf("TagContacts = %+v, %v", ch, err)
			}
			want[3].Tags = []string{"new"}
			er, err := old.EraseContact(ctx, "+4915170000004", nil)
			if err != nil || er.ContactID != ids[4] {
				t.Fatalf("EraseContact = %+v, %v", er, err)
			}
			for k, v := range snapshot(t, rdb, prefix) {
				if strings.Contains(k+v, "4915170000004") {
					t.Fatalf("%s still holds the erased contact's phone", k)
				}
			}
			if got := profilesOf(t, old, ids[:4]); !equalContacts(got, want[:4]) {
				t.Fatalf("profiles after tagging and erasure:\n%+v\nwant\n%+v", got, want[:4])
			}

			// The next import upgrades the store, then finds the four contacts unchanged.
			s = NewStore(rdb, prefix)
			rep = importString(t, s, awkwardCSV, ImportOptions{})
			if rep.Unchanged != 4 || rep.Created != 1 {
				t.Fatalf("re-import after the upgrade: %+v", rep)
			}
			if k := oldKeys(t, rdb, s); len(k) > 0 {
				t.Fatalf("keys of the old layout remain: %v", k)
			}
			if got := profilesOf(t, s, ids[:4]); !equalContacts(got, want[:4]) {
				t.Fatalf("profiles after the upgrade:\n%+v\nwant\n%+v", got, want[:4])
			}
			if p := mustProfile(t, s, 6); p.Phone != "+4915170000004" {
				t.Fatalf("the erased contact imported again: %+v", p)
			}
			before := snapshot(t, rdb, prefix)
			if rep = importString(t, s, awkwardCSV, ImportOptions{}); rep.Unchanged != 5 {
				t.Fatalf("importing again: %+v", rep)
			}
			if d := diffSnapshots(before, snapshot(t, rdb, prefix)); len(d) > 0 {
				t.Fatalf("importing again changed %v", d)
			}
		})
	}
}

// A process still seeing the old layout (another is upgrading it) writes contacts
// into buckets, keeping their old fields, and reads the identities of both layouts.
func TestWriteDuringUpgrade(t *testing.T) {
	_, rdb, prefix := newStore(t)
	ctx := context.Background()
	s := NewStore(rdb, prefix)
	importString(t, s, awkwardCSV, ImportOptions{})
	ids := awkwardIDs(t, s)
	want := profilesOf(t, s, ids)
	downgrade(t, rdb, s, false)

	old := NewStore(rdb, prefix)
	if err := old.upgradeKeys(ctx); err != nil || !old.layout.legacy.Load() {
		t.Fatalf("legacy = %v, %v", old.layout.legacy.Load(), err)
	}
	// apply, unlike Upsert and imports, does not upgrade first.
	rows := []row{
		{phone: phone{E164: "+66817000001"}, name: "Somchai", tags: []string{"new"}, optIn: -1},
		{email: "only@example.com", phone: phone{E164: "+66817000099"}, optIn: -1}, // a phone for the email-only contact
		{phone: phone{E164: "+66817000100"}, optIn: -1},                            // a new contact
	}
	res, err := old.apply(ctx, rows, applyOpts{source: "api", remove: map[string]bool{"gold": true}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.outcomes, []int8{outUpdated, outUpdated, outCreated}) || res.ids[0] != ids[0] || res.ids[1] != ids[2] || res.ids[2] != 6 {
		t.Fatalf("apply = %+v", res)
	}
	want[0].Name, want[0].Tags = "Somchai", []string{"new", "vip"}
	want[2].Phone = "+66817000099"
	if got := profilesOf(t, old, ids); !equalContacts(got, want) {
		t.Fatalf("profiles:\n%+v\nwant\n%+v", got, want)
	}
	for _, id := range []uint32{ids[0], ids[2]} {
		if rdb.Exists(ctx, old.kContactOld(id)).Val() != 0 {
			t.Fatalf("contact %d is still in the old layout", id)
		}
		if rdb.HExists(ctx, old.kProfiles(profileBucketOf(id)), strconv.Itoa(int(id))).Val() != true {
			t.Fatalf("contact %d has no record", id)
		}
	}
	if got, err := old.LookupPhone(ctx, "+66817000099"); err != nil || got != ids[2] {
		t.Fatalf("new phone of the email-only contact: %d, %v", got, err)
	}
	if got, err := old.LookupEmail(ctx, "ploy@example.com"); err != nil || got != ids[1] {
		t.Fatalf("an old-layout email: %d, %v", got, err)
	}
	// Then the upgrade moves the rest.
	moved, err := NewStore(rdb, prefix).UpgradeLayout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Profiles of 1, 3 and 4 (ids[1], ids[3], ids[4]), and the old indexes' 6 entries.
	if moved != 3+6 {
		t.Fatalf("moved %d", moved)
	}
	if k := oldKeys(t, rdb, old); len(k) > 0 {
		t.Fatalf("keys of the old layout remain: %v", k)
	}
	if got := profilesOf(t, NewStore(rdb, prefix), ids); !equalContacts(got, want) {
		t.Fatalf("profiles after the upgrade:\n%+v\nwant\n%+v", got, want)
	}
}

// The upgrade moves a store of several steps while other importers add and update
// contacts through stores still seeing the old layout: every contact ends in the new
// layout, once, with its fields and tags.
func TestUpgradeWhileImporting(t *testing.T) {
	_, rdb, prefix := newStore(t)
	ctx := context.Background()
	const n = 3*migrateStep + 17
	var b strings.Builder
	b.WriteString("phone,email,name,tags\n")
	for i := range n {
		fmt.Fprintf(&b, "+66 82 %03d %04d,u%d@example.com,\"Name, %d\",t%d\n", i/10000, i%10000, i, i, i%5)
	}
	s := NewStore(rdb, prefix)
	if rep := importString(t, s, b.String(), ImportOptions{}); rep.Created != n {
		t.Fatalf("report %+v", rep)
	}
	downgrade(t, rdb, s, false)

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() {
		_, err := NewStore(rdb, prefix).UpgradeLayout(ctx)
		errs <- err
	})
	for w := range 2 {
		old := NewStore(rdb, prefix)
		if err := old.upgradeKeys(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for start := w * 100; start < n+100; start += 200 {
				var rows []row
				for i := start; i < min(start+100, n+100); i++ {
					rows = append(rows, row{phone: phone{E164: fmt.Sprintf("+668%d%07d", 2, i)}, tags: []string{fmt.Sprintf("w%d", w)}, optIn: -1})
				}
				if _, err := old.apply(ctx, rows, applyOpts{}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewStore(rdb, prefix).UpgradeLayout(ctx); err != nil {
		t.Fatal(err)
	}
	if k := oldKeys(t, rdb, s); len(k) > 0 {
		t.Fatalf("keys of the old layout remain: %d, e.g. %v", len(k), k[0])
	}
	s = NewStore(rdb, prefix)
	if seq := rdb.Get(ctx, s.kSeq()).Val(); seq != strconv.Itoa(n+100) {
		t.Fatalf("counter %s, want %d", seq, n+100)
	}
	if got := len(identEntries(t, rdb, s, false)); got != n+100 {
		t.Fatalf("%d phones in the index, want %d", got, n+100)
	}
	ids := make([]uint32, n+100)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	seen := map[int]bool{}
	for _, p := range profilesOf(t, s, ids) {
		// New contacts' ids depend on which writer was first: go by phone.
		i, err := strconv.Atoi(strings.TrimPrefix(p.Phone, "+6682"))
		if err != nil || seen[i] || i >= n+100 {
			t.Fatalf("contact %+v", p)
		}
		seen[i] = true
		wantTags := []string{fmt.Sprintf("w%d", i/100%2)}
		if i < n {
			wantTags = append(wantTags, fmt.Sprintf("t%d", i%5))
			if p.Name != fmt.Sprintf("Name, %d", i) || p.Email != fmt.Sprintf("u%d@example.com", i) {
				t.Fatalf("contact %d: %+v", p.ID, p)
			}
		}
		slices.Sort(wantTags)
		if i < n && p.ID != uint32(i+1) || !slices.Equal(p.Tags, wantTags) {
			t.Fatalf("contact %d: %+v, want tags %v", i+1, p, wantTags)
		}
	}
}

// A store of the layout before the hash tag (P contact:seq, P ident:phone) and before
// buckets is renamed, then upgraded, on first use.
func TestOldestKeyLayoutIsRenamed(t *testing.T) {
	_, rdb, prefix := newStore(t)
	ctx := context.Background()
	old := NewStore(rdb, prefix)
	importString(t, old, "phone,tags\n+66819800001,vip\n+66819800002,\n", ImportOptions{})
	downgrade(t, rdb, old, true)
	// Move the keys back to their names of before.
	for _, k := range [][2]string{{old.kSeq(), prefix + "contact:seq"}, {old.kIdentPhoneOld(), prefix + "ident:phone"}} {
		if err := rdb.Rename(ctx, k[0], k[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s := NewStore(rdb, prefix)
	if id := mustLookup(t, s, "+66819800002"); id != 2 {
		t.Fatalf("contact 2 has id %d", id)
	}
	rep := importString(t, s, "phone\n+66819800001\n+66819800003\n", ImportOptions{})
	if rep.Unchanged != 1 || rep.Created != 1 || mustLookup(t, s, "+66819800003") != 3 {
		t.Fatalf("report %+v", rep)
	}
	if n := rdb.Exists(ctx, prefix+"contact:seq", prefix+"ident:phone").Val(); n != 0 {
		t.Fatalf("%d keys of the oldest layout remain", n)
	}
	if k := oldKeys(t, rdb, s); len(k) > 0 {
		t.Fatalf("keys of the layout before buckets remain: %v", k)
	}
	if p := mustProfile(t, s, 1); !slices.Equal(p.Tags, []string{"vip"}) {
		t.Fatalf("contact 1: %+v", p)
	}
	// Both layouts at once: an older process wrote after the rename. Refused, clearly.
	rdb.Set(ctx, prefix+"contact:seq", 9, 0)
	if _, err := NewStore(rdb, prefix).LookupPhone(ctx, "+66819800001"); err == nil || !strings.Contains(err.Error(), "stop the older processes") {
		t.Fatalf("both layouts: %v", err)
	}
}

func equalContacts(a, b []Contact) bool {
	return slices.EqualFunc(a, b, equalContact)
}
