package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/localstack"
	"github.com/herald-dev/herald/internal/procstat"
)

// E2ELayout is the cluster layout of `herald bench e2e --redis-cluster`: a Redis
// Cluster of RedisNodes masters, and Serves, Workers and Sinks herald processes.
type E2ELayout struct {
	RedisNodes, Serves, Workers, Sinks int
	// Cmd returns the command of one herald process of role ("serve", "worker" or
	// "sink") with env (HERALD_* of the layout) added; it is started by the bench.
	Cmd func(role string, i int, env []string) *exec.Cmd
}

// E2EClusterResult is one run of both layouts: the single-node layout as `bench e2e`
// runs it (one Redis, serve and sink in the bench's process, one worker process), then
// the cluster layout, on the same machine in the same run.
type E2EClusterResult struct {
	Single     E2EResult `json:"single"`
	Cluster    E2EResult `json:"cluster"`
	RedisNodes int       `json:"redis_nodes"`
	Serves     int       `json:"serves"`
	Workers    int       `json:"workers"`
	Sinks      int       `json:"sinks"`
	// DrainedToSingle is the cluster layout's drained messages/s ÷ the single layout's.
	DrainedToSingle float64 `json:"drained_cluster_to_single"`
}

// BenchE2ECluster runs BenchE2E, then the same campaign on the cluster layout.
func BenchE2ECluster(ctx context.Context, cfg Config, o E2EOptions, l E2ELayout) (E2EClusterResult, error) {
	res := E2EClusterResult{RedisNodes: l.RedisNodes, Serves: l.Serves, Workers: l.Workers, Sinks: l.Sinks}
	progress := o.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	single := o
	single.DataDir = filepath.Join(o.DataDir, "single")
	single.Progress = func(stage string, done, total int64) { progress("single: "+stage, done, total) }
	// The single layout as it was measured against the cluster: sandbox and sink in the
	// bench's process (the cluster layout keeps its sandbox there too).
	single.SandboxCmd, single.SinkCmd = nil, nil
	var err error
	if res.Single, err = BenchE2E(ctx, cfg, single); err != nil {
		return res, fmt.Errorf("single-node layout: %w", err)
	}
	clustered := o
	clustered.DataDir = filepath.Join(o.DataDir, "cluster")
	clustered.Progress = func(stage string, done, total int64) { progress("cluster: "+stage, done, total) }
	if res.Cluster, err = benchE2EOnCluster(ctx, cfg, clustered, l); err != nil {
		return res, fmt.Errorf("cluster layout: %w", err)
	}
	if res.Single.MsgPerSecDrain > 0 {
		res.DrainedToSingle = res.Cluster.MsgPerSecDrain / res.Single.MsgPerSecDrain
	}
	return res, nil
}

