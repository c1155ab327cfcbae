package app

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/testenv"
)

func TestParseRedisURL(t *testing.T) {
	for _, tc := range []struct {
		url   string
		addrs []string // nil: one server
		err   string
	}{
		{url: "redis://127.0.0.1:6379/0"},
		{url: "rediss://user:pw@h:6380/2"},
		{url: "unix:///run/redis.sock"},
		{url: "redis+cluster://a:7000,b:7001,c:7002/", addrs: []string{"a:7000", "b:7001", "c:7002"}},
		{url: "redis+cluster://a:7000", addrs: []string{"a:7000"}},
		{url: "redis+cluster://u:p@a:7000,b:7001/0?dial_timeout=3s", addrs: []string{"a:7000", "b:7001"}},
		{url: "rediss+cluster://a:7000,b:7001/", addrs: []string{"a:7000", "b:7001"}},
		{url: "http://x", err: "want redis://"},
		{url: "redis+cluster://a:7000,b:7001/3", err: "only database 0"},
		{url: "redis+cluster:///", err: "no cluster nodes"},
		{url: "redis+cluster://a,b:1/", err: `node "a": want host:port`},
		{url: "redis+cluster://a:1/?nonsense=1", err: "nonsense"},
	} {
		opt, copt, err := parseRedisURL(tc.url)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one saying %q", tc.url, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.url, err)
		case tc.addrs == nil && (opt == nil || copt != nil):
			t.Errorf("%s: want one server, got %+v %+v", tc.url, opt, copt)
		case tc.addrs != nil && (copt == nil || !slices.Equal(copt.Addrs, tc.addrs)):
			t.Errorf("%s: want a cluster of %v, got %+v", tc.url, tc.addrs, copt)
		}
		if tc.err == "" && strings.Contains(tc.url, "u:p@") && (copt.Username != "u" || copt.Password != "p") {
			t.Errorf("%s: credentials %q %q", tc.url, copt.Username, copt.Password)
		}
		if tc.err == "" && strings.Contains(tc.url, "dial_timeout") && copt.DialTimeout != 3*time.Second {
			t.Errorf("%s: dial timeout %v", tc.url, copt.DialTimeout)
		}
		if tc.err == "" && strings.HasPrefix(tc.url, "rediss+") && copt.TLSConfig == nil {
			t.Errorf("%s: no TLS", tc.url)
		}
	}
	if err := (Config{RedisURL: "redis+cluster://a:1,b/"}).Validate(Needs{Redis: true}); err == nil || !strings.Contains(err.Error(), "HERALD_REDIS_URL") {
		t.Errorf("Validate of a bad cluster URL: %v", err)
	}
}

func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{"redis://h:1/0", "redis+cluster://a:1,b:2/", "rediss+cluster://u:p@a:1/?pool_size=3", "redis+cluster://", "unix:///x", "redis+cluster://[::1]:7000,a:1/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		opt, copt, err := parseRedisURL(s)
		if err == nil && (opt == nil) == (copt == nil) {
			t.Fatalf("%q: want exactly one of the options, got %v and %v", s, opt, copt)
		}
		if err == nil && copt != nil && len(copt.Addrs) == 0 {
			t.Fatalf("%q: a cluster without nodes", s)
		}
		if IsRedisCluster(s) && opt != nil {
			t.Fatalf("%q: a cluster URL parsed as one server", s)
		}
	})
}

// Deps on a redis+cluster:// URL talk to a real Redis Cluster.
func TestDepsOnRedisCluster(t *testing.T) {
	addrs, url := testenv.RedisCluster(t)
	if url != RedisClusterURL(addrs) {
		t.Fatalf("testenv's URL %s, RedisClusterURL's %s", url, RedisClusterURL(addrs))
	}
	d := NewDeps(Config{RedisURL: url})
	defer d.Close()
	rdb, err := d.Redis()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("Deps built a %T for %s", rdb, url)
	}
	ctx := context.Background()
	for i := range 100 { // keys on every node
		if err := rdb.Set(ctx, "k"+strings.Repeat("x", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var n atomic.Int32 // ForEachMaster calls the function on every master at once
	err = rdb.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		if k, err := c.DBSize(ctx).Result(); err == nil && k > 0 {
			n.Add(1)
		}
		return nil
	})
	if err != nil || int(n.Load()) != len(addrs) {
		t.Fatalf("keys on %d of %d masters (%v)", n.Load(), len(addrs), err)
	}
}
