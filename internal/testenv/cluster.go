package testenv

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/localstack"
)

// RedisCluster starts a Redis Cluster of three masters of its own for this test, on
// free loopback ports, stopped when the test ends; it returns the nodes' addresses and
// the HERALD_REDIS_URL naming them (redis+cluster://a,b,c/). It skips the test with
// -short or when redis-server is missing.
func RedisCluster(t testing.TB) (addrs []string, url string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := localstack.StartRedisCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	addrs = c.Addrs()
	return addrs, "redis+cluster://" + strings.Join(addrs, ",") + "/"
}

// RedisClusterClient is RedisCluster with a client of it, closed when the test ends.
func RedisClusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	addrs, _ := RedisCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: 32})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb.ReloadState(ctx)
	if err := rdb.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatalf("testenv: redis cluster ping: %v", err)
	}
	return rdb
}
