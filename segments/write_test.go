package segments

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// bitfieldArgs writes what one SETBIT per change would, also when whole words of new
// contacts go as one SET i64: created ids (fresh, bits 0) end with their changes, and
// the bits of every other id are untouched or changed as asked.
func TestBitfieldArgsMatchSetBit(t *testing.T) {
	_, rdb, prefix := newStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(4, 4))
	for round := range 40 {
		const span = 1024
		// Created ids: one or two runs of consecutive ids, at any alignment.
		var created []uint32
		isCreated := map[uint32]bool{}
		for range 1 + rng.IntN(2) {
			start, n := uint32(rng.IntN(span)), uint32(rng.IntN(400))
			for id := start; id < min(start+n, span); id++ {
				if !isCreated[id] {
					isCreated[id] = true
					created = append(created, id)
				}
			}
		}
		// Prior bits: 0 for created ids, random for the others.
		prior := make([]byte, span/8)
		for id := range uint32(span) {
			if !isCreated[id] && rng.IntN(2) == 0 {
				prior[id/8] |= 0x80 >> (id % 8)
			}
		}
		want := append([]byte(nil), prior...)
		var ops []bitOp
		for range rng.IntN(600) {
			var id uint32
			if len(created) > 0 && rng.IntN(3) > 0 {
				id = created[rng.IntN(len(created))]
			} else {
				id = uint32(rng.IntN(span))
			}
			v := rng.IntN(3) > 0
			if isCreated[id] {
				v = true // a new contact only gains bits
			}
			ops = append(ops, bitOp{id, v})
			if v {
				want[id/8] |= 0x80 >> (id % 8)
			} else {
				want[id/8] &^= 0x80 >> (id % 8)
			}
		}
		key := fmt.Sprintf("%sbits:%d", prefix, round)
		if err := rdb.Set(ctx, key, prior, 0).Err(); err != nil {
			t.Fatal(err)
		}
		args := bitfieldArgs(key, ops, fullWords(created))
		cmd := redis.NewIntSliceCmd(ctx, args...)
		if err := rdb.Process(ctx, cmd); err != nil {
			t.Fatalf("%v: %v", args[:min(len(args), 10)], err)
		}
		got, err := rdb.Get(ctx, key).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		for id := range uint32(span) {
			g, w := got[id/8]&(0x80>>(id%8)) != 0, want[id/8]&(0x80>>(id%8)) != 0
			if g != w {
				t.Fatalf("round %d: bit %d is %v, want %v (created %v)", round, id, g, w, isCreated[id])
			}
		}
	}
}

func TestFullWords(t *testing.T) {
	var ids []uint32
	for id := uint32(60); id < 200; id++ {
		ids = append(ids, id)
	}
	// Words 1 (ids 64–127) and 2 (128–191); 0 and 3 are partial.
	if full := fullWords(ids); len(full) != 2 || !full[1] || !full[2] {
		t.Fatalf("fullWords = %v", full)
	}
	if fullWords(ids[:50]) != nil {
		t.Fatal("fewer than 64 ids make a full word")
	}
}

// A bucket put of records where none was read (putNewScript) sets them all in a new
// bucket; in a bucket that exists it sets only those the bucket lacks and reports the
// others (another writer's records, left as they are), like putScript with nothing
// expected. A put where a record was read uses putScript.
func TestBucketPutNewRecords(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	run := func(put *bucketPut, b uint32) []int64 {
		t.Helper()
		cmd := put.command(ctx, s.kProfiles(b), false)
		if err := rdb.Process(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		failed, err := cmd.Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		return failed
	}
	rec := func(name string) []byte {
		return encodeRecord(&profile{f: []field{{hPhone, "+66812345678"}, {hName, name}}})
	}
	// A new bucket takes every record.
	put := &bucketPut{}
	put.add(1, nil, rec("a"))
	put.add(2, nil, rec("b"))
	if put.stale {
		t.Fatal("a put of new records is stale")
	}
	if failed := run(put, 0); len(failed) != 0 {
		t.Fatalf("new bucket: failed %v", failed)
	}
	// In an existing bucket, contact 2's record (another writer's) stays.
	put = &bucketPut{}
	put.add(2, nil, rec("mine"))
	put.add(3, nil, rec("c"))
	if failed := run(put, 0); len(failed) != 1 || failed[0] != 2 {
		t.Fatalf("existing bucket: failed %v, want [2]", failed)
	}
	got, err := rdb.HGetAll(ctx, s.kProfiles(0)).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"1": string(rec("a")), "2": string(rec("b")), "3": string(rec("c"))}
	if len(got) != len(want) {
		t.Fatalf("bucket holds %d records, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("record %s = %q, want %q", k, got[k], v)
		}
	}
	// A put expecting a record it read writes only where the bucket still holds it.
	put = &bucketPut{}
	put.add(3, rec("c"), rec("c2"))
	put.add(1, rec("stale"), rec("a2"))
	if !put.stale {
		t.Fatal("a put of read records is not stale")
	}
	if failed := run(put, 0); len(failed) != 1 || failed[0] != 1 {
		t.Fatalf("read records: failed %v, want [1]", failed)
	}
	if v := rdb.HGet(ctx, s.kProfiles(0), "3").Val(); v != string(rec("c2")) {
		t.Errorf("record 3 = %q, want the new one", v)
	}
	if v := rdb.HGet(ctx, s.kProfiles(0), "1").Val(); v != string(rec("a")) {
		t.Errorf("record 1 = %q, want it unchanged", v)
	}
}

