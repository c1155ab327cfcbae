package segments

import (
	"context"
	"fmt"
	"math/rand/v2"
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
		cmd := put.command(ctx, s.kProfiles(b))
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
