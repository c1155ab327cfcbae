package app

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/testenv"
)

// extraChildRoles are the roles a child process of this test binary may run besides
// fault_test.go's worker and launch (childRoleEnv names the role).
var extraChildRoles = map[string]func() int{
	"cluster-serve":  func() int { return runClusterChild("serve") },
	"cluster-worker": func() int { return runClusterChild("worker") },
	"cluster-sink":   func() int { return runClusterChild("sink") },
	"firer":          runFirerChild,
}

// clusterChildEnv carries a clusterChild as JSON.
const clusterChildEnv = "HERALD_TEST_CLUSTER_CHILD"

// clusterChild is what a serve, worker or sink process of the cluster layout needs.
type clusterChild struct {
	KafkaBrokers                  []string
	RedisURL, Prefix, TopicPrefix string
	ClickHouseDSN                 string
	AppSecret, VerifyToken        string
	WhatsAppURL                   string
	ClickKey, ClickBaseURL        string
	ClaimLease, StaleSendAfter    time.Duration
	Listen                        string // serve: its address
}

func runClusterChild(role string) int {
	var cc clusterChild
	if err := json.Unmarshal([]byte(os.Getenv(clusterChildEnv)), &cc); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	cfg := Config{KafkaBrokers: cc.KafkaBrokers, RedisURL: cc.RedisURL, Prefix: cc.Prefix, TopicPrefix: cc.TopicPrefix,
		ClickHouseDSN: cc.ClickHouseDSN, AppSecret: cc.AppSecret, VerifyToken: cc.VerifyToken, WhatsAppURL: cc.WhatsAppURL,
		ClickKey: cc.ClickKey, ClickBaseURL: cc.ClickBaseURL, ClaimLease: cc.ClaimLease, StaleSendAfter: cc.StaleSendAfter,
		NoScheduler: true, HTTPAddr: cc.Listen,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d := NewDeps(cfg)
	defer d.Close()
	var err error
	switch role {
	case "serve":
		var l net.Listener
		if l, err = net.Listen("tcp", cc.Listen); err == nil {
			err = Serve(ctx, d, l)
		}
	case "worker":
		err = Worker(ctx, d)
	case "sink":
		err = Sink(ctx, d)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	return 0
}

// clusterLayout is Herald on a three-node Redis Cluster with its roles in processes of
// their own: two serve processes behind a round-robin front (the sandbox posts its
// webhooks to the front), three workers and two sinks; the sandbox and one scheduler run
// in the test.
type clusterLayout struct {
	s       *Stack
	ctx     context.Context
	serves  []*workerProcs // one each: a restarted serve listens where it did
	serveAt []string
	workers *workerProcs
	sinks   *workerProcs
}

// startClusterLayout starts the layout (servers, processes, the front) and stops it all
// when the test ends.
func startClusterLayout(t *testing.T, sc sandbox.Config) *clusterLayout {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Redis Cluster and seven Herald processes")
	}
	_, redisURL := testenv.RedisCluster(t)
	_, db := testenv.ClickHouse(t)
	brokers, topics := testenv.Kafka(t, 6)
	cfg := Config{KafkaBrokers: brokers, TopicPrefix: strings.TrimSuffix(topics.Outbound, "outbound"),
		RedisURL: redisURL, Prefix: "herald:", ClickHouseDSN: testenv.ClickHouseDSN(t, db), Partitions: 6,
		// A send in doubt is queued again once StaleSendAfter passes without a status
		// webhook, which assumes statuses arrive well within it (see faultStaleAfter).
		ClaimLease: 3 * time.Second, StaleSendAfter: faultStaleAfter}
	sc.RetryBase, sc.RetryMax = cmp.Or(sc.RetryBase, 250*time.Millisecond), cmp.Or(sc.RetryMax, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	s, err := NewStack(ctx, cfg, "", sc)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := s.Deps.Cfg
	base := clusterChild{KafkaBrokers: c.KafkaBrokers, RedisURL: c.RedisURL, Prefix: c.Prefix, TopicPrefix: c.TopicPrefix,
		ClickHouseDSN: c.ClickHouseDSN, AppSecret: c.AppSecret, VerifyToken: c.VerifyToken, WhatsAppURL: c.WhatsAppURL,
		ClickKey: c.ClickKey, ClickBaseURL: c.ClickBaseURL, ClaimLease: c.ClaimLease, StaleSendAfter: c.StaleSendAfter}
	procs := func(role string, cc clusterChild) *workerProcs {
		b, _ := json.Marshal(cc)
		return &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"="+role, clusterChildEnv+"="+string(b))}
	}
	L := &clusterLayout{s: s, ctx: ctx, workers: procs("cluster-worker", base), sinks: procs("cluster-sink", base)}
	for range 2 {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		cc := base
		cc.Listen = addr
		p := procs("cluster-serve", cc)
		L.serves, L.serveAt = append(L.serves, p), append(L.serveAt, "http://"+addr)
		p.start()
	}
	for range 3 {
		L.workers.start()
	}
	for range 2 {
		L.sinks.start()
	}
	all := append([]*workerProcs{L.workers, L.sinks}, L.serves...)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Sandbox.Run(gctx) })
	g.Go(func() error { return ServeHTTP(gctx, s.sandboxL, s.Sandbox.Handler()) })
	g.Go(func() error { return ServeHTTP(gctx, s.serveL, RoundRobin(L.serveAt)) })
	g.Go(func() error { return Scheduler(gctx, s.Deps) })
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("HERALD_TEST_CHILD_LOGS") != "" {
			for _, p := range all {
				p.logs()
			}
		}
		for _, p := range all {
			p.stopAll()
		}
		cancel()
		if err := g.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("layout: %v", err)
		}
		s.Close()
	})
	// Every serve answers before the campaign starts.
	for _, u := range L.serveAt {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, err := http.Get(u + "/healthz")
			if err == nil {
				r.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("serve at %s did not start: %v", u, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return L
}

// clusterCampaign seeds n contacts and launches a campaign to senders, each at rate
// per second, perMinute per minute and a daily tier of tier unique recipients.
func (L *clusterLayout) clusterCampaign(t *testing.T, n int, senders []string, rate float64, perMinute, tier int) dispatcher.Campaign {
	t.Helper()
	comp := seedAudience(t, L.ctx, L.s.Deps, n, e2eTemplate)
	for _, id := range senders {
		s := dispatcher.Sender{ID: id, Channel: "whatsapp", PhoneNumberID: id, Token: DevSandboxToken, Rate: rate, PerMinute: perMinute, Tier: tier}
		if err := comp.Senders.Put(L.ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := comp.Campaigns.Create(L.ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: senders}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(L.ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	return cp
}

// assertClusterRun checks a finished campaign on the layout: the funnel in ClickHouse
// equals the sandbox's record, every contact got exactly one message, and each sender
// kept to its rate, its per-minute cap and its daily tier as the sandbox saw its sends.
func (L *clusterLayout) assertClusterRun(t *testing.T, cp dispatcher.Campaign, n int, rate float64, perMinute, tier int) {
	t.Helper()
	comp, err := L.s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	st := waitCompletedWithin(t, L.ctx, comp.Campaigns, cp.ID, 3*time.Minute)
	// Seven processes under -race beside the rest of the suite: the sinks can lag for
	// minutes (1,020 events behind after 2 min once in CI, 48 s for all on a quiet machine).
	waitSettled(t, L.ctx, L.s, cp.ID, 4*time.Minute)
	assertOnceEach(t, L.s, cp.ID, n, st)
	byPhone := map[string][]time.Time{}
	unique := map[string]map[string]bool{}
	for _, r := range L.s.Sandbox.Records() {
		if !strings.HasPrefix(r.CallbackData, cp.ID+":") {
			continue
		}
		byPhone[r.PhoneNumberID] = append(byPhone[r.PhoneNumberID], r.AcceptedAt)
		if unique[r.PhoneNumberID] == nil {
			unique[r.PhoneNumberID] = map[string]bool{}
		}
		unique[r.PhoneNumberID][r.WaID] = true
	}
	// The governor gives a sender at most ⌈w × rate⌉ slots in any window w; a send
	// reaches the sandbox a little after its slot, so windows allow that delay (jitter).
	const jitter = 250 * time.Millisecond
	for phone, ts := range byPhone {
		if len(unique[phone]) > tier {
			t.Errorf("sender %s reached %d unique recipients, over its tier of %d", phone, len(unique[phone]), tier)
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		for _, w := range []time.Duration{time.Second, 5 * time.Second} {
			most := maxInWindow(ts, w)
			t.Logf("sender %s: %d unique recipients; at most %d sends in %v (rate %.0f/s)", phone, len(unique[phone]), most, w, rate)
			if limit := int(float64(w+jitter)/float64(time.Second)*rate) + 1; most > limit {
				t.Errorf("sender %s: %d sends in %v, over its rate %.0f/s (at most %d with %v of jitter)", phone, most, w, rate, limit, jitter)
			}
		}
		if most := maxInWindow(ts, time.Minute-jitter); most > perMinute {
			t.Errorf("sender %s: %d sends in a minute, over its cap of %d", phone, most, perMinute)
		}
	}
	if len(byPhone) == 0 {
		t.Fatal("no sends recorded")
	}
}

// maxInWindow is the most of the sorted times in any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	most, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= w {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

var clusterSenders = []string{"106540352250001", "106540352250002", "106540352250003", "106540352250004", "106540352250005"}

// The whole pipeline on the cluster layout: a campaign of 5,000 contacts over five
// senders, each with a daily tier of exactly its share (round-robin routing gives each
// sender every fifth contact: a tier place counted twice or leaked would leave a
// contact deferred for a day and the campaign unfinished) and a per-minute cap.
func TestClusterLayoutEndToEnd(t *testing.T) {
	const n, rate, perMinute = 5000, 150.0, 3000
	tier := n / len(clusterSenders)
	L := startClusterLayout(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, ReadRate: 0.5, PairInterval: -1, Templates: welcomeSandbox})
	cp := L.clusterCampaign(t, n, clusterSenders, rate, perMinute, tier)
	L.assertClusterRun(t, cp, n, rate, perMinute, tier)
}

// The cluster layout with one worker and one serve killed with SIGKILL mid-campaign (and
// started again): the same assertions hold.
func TestClusterLayoutKilledWorkerAndServe(t *testing.T) {
	const n, rate, perMinute = 5000, 150.0, 3000
	tier := n / len(clusterSenders)
	L := startClusterLayout(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, ReadRate: 0.5, PairInterval: -1, Templates: welcomeSandbox})
	cp := L.clusterCampaign(t, n, clusterSenders, rate, perMinute, tier)
	accepted := func() int64 { return L.s.Sandbox.Stats().Accepted }
	deadline := time.Now().Add(time.Minute)
	for accepted() < n/4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d sent within a minute", accepted())
		}
		time.Sleep(20 * time.Millisecond)
	}
	kill := func(p *workerProcs, i int) {
		p.mu.Lock()
		c := p.cmds[i]
		p.mu.Unlock()
		_ = c.Process.Kill() // SIGKILL: no cleanup, no release, no flush
		_ = c.Wait()
	}
	kill(L.workers, 0)
	kill(L.serves[0], 0)
	if accepted() >= n {
		t.Fatal("the campaign finished before the kills: the test shows nothing")
	}
	time.Sleep(500 * time.Millisecond)
	L.workers.start()
	L.serves[0].start()
	L.assertClusterRun(t, cp, n, rate, perMinute, tier)
}
