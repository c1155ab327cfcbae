// Package localstack installs and starts private redis-server and clickhouse-server
// instances on free loopback ports, with their data under a directory of ours. It is
// what `herald dev`, `herald demo` and the integration tests run against; production
// points Herald at real servers instead and never uses this package.
package localstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Packages are the Debian packages that provide the servers.
var Packages = []string{"redis-server", "clickhouse-server"}

var installMu sync.Mutex

// EnsureInstalled installs redis-server and clickhouse-server from Debian packages when
// either binary is missing. It needs root (or passwordless sudo) and apt-get.
func EnsureInstalled(ctx context.Context, log *slog.Logger) error {
	installMu.Lock()
	defer installMu.Unlock()
	var missing []string
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing = append(missing, "redis-server")
	}
	if _, err := clickhouseBinary(); err != nil {
		missing = append(missing, "clickhouse-server")
	}
	if len(missing) == 0 {
		return nil
	}
	if log != nil {
		log.Info("installing missing servers from Debian packages", "packages", strings.Join(missing, " "))
	}
	var prefix []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return fmt.Errorf("install %s: not root and no sudo; run: apt-get install -y %s", strings.Join(missing, " "), strings.Join(missing, " "))
		}
		prefix = []string{"sudo", "-n"}
	}
	run := func(args ...string) error {
		args = append(prefix, args...)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
		return nil
	}
	if err := run("apt-get", "update", "-qq"); err != nil {
		return fmt.Errorf("install servers: %w", err)
	}
	if err := run(append([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends"}, missing...)...); err != nil {
		return fmt.Errorf("install servers: %w", err)
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func clickhouseBinary() (string, error) {
	for _, name := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("clickhouse-server not found")
}

// Server is a running private server process.
type Server struct {
	Name string
	Addr string // host:port of the main protocol (RESP for Redis, native TCP for ClickHouse)
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Pid is the server's process id (0 if it is not running).
func (s *Server) Pid() int {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop terminates the server and waits for it (bounded).
func (s *Server) Stop() error {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return nil
}

// Kill stops the server abruptly (for fault tests).
func (s *Server) Kill() {
	if s != nil && s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(name, dir, addr string, logFile string, argv []string) (*Server, error) {
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = lf
	cmd.Stderr = lf
	// The server dies with us: a crashed test or a killed `herald dev` leaves no orphan.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &Server{Name: name, Addr: addr, Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		lf.Close()
		close(s.done)
	}()
	return s, nil
}

func waitTCP(ctx context.Context, s *Server, logFile string, ready func(net.Conn) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("%s exited during start-up: %v\n%s", s.Name, s.err, tail(b, 3000))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			ok := ready == nil || ready(c)
			c.Close()
			if ok {
				return nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	b, _ := os.ReadFile(logFile)
	return fmt.Errorf("%s did not start on %s within 30s\n%s", s.Name, s.Addr, tail(b, 3000))
}

// StartRedis starts redis-server on a free loopback port with its files under dir.
// Persistence is off: the local stack is for development and tests.
func StartRedis(ctx context.Context, dir string) (*Server, error) {
	return StartRedisWith(ctx, dir, RedisOptions{})
}

// RedisOptions adjust StartRedisWith.
type RedisOptions struct {
	Port    int  // 0: a free port
	Durable bool // append-only file fsynced on every write: a restart loses nothing acknowledged
}

// StartRedisWith starts redis-server with its files under dir.
func StartRedisWith(ctx context.Context, dir string, o RedisOptions) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	persist := []string{"--save", "", "--appendonly", "no"}
	if o.Durable {
		persist = []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always"}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := o.Port
		if port == 0 {
			var err error
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		logFile := filepath.Join(dir, "redis.log")
		args := append([]string{"redis-server",
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir}, persist...)
		args = append(args, "--daemonize", "no", "--protected-mode", "no",
			"--latency-monitor-threshold", "50", "--slowlog-log-slower-than", "50000")
		s, err := start("redis-server", dir, addr, logFile, args)
		if err != nil {
			return nil, err
		}
		err = waitTCP(ctx, s, logFile, func(c net.Conn) bool {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte("PING\r\n")); err != nil {
				return false
			}
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			return strings.HasPrefix(string(buf[:n]), "+PONG")
		})
		if err == nil {
			return s, nil
		}
		s.Kill()
		lastErr = err
	}
	return nil, lastErr
}

const chConfig = `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{{DIR}}/clickhouse-server.log</log><errorlog>{{DIR}}/clickhouse-server.err.log</errorlog><size>10M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{{TCP}}</tcp_port>
  <http_port>{{HTTP}}</http_port>
  <path>{{DIR}}/data/</path>
  <tmp_path>{{DIR}}/tmp/</tmp_path>
  <format_schema_path>{{DIR}}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`

const chUsers = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`

// StartClickHouse starts clickhouse-server on free loopback ports (native and HTTP)
// with its data under dir. Addr is the native-protocol address.
func StartClickHouse(ctx context.Context, dir string) (*Server, error) {
	bin, err := clickhouseBinary()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"data", "tmp", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		tcp, err := FreePort()
		if err != nil {
			return nil, err
		}
		httpPort, err := FreePort()
		if err != nil {
			return nil, err
		}
		cfg := strings.NewReplacer("{{DIR}}", dir, "{{TCP}}", strconv.Itoa(tcp), "{{HTTP}}", strconv.Itoa(httpPort)).Replace(chConfig)
		if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(chUsers), 0o644); err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(tcp)
		logFile := filepath.Join(dir, "stdout.log")
		s, err := start("clickhouse-server", dir, addr, logFile, []string{bin, "--config-file=" + filepath.Join(dir, "config.xml")})
		if err != nil {
			return nil, err
		}
		if err = waitTCP(ctx, s, logFile, nil); err == nil {
			return s, nil
		}
		s.Kill()
		lastErr = err
	}
	return nil, lastErr
}