// exec writes the new records of buckets that do not exist with a plain HSET in a
// transaction; a bucket that exists gets putNewScript, which keeps another writer's
// record and reports it. If another writer creates a record in one of the new
// buckets between the check and the write, nothing of the transaction is written and
// the batch runs again with the scripts.
func TestExecNewBuckets(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	rec := func(name string) []byte {
		return encodeRecord(&profile{f: []field{{hPhone, "+66812345678"}, {hName, name}}})
	}
	batch := func(s *Store) *batchWriter {
		w := newBatchWriter(s, "test")
		for id := uint32(1); id < 6*profileBucket; id++ {
			w.put(profileBucketOf(id)).add(id, nil, rec(strconv.Itoa(int(id))))
		}
		return w
	}
	plain := func(puts []*bucketPut) (n int) {
		for _, p := range puts {
			if p.plain {
				n++
			}
		}
		return n
	}
	failedIDs := func(puts []*bucketPut) (ids []int64) {
		for _, p := range puts {
			if !p.plain {
				f, err := p.cmd.Int64Slice()
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, f...)
			}
		}
		return ids
	}
	check := func(prefix string, want map[uint32]string) {
		t.Helper()
		for id := uint32(1); id < 6*profileBucket; id++ {
			w, ok := want[id]
			if !ok {
				w = string(rec(strconv.Itoa(int(id))))
			}
			if got := rdb.HGet(ctx, s.kProfiles(profileBucketOf(id)), strconv.Itoa(int(id))).Val(); got != w {
				t.Fatalf("%s: record %d = %q, want %q", prefix, id, got, w)
			}
		}
	}

	run := func(s *Store, wantPlain int, wantFailed int64) {
		t.Helper()
		all, err := s.exec(ctx, batch(s))
		if err != nil {
			t.Fatal(err)
		}
		if n := plain(all[0]); n != wantPlain {
			t.Errorf("%d plain puts of 6 buckets, want %d", n, wantPlain)
		}
		if f := failedIDs(all[0]); len(f) != 1 || f[0] != wantFailed {
			t.Errorf("failed %v, want [%d]", f, wantFailed)
		}
	}

	// Bucket 1 exists with another writer's record of contact 130.
	other := string(rec("other"))
	rdb.HSet(ctx, s.kProfiles(1), "130", other)
	run(s, 5, 130)
	check("first", map[uint32]string{130: other})

	// Another writer creates a record in bucket 3 after the check: the transaction
	// fails and the scripts write the rest.
	s2 := NewStore(rdb, s.prefix+"second:")
	s2.testHookTx = func() { rdb.HSet(ctx, s2.kProfiles(3), "400", other) }
	run(s2, 0, 400)
	s = s2
	check("second", map[uint32]string{400: other})
}

// Batches resolved together get one id per identity; a contact is new in the first
// batch naming it only, and each batch's rows point into its own identities.
func TestResolveBatches(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	r := func(ph string) row { return row{phone: phone{E164: ph}, optIn: -1} }
	if _, err := s.resolveRows(ctx, []row{r("+66810000009")}, false); err != nil {
		t.Fatal(err)
	}
	a := []row{r("+66810000001"), r("+66810000002"), r("+66810000001"), r("+66810000009")}
	b := []row{r("+66810000002"), r("+66810000003")}
	bis, err := s.resolveBatches(ctx, [][]row{a, b, nil}, false)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		id    uint32
		isNew bool
	}
	rowsOf := func(bi *batchIdents) (out []got) {
		for _, i := range bi.rowIdent {
			out = append(out, got{bi.found[i].id, bi.found[i].isNew})
		}
		return out
	}
	if g, want := rowsOf(bis[0]), []got{{2, true}, {3, true}, {2, true}, {1, false}}; !slices.Equal(g, want) {
		t.Errorf("first batch = %v, want %v", g, want)
	}
	if g, want := rowsOf(bis[1]), []got{{3, false}, {4, true}}; !slices.Equal(g, want) {
		t.Errorf("second batch = %v, want %v", g, want)
	}
	if len(bis[0].idents) != 3 || len(bis[1].idents) != 2 || len(bis[2].idents) != 0 {
		t.Errorf("identities per batch = %d, %d, %d; want 3, 2, 0", len(bis[0].idents), len(bis[1].idents), len(bis[2].idents))
	}
	if n := bis[0].fresh() + bis[1].fresh(); n != 3 {
		t.Errorf("fresh = %d, want 3", n)
	}
}
