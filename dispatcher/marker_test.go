package dispatcher

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/testenv"
)

// commandCalls is how many times rdb's server has run cmd (INFO commandstats).
func commandCalls(t testing.TB, rdb *redis.Client, cmd string) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// scriptCalls counts the scripts rdb's server has run.
func scriptCalls(t testing.TB, rdb *redis.Client) int {
	return commandCalls(t, rdb, "evalsha") + commandCalls(t, rdb, "eval")
}

// Paced sends come one at a time: marks that come within the gather window share one
// round trip, and each still gets its own answer (a lost claim is not marked).
func TestMarkerGathersPacedMarks(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	mine, other := NewTracker(rdb, prefix), NewTracker(rdb, prefix)
	keys := []Key{{"c", 1}, {"c", 2}, {"c", 3}, {"c", 4}, {"c", 5}}
	if _, err := mine.Claim(ctx, append(keys[:4:4], Key{"c", 6})); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Claim(ctx, keys[4:]); err != nil { // not ours to mark
		t.Fatal(err)
	}
	m := &marker{t: mine, gather: 50 * time.Millisecond}
	// Once first, so that Redis has the script (its first use is EVALSHA, then EVAL).
	if ok, err := m.mark(ctx, Key{"c", 6}, SendProof{}); err != nil || !ok {
		t.Fatalf("first mark: %v, %v", ok, err)
	}
	before := scriptCalls(t, rdb)
	oks := make([]bool, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			ok, err := m.mark(ctx, k, SendProof{Channel: "whatsapp", Purpose: "marketing"})
			if err != nil {
				t.Error(err)
			}
			oks[i] = ok
		})
		time.Sleep(time.Millisecond) // one paced send after another
	}
	wg.Wait()
	if n := scriptCalls(t, rdb) - before; n != 1 {
		t.Errorf("%d scripts for five marks a millisecond apart, want 1", n)
	}
	if want := []bool{true, true, true, true, false}; !slices.Equal(oks, want) {
		t.Errorf("marked %v, want %v", oks, want)
	}
}
