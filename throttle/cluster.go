package throttle

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// onCluster says whether rdb is a Redis Cluster client: the keys one script or
// transaction touches must then share a slot (see the package documentation).
func onCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// consentBase is where the consent ledger's keys start: P consent: on one Redis, and
// P {consent}: on a Redis Cluster, whose hash tag keeps the chain heads, lengths, dirty
// marks and states in one slot (the ledger moves them in one script; a checkpoint reads
// heads and lengths in one transaction). Each of those keys is one hash or set already,
// so a single slot loses no spreading.
func consentBase(prefix string, rdb redis.UniversalClient) string {
	if onCluster(rdb) {
		return prefix + "{consent}:"
	}
	return prefix + "consent:"
}

// consentKey maps a key name "consent:…" to the layout of rdb, and the checkpoint's
// "ledger:lock" (one script checks it and moves consent:dirty:taken) to P {consent}:ledger:lock
// on a cluster; other names are prefix + name.
func consentKey(prefix string, rdb redis.UniversalClient, name string) string {
	if rest, ok := strings.CutPrefix(name, "consent:"); ok {
		return consentBase(prefix, rdb) + rest
	}
	if name == "ledger:lock" && onCluster(rdb) {
		return consentBase(prefix, rdb) + name
	}
	return prefix + name
}

var clusterScanMu sync.Mutex

// scanKeys returns the keys matching pattern, on every master of a cluster.
func scanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	var out []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return iter.Err()
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			var part []string
			iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
			for iter.Next(ctx) {
				part = append(part, iter.Val())
			}
			if err := iter.Err(); err != nil {
				return err
			}
			clusterScanMu.Lock()
			out = append(out, part...)
			clusterScanMu.Unlock()
			return nil
		})
		return out, err
	}
	return out, scan(ctx, rdb)
}
