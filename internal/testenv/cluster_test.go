package testenv

import (
	"context"
	"testing"
)

// A test's cluster: three masters sharing every slot, empty, reachable through the URL's
// nodes, and its own (a second one is another cluster).
func TestRedisCluster(t *testing.T) {
	ctx := context.Background()
	rdb := RedisClusterClient(t)
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	covered, masters := 0, map[string]bool{}
	for _, s := range slots {
		covered += s.End - s.Start + 1
		masters[s.Nodes[0].Addr] = true
	}
	if covered != 16384 || len(masters) != 3 {
		t.Fatalf("%d slots over %d masters: %+v", covered, len(masters), slots)
	}
	if err := rdb.Set(ctx, "{a}k", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	other, _ := RedisCluster(t)
	for _, a := range other {
		if masters[a] {
			t.Fatalf("a second cluster shares node %s", a)
		}
	}
}
