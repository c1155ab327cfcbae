// Package testenv gives integration tests real servers: a private redis-server and
// clickhouse-server started once per test binary on free loopback ports (installed from
// Debian packages when missing), and an in-process kfake Kafka per test. Each test gets
// its own Redis key prefix, ClickHouse database and Kafka topic prefix, so tests never
// see each other's data and nothing is flushed.
//
// HERALD_TEST_REDIS (a redis:// URL), HERALD_TEST_CLICKHOUSE (host:port of the native
// protocol) and HERALD_TEST_KAFKA (comma-separated brokers) point tests at existing servers.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/localstack"
)

var (
	mu      sync.Mutex
	baseDir string
	redisS  *localstack.Server
	chS     *localstack.Server
)

// Main runs the package's tests and then stops the servers it started. Call it from
// TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	// Test receivers listen on 127.0.0.1: outbound webhooks may reach them (tests of the
	// refusal unset it with t.Setenv).
	if os.Getenv("HERALD_WEBHOOKS_ALLOW_PRIVATE") == "" {
		_ = os.Setenv("HERALD_WEBHOOKS_ALLOW_PRIVATE", "true")
	}
	code := m.Run()
	mu.Lock()
	_ = redisS.Stop()
	_ = chS.Stop()
	if baseDir != "" {
		_ = os.RemoveAll(baseDir)
	}
	mu.Unlock()
	os.Exit(code)
}

// Unique returns a short random identifier usable in key prefixes and database names.
func Unique() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func dir(t testing.TB) string {
	if baseDir == "" {
		d, err := os.MkdirTemp("", "herald-test-")
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		baseDir = d
	}
	return baseDir
}

// RedisAddr returns the address of the test redis-server, starting it if needed.
func RedisAddr(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("HERALD_TEST_REDIS"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("testenv: HERALD_TEST_REDIS: %v", err)
		}
		return opt.Addr
	}
	mu.Lock()
	defer mu.Unlock()
	if redisS == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := localstack.EnsureInstalled(ctx, nil); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		s, err := localstack.StartRedis(ctx, filepath.Join(dir(t), "redis"))
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		redisS = s
	}
	return redisS.Addr
}

// Redis returns a client of the test redis-server and a key prefix of this test's own.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	addr := RedisAddr(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 32})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("testenv: redis ping: %v", err)
	}
	return rdb, "t" + Unique() + ":"
}

// ClickHouseAddr returns the native address of the test clickhouse-server, starting it if needed.
func ClickHouseAddr(t testing.TB) string {
	t.Helper()
	if a := os.Getenv("HERALD_TEST_CLICKHOUSE"); a != "" {
		return strings.TrimPrefix(a, "clickhouse://")
	}
	mu.Lock()
	defer mu.Unlock()
	if chS == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := localstack.EnsureInstalled(ctx, nil); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		s, err := localstack.StartClickHouse(ctx, filepath.Join(dir(t), "clickhouse"))
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		chS = s
	}
	return chS.Addr
}

// ClickHouse creates a database of this test's own and returns a connection whose
// default database it is, with its name. The database is dropped when the test ends.
func ClickHouse(t testing.TB) (driver.Conn, string) {
	t.Helper()
	addr := ClickHouseAddr(t)
	db := "t_" + Unique()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatalf("testenv: clickhouse: %v", err)
	}
	defer admin.Close()
	if err := admin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		t.Fatalf("testenv: clickhouse: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if a, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}}); err == nil {
			_ = a.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
			a.Close()
		}
	})
	return conn, db
}

// ClickHouseDSN returns a clickhouse:// DSN for the test server and database db.
func ClickHouseDSN(t testing.TB, db string) string {
	return fmt.Sprintf("clickhouse://%s/%s", ClickHouseAddr(t), db)
}

// Kafka returns brokers and topic names of this test's own: a fresh in-process kfake
// cluster, or HERALD_TEST_KAFKA with a unique topic prefix. The topics are created with
// the given number of partitions.
func Kafka(t testing.TB, partitions int) ([]string, kafkax.Topics) {
	t.Helper()
	var brokers []string
	topics := kafkax.NewTopics("herald.")
	if b := os.Getenv("HERALD_TEST_KAFKA"); b != "" {
		brokers = strings.Split(b, ",")
		topics = kafkax.NewTopics("t" + Unique() + ".")
	} else {
		e, err := kafkax.StartEmbedded(0)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		t.Cleanup(e.Close)
		brokers = e.Brokers
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := kafkax.EnsureTopics(ctx, brokers, topics.All(), partitions); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return brokers, topics
}