// benchE2EOnCluster is BenchE2E on the cluster layout: the sandbox and one scheduler in
// this process, every other role in processes of its own, the sandbox's webhooks spread
// over the serve processes by a round-robin front.
func benchE2EOnCluster(ctx context.Context, cfg Config, o E2EOptions, l E2ELayout) (E2EResult, error) {
	res := E2EResult{Contacts: o.Contacts, Senders: o.Senders, Rate: o.Rate, ProcessCPUs: o.ProcessCPUs}
	progress := o.Progress
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg.Registry = nil // a registry of its own: the single layout's run registered its metrics
	cfg.Defaults()
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return res, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return res, err
	}
	if err := localstack.EnsureInstalled(ctx, cfg.Logger); err != nil {
		return res, err
	}
	progress("servers", 0, 1)
	rc, err := localstack.StartRedisCluster(ctx, filepath.Join(dir, "redis"), l.RedisNodes)
	if err != nil {
		return res, err
	}
	defer rc.Stop()
	chs, err := localstack.StartClickHouse(ctx, filepath.Join(dir, "clickhouse"))
	if err != nil {
		return res, err
	}
	defer chs.Stop()
	kf, err := kafkax.StartEmbedded(0)
	if err != nil {
		return res, err
	}
	defer kf.Close()
	cfg.KafkaBrokers = kf.Brokers
	cfg.RedisURL = RedisClusterURL(rc.Addrs())
	cfg.ClickHouseDSN = "clickhouse://" + chs.Addr + "/herald"
	s, err := NewStack(ctx, cfg, "", sandbox.Config{
		Throughput: o.Rate, DelayScale: 0.01, ReadRate: 0.5, UndeliverableRate: 0.02, Seed: 7,
		Templates: []sandbox.ApprovedTemplate{{Name: "bench_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}},
	})
	if err != nil {
		return res, err
	}
	defer s.Close()
	dev := &Dev{Stack: s, ClickHouse: chs}
	s.NoWorker, s.NoSink = true, true // in processes of their own
	progress("servers", 1, 1)
	c := s.Deps.Cfg
	env := []string{
		"HERALD_KAFKA_BROKERS=" + strings.Join(c.KafkaBrokers, ","), "HERALD_REDIS_URL=" + c.RedisURL,
		"HERALD_CLICKHOUSE_DSN=" + c.ClickHouseDSN, "HERALD_WHATSAPP_API_URL=" + c.WhatsAppURL,
		"HERALD_WHATSAPP_APP_SECRET=" + c.AppSecret, "HERALD_WHATSAPP_VERIFY_TOKEN=" + c.VerifyToken,
		"HERALD_REDIS_PREFIX=" + c.Prefix, "HERALD_TOPIC_PREFIX=" + c.TopicPrefix,
		"HERALD_CLICK_KEY=" + c.ClickKey, "HERALD_CLICK_BASE_URL=" + c.ClickBaseURL,
	}
	var procs []*exec.Cmd
	stopProcs := func() time.Duration {
		var cpu time.Duration
		for _, p := range procs {
			if p.ProcessState == nil {
				_ = p.Process.Signal(syscall.SIGTERM)
				_ = p.Wait()
			}
			cpu += procstat.ExitedCPU(p.ProcessState.SysUsage())
		}
		procs = nil
		return cpu
	}
	defer stopProcs()
	start := func(role string, i int, extra ...string) error {
		cmd := l.Cmd(role, i, o.processEnv(append(append(os.Environ(), env...), extra...)))
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s %d: %w", role, i, err)
		}
		procs = append(procs, cmd)
		return nil
	}
	var serves []string
	for i := range l.Serves {
		addr, err := freeAddr()
		if err != nil {
			return res, err
		}
		if err := start("serve", i, "HERALD_LISTEN="+addr); err != nil {
			return res, err
		}
		serves = append(serves, "http://"+addr)
	}
	for _, u := range serves {
		if err := waitHealthy(ctx, u, 30*time.Second); err != nil {
			return res, err
		}
	}
	for i := range l.Workers {
		if err := start("worker", i); err != nil {
			return res, err
		}
	}
	for i := range l.Sinks {
		if err := start("sink", i); err != nil {
			return res, err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Sandbox.Run(gctx) })
	g.Go(func() error { return ServeHTTP(gctx, s.sandboxL, s.Sandbox.Handler()) })
	g.Go(func() error { return ServeHTTP(gctx, s.serveL, RoundRobin(serves)) })
	g.Go(func() error { return Scheduler(gctx, s.Deps) })
	stop := func() error {
		cancel()
		return g.Wait()
	}
	if err := e2eSetup(gctx, dev, o, progress); err != nil {
		return res, errors.Join(err, stop())
	}
	rawN := max(20_000, min(o.Contacts, 100_000))
	progress("raw HTTP ceiling (before)", 0, 1)
	var cpuBefore, cpuAfter float64
	if res.RawBefore, cpuBefore, err = rawRequestRate(gctx, rawN); err != nil {
		return res, errors.Join(err, stop())
	}
	nodesCPU := func() (d time.Duration) {
		for _, n := range rc.Nodes {
			d += procstat.ProcessCPU(n.Pid())
		}
		return d
	}
	redis0 := nodesCPU()
	err = e2eRun(gctx, dev, localSandbox{s.Sandbox}, nil, o, &res, progress)
	res.Processes = nil // the layout's processes are summed below
	redisCPU := nodesCPU() - redis0
	children := stopProcs()
	if err != nil {
		return res, errors.Join(err, stop())
	}
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	progress("raw HTTP ceiling (after)", 0, 1)
	if res.RawAfter, cpuAfter, err = rawRequestRate(parent, rawN); err != nil {
		return res, err
	}
	progress("raw HTTP ceiling (after)", 1, 1)
	if res.Sent > 0 {
		// Every herald process of the layout counts as "worker" CPU here.
		res.WorkerCPUMSPerMsg = children.Seconds() / float64(res.Sent) * 1000
		res.RedisCPUMSPerMsg = redisCPU.Seconds() / float64(res.Sent) * 1000 // every node (includes the campaign's drain)
	}
	res.RawRequestsPerSec = (res.RawBefore + res.RawAfter) / 2
	res.CeilingMsgPerSec = res.RawRequestsPerSec / res.RequestsPerMsg
	res.Ratio = res.MsgPerSec / res.CeilingMsgPerSec
	res.RatioDrained = res.MsgPerSecDrain / res.CeilingMsgPerSec
	res.RawCPUPerRequest = (cpuBefore + cpuAfter) / 2
	res.TotalCPUMSPerMsg = res.CPUMSPerMsg + res.WorkerCPUMSPerMsg + res.RedisCPUMSPerMsg + res.CHCPUMSPerMsg
	if res.TotalCPUMSPerMsg > 0 {
		res.RatioCPU = res.RawCPUPerRequest * res.RequestsPerMsg / res.TotalCPUMSPerMsg
	}
	return res, nil
}

// waitHealthy waits for u's /healthz to answer.
func waitHealthy(ctx context.Context, u string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		r, err := http.Get(u + "/healthz")
		if err == nil {
			r.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %v: %w", u, within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RoundRobin is a front for several serve processes: each request goes to the next
// backend (base URLs), and on to the one after when a backend does not answer (a
// process that died), so a provider posting to one URL reaches them all.
func RoundRobin(backends []string) http.Handler {
	var next atomic.Uint64
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		first := next.Add(1)
		for k := range uint64(len(backends)) {
			u := backends[(first+k)%uint64(len(backends))] + r.URL.RequestURI()
			req, _ := http.NewRequestWithContext(r.Context(), r.Method, u, bytes.NewReader(body))
			req.Header = r.Header.Clone()
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
			resp.Body.Close()
			return
		}
		http.Error(w, "no serve process answered", http.StatusServiceUnavailable)
	})
}

// PrintE2ECluster prints both layouts and their drained ratio.
func PrintE2ECluster(w io.Writer, r E2EClusterResult) {
	fmt.Fprintf(w, "single-node layout (1 redis-server; serve and sink in the bench process, 1 worker process):\n")
	PrintE2E(w, r.Single)
	fmt.Fprintf(w, "\ncluster layout (Redis Cluster of %d masters; %d serve, %d worker and %d sink processes):\n", r.RedisNodes, r.Serves, r.Workers, r.Sinks)
	PrintE2E(w, r.Cluster)
	fmt.Fprintf(w, "  (cluster: \"worker CPU\" is every herald process's, \"redis\" every node's; peak RSS is the bench process's)\n")
	fmt.Fprintf(w, "\ndrained messages/s, cluster ÷ single: %.2f (same machine, same run)\n", r.DrainedToSingle)
}
