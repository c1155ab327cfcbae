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
