package app

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis URLs (HERALD_REDIS_URL). One server: redis://[user:pass@]host:port/db,
// rediss:// with TLS, unix:///path. A Redis Cluster: redis+cluster://host1:port1,
// host2:port2,host3:port3/[?options] (rediss+cluster:// with TLS): the seed nodes, any
// of the cluster's masters; the client learns the rest of the map from them. A cluster
// has only database 0, so the path is empty or /0. Options are go-redis's URL options
// (dial_timeout, pool_size, …).
const (
	schemeCluster    = "redis+cluster"
	schemeClusterTLS = "rediss+cluster"
)

// IsRedisCluster says whether u names a Redis Cluster (redis+cluster:// or rediss+cluster://).
func IsRedisCluster(u string) bool {
	return strings.HasPrefix(u, schemeCluster+"://") || strings.HasPrefix(u, schemeClusterTLS+"://")
}

// RedisClusterURL returns the HERALD_REDIS_URL of a cluster with these seed nodes.
func RedisClusterURL(addrs []string) string {
	return schemeCluster + "://" + strings.Join(addrs, ",") + "/"
}

// parseRedisURL checks u and returns the options of one server or of a cluster (one of
// the two is nil).
func parseRedisURL(u string) (*redis.Options, *redis.ClusterOptions, error) {
	if !IsRedisCluster(u) {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "redis" && pu.Scheme != "rediss" && pu.Scheme != "unix") {
			return nil, nil, fmt.Errorf("want redis://host:port/db, rediss://…, unix:///path or redis+cluster://host1:port1,host2:port2,…/")
		}
		opt, err := redis.ParseURL(u)
		if err != nil {
			return nil, nil, err
		}
		return opt, nil, nil
	}
	scheme, rest, _ := strings.Cut(u, "://")
	hosts, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hosts, tail = rest[:i], rest[i:]
	}
	userinfo := ""
	if i := strings.LastIndexByte(hosts, '@'); i >= 0 {
		userinfo, hosts = hosts[:i+1], hosts[i+1:]
	}
	path, query, _ := strings.Cut(tail, "?")
	if path != "" && path != "/" && path != "/0" {
		return nil, nil, fmt.Errorf("a Redis Cluster has only database 0, not %q", strings.TrimPrefix(path, "/"))
	}
	var addrs []string
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || port == "" {
			return nil, nil, fmt.Errorf("cluster node %q: want host:port", h)
		}
		addrs = append(addrs, h)
	}
	if len(addrs) == 0 {
		return nil, nil, fmt.Errorf("no cluster nodes: want %s://host1:port1,host2:port2,…/", scheme)
	}
	base := "redis"
	if scheme == schemeClusterTLS {
		base = "rediss"
	}
	// go-redis's cluster URL: the first node as the host, the others as addr options.
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, nil, fmt.Errorf("options: %w", err)
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	opt, err := redis.ParseClusterURL(base + "://" + userinfo + addrs[0] + "?" + q.Encode())
	if err != nil {
		return nil, nil, err
	}
	return nil, opt, nil
}

// newRedisClient connects to the server or cluster u names, with Herald's pool size
// and read timeout unless the URL sets them.
func newRedisClient(u string) (redis.UniversalClient, error) {
	opt, copt, err := parseRedisURL(u)
	if err != nil {
		return nil, fmt.Errorf("HERALD_REDIS_URL: %w", err)
	}
	if copt != nil {
		if copt.PoolSize == 0 {
			copt.PoolSize = 64 // per node
		}
		if copt.ReadTimeout == 0 {
			copt.ReadTimeout = 5 * time.Second
		}
		return redis.NewClusterClient(copt), nil
	}
	opt.PoolSize = 64
	opt.ReadTimeout = 5 * time.Second
	return redis.NewClient(opt), nil
}
