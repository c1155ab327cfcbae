package localstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of private redis-server processes, each a master of
// a third (or so) of the hash slots, without replicas.
type RedisCluster struct {
	Nodes []*Server
}

// Addrs returns the nodes' host:port.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Stop terminates every node.
func (c *RedisCluster) Stop() error {
	if c == nil {
		return nil
	}
	for _, n := range c.Nodes {
		_ = n.Stop()
	}
	return nil
}

// StartRedisCluster starts n redis-server processes in cluster mode on free loopback
// ports (files under dir/0, dir/1, …), splits the 16384 slots between them, joins them
// and waits until every node reports cluster_state:ok and knows the whole slot map.
func StartRedisCluster(ctx context.Context, dir string, n int) (*RedisCluster, error) {
	if n < 1 {
		return nil, errors.New("redis cluster: at least one node")
	}
	c := &RedisCluster{}
	for i := range n {
		s, err := startClusterNode(ctx, filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	if err := c.join(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func startClusterNode(ctx context.Context, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		if port > 65535-10000 {
			continue // the cluster bus listens on port + 10000
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		logFile := filepath.Join(dir, "redis.log")
		_ = os.Remove(filepath.Join(dir, "nodes.conf"))
		s, err := start("redis-server", dir, addr, logFile, []string{"redis-server",
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"})
		if err != nil {
			return nil, err
		}
		err = waitTCP(ctx, s, logFile, func(c net.Conn) bool {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte("PING\r\n")); err != nil {
				return false
			}
			buf := make([]byte, 16)
			k, _ := c.Read(buf)
			return strings.HasPrefix(string(buf[:k]), "+PONG")
		})
		if err == nil {
			return s, nil
		}
		s.Kill()
		lastErr = err
	}
	if lastErr == nil {
		lastErr = errors.New("no usable port")
	}
	return nil, lastErr
}

// join gives each node its range of slots, introduces the nodes to the first and
// waits for a consistent map.
func (c *RedisCluster) join(ctx context.Context) error {
	clients := make([]*redis.Client, len(c.Nodes))
	for i, n := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr})
		defer clients[i].Close()
	}
	const slots = 16384
	for i, rdb := range clients {
		lo, hi := i*slots/len(clients), (i+1)*slots/len(clients)-1
		if err := rdb.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			return fmt.Errorf("redis cluster: node %s: add slots: %w", c.Nodes[i].Addr, err)
		}
	}
	host, port, _ := net.SplitHostPort(c.Nodes[0].Addr)
	for i, rdb := range clients[1:] {
		if err := rdb.ClusterMeet(ctx, host, port).Err(); err != nil {
			return fmt.Errorf("redis cluster: node %s: meet: %w", c.Nodes[i+1].Addr, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, rdb := range clients {
			info, err := rdb.ClusterInfo(ctx).Result()
			ok = ok && err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(clients))+"\r") &&
				strings.Contains(info, "cluster_slots_assigned:16384")
			if !ok {
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("redis cluster: not ready within 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
