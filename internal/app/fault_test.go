package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/localstack"
	"github.com/herald-dev/herald/internal/sandbox"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/templates"
)

// childRoleEnv makes the test binary run a Herald role instead of the tests: the fault
// tests start workers as real processes so that they can kill them with SIGKILL.
const (
	childRoleEnv   = "HERALD_TEST_CHILD_ROLE"
	childConfigEnv = "HERALD_TEST_CHILD_CONFIG"
)

// childConfig is what a child process needs of Config.
type childConfig struct {
	KafkaBrokers []string
	RedisURL     string
	Prefix       string
	TopicPrefix  string
	WhatsAppURL  string
	ClickKey     string
	ClickBaseURL string
	ClaimLease   time.Duration
}

func runChild() int {
	var cc childConfig
	if err := json.Unmarshal([]byte(os.Getenv(childConfigEnv)), &cc); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	cfg := Config{KafkaBrokers: cc.KafkaBrokers, RedisURL: cc.RedisURL, Prefix: cc.Prefix, TopicPrefix: cc.TopicPrefix,
		WhatsAppURL: cc.WhatsAppURL, ClickKey: cc.ClickKey, ClickBaseURL: cc.ClickBaseURL, ClaimLease: cc.ClaimLease, NoScheduler: true}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d := NewDeps(cfg)
	defer d.Close()
	if err := Worker(ctx, d); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

// workerProcs runs worker processes (this test binary in the worker role).
type workerProcs struct {
	t    *testing.T
	env  []string
	mu   sync.Mutex
	cmds []*exec.Cmd
}

func (w *workerProcs) start() *exec.Cmd {
	w.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = w.env
	var out bytes.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.cmds = append(w.cmds, cmd)
	w.mu.Unlock()
	return cmd
}

func (w *workerProcs) stopAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.cmds {
		if c.ProcessState == nil {
			_ = c.Process.Signal(syscall.SIGTERM)
			_ = c.Wait()
		}
	}
}

// Workers killed with SIGKILL at random moments, ten times, while three of them run a
// campaign: afterwards every contact got exactly one message at the sandbox (none twice,
// none missing) and the funnel in ClickHouse matches the sandbox's record.
// HERALD_FAULT_CONTACTS sets the audience (default 5,000; the scenario is 100,000).
func TestKilledWorkersNeitherDuplicateNorLose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("HERALD_FAULT_CONTACTS")); err == nil && v > 0 {
		n = v
	}
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, ReadRate: 0.5, PairInterval: -1,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter = 3*time.Second, 8*time.Second
			if st != nil {
				st.NoWorker = true
			}
		})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "+6681%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, &csv, ImportOptions{Source: "fault.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	// Two senders: the campaign lasts a few seconds, long enough for ten kills.
	rate := float64(n) / 8 / 2
	for _, id := range []string{"106540352240001", "106540352240002"} {
		if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: id, Channel: "whatsapp", PhoneNumberID: id, Token: DevSandboxToken, Rate: rate}); err != nil {
			t.Fatal(err)
		}
	}
	cc, _ := json.Marshal(childConfig{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		WhatsAppURL: d.Cfg.WhatsAppURL, ClickKey: d.Cfg.ClickKey, ClickBaseURL: d.Cfg.ClickBaseURL, ClaimLease: d.Cfg.ClaimLease})
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=worker", childConfigEnv+"="+string(cc))}
	defer procs.stopAll()
	live := []*exec.Cmd{procs.start(), procs.start(), procs.start()}

	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"106540352240001", "106540352240002"}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for kill := 0; kill < 10; kill++ {
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		i := rng.IntN(len(live))
		_ = live[i].Process.Kill() // SIGKILL: no cleanup, no release, no flush
		_ = live[i].Wait()
		live[i] = procs.start()
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 4*time.Minute)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if err := waitSink(wctx, d); err != nil {
		t.Fatal(err)
	}
	// Exactly one accepted message per contact.
	per := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		if strings.HasPrefix(r.CallbackData, cp.ID+":") {
			per[r.WaID]++
		}
	}
	dups := 0
	for _, c := range per {
		if c > 1 {
			dups++
		}
	}
	if dups > 0 || len(per) != n || st.Sent != int64(n) {
		t.Fatalf("after 10 kills: %d contacts messaged (want %d), %d more than once, status %+v", len(per), n, dups, st)
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := analytics.Funnel(ctx, conn, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := SandboxTruth(s.Sandbox.Records(), cp.ID).Check(f); err != nil {
		t.Fatal(err)
	}
}

func waitCompletedWithin(t *testing.T, ctx context.Context, c *dispatcher.Campaigns, id string, d time.Duration) dispatcher.Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := c.Status(ctx, id) // errors while a server restarts are retried
		if err == nil && st.State == dispatcher.Completed {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign %s did not complete: %+v (%v)", id, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Redis killed and restarted mid-campaign (durable: every write fsynced): while it is
// down nothing is sent (every send needs a claim, a policy check and a slot); when it is
// back the campaign resumes, and every contact gets exactly one message.
func TestRedisRestartMidCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a redis-server")
	}
	dir := t.TempDir()
	ctx0 := context.Background()
	srv, err := localstack.StartRedisWith(ctx0, dir, localstack.RedisOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Kill() }()
	port, _ := strconv.Atoi(srv.Addr[strings.LastIndex(srv.Addr, ":")+1:])
	const n = 3000
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}},
		func(c *Config, _ *Stack) { c.RedisURL, c.Prefix = "redis://"+srv.Addr+"/0", "herald:" })
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "+6681%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, &csv, ImportOptions{Source: "restart.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: "s", Channel: "whatsapp", PhoneNumberID: "106540352240009", Token: DevSandboxToken, Rate: 500}); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"s"}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	accepted := func() int64 { return s.Sandbox.Stats().Accepted }
	for accepted() < n/4 {
		time.Sleep(20 * time.Millisecond)
	}
	srv.Kill()              // SIGKILL: what was acknowledged is in the fsynced append-only file
	time.Sleep(time.Second) // sends already started finish
	before := accepted()
	time.Sleep(3 * time.Second)
	if after := accepted(); after != before {
		t.Fatalf("%d messages sent while Redis was down", after-before)
	}
	if before >= n {
		t.Fatal("the campaign finished before Redis went down: the test shows nothing")
	}
	if srv, err = localstack.StartRedisWith(ctx0, dir, localstack.RedisOptions{Durable: true, Port: port}); err != nil {
		t.Fatal(err)
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 3*time.Minute)
	per := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		if strings.HasPrefix(r.CallbackData, cp.ID+":") {
			per[r.WaID]++
		}
	}
	for wa, c := range per {
		if c > 1 {
			t.Errorf("%s got %d messages", wa, c)
		}
	}
	if len(per) != n || st.Sent != n {
		t.Fatalf("%d contacts messaged, want %d; status %+v", len(per), n, st)
	}
}

// ClickHouse unreachable for a while (HERALD_FAULT_CH_DOWN, default 60 s) while a campaign
// runs: sending goes on, events wait in Kafka, and when ClickHouse is back every one of
// them arrives: the funnel matches the sandbox.
func TestClickHouseDownEventsWaitInKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("keeps ClickHouse away for a minute")
	}
	down := time.Minute
	if v, err := time.ParseDuration(os.Getenv("HERALD_FAULT_CH_DOWN")); err == nil && v > 0 {
		down = v
	}
	_, db := testenv.ClickHouse(t)
	proxy := testenv.NewProxy(t, testenv.ClickHouseAddr(t))
	const n = 2000
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, ReadRate: 0.5, PairInterval: -1,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}},
		func(c *Config, _ *Stack) { c.ClickHouseDSN = "clickhouse://" + proxy.Addr + "/" + db })
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "+6681%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, &csv, ImportOptions{Source: "chdown.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: "s", Channel: "whatsapp", PhoneNumberID: "106540352240010", Token: DevSandboxToken, Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"s"}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Down()
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 2*time.Minute)
	wctx, cancel := context.WithTimeout(ctx, down+2*time.Minute)
	defer cancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(down) // the campaign is long done; the sink keeps failing and retrying
	proxy.Up(t)
	if err := waitSink(wctx, d); err != nil {
		t.Fatal(err)
	}
	chConn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := analytics.Funnel(ctx, chConn, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	truth := SandboxTruth(s.Sandbox.Records(), cp.ID)
	if truth.Accepted != n {
		t.Fatalf("sandbox accepted %d, want %d", truth.Accepted, n)
	}
	if err := truth.Check(f); err != nil {
		t.Fatal(err)
	}
}

// The provider answers bursts of 503s and 130429s: sends back off and retry, nothing is
// lost and nothing doubles.
func TestProviderErrorBursts(t *testing.T) {
	var armed atomic.Int64 // unix ns when the bursts start; 0: off
	fault := func() (int, int) {
		t0 := armed.Load()
		if t0 == 0 {
			return 0, 0
		}
		switch ph := time.Duration(time.Now().UnixNano()-t0) % (1500 * time.Millisecond); {
		case ph < 150*time.Millisecond:
			return 503, 0
		case ph >= 750*time.Millisecond && ph < 900*time.Millisecond:
			return 429, 130429
		}
		return 0, 0
	}
	const n = 800
	s, ctx := testStack(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Fault: fault,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "+6681%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, &csv, ImportOptions{Source: "bursts.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: "s", Channel: "whatsapp", PhoneNumberID: "106540352240011", Token: DevSandboxToken, Rate: 500}); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"s"}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(time.Now().UnixNano())
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 4*time.Minute)
	stats := s.Sandbox.Stats()
	if stats.Rejected[130429] == 0 || stats.Rejected[0] == 0 {
		t.Fatalf("no bursts were injected: %v", stats.Rejected)
	}
	per := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		if strings.HasPrefix(r.CallbackData, cp.ID+":") {
			per[r.WaID]++
		}
	}
	for wa, c := range per {
		if c > 1 {
			t.Errorf("%s got %d messages", wa, c)
		}
	}
	if len(per) != n || st.Sent != n || st.Failed != 0 {
		t.Fatalf("%d contacts messaged, want %d; status %+v; refusals %v", len(per), n, st, stats.Rejected)
	}
}

// Pause and resume twenty times during a campaign: every contact still gets exactly one
// message.
func TestPauseResumeTwentyTimes(t *testing.T) {
	const n = 2000
	s, ctx := testStack(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "+6681%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, &csv, ImportOptions{Source: "pause.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(e2eTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(e2eTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: "s", Channel: "whatsapp", PhoneNumberID: "106540352240012", Token: DevSandboxToken, Rate: 250}); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{"s"}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20; i++ {
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
		if _, err := comp.Campaigns.Pause(ctx, cp.ID); err != nil {
			t.Fatalf("pause %d: %v", i, err)
		}
		time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
		if _, err := comp.Campaigns.Resume(ctx, cp.ID); err != nil {
			t.Fatalf("resume %d: %v", i, err)
		}
	}
	if st, _ := comp.Campaigns.Status(ctx, cp.ID); st.State == dispatcher.Completed {
		t.Fatal("the campaign completed before the pauses ended: the test shows nothing")
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 3*time.Minute)
	per := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		if strings.HasPrefix(r.CallbackData, cp.ID+":") {
			per[r.WaID]++
		}
	}
	for wa, c := range per {
		if c > 1 {
			t.Errorf("%s got %d messages", wa, c)
		}
	}
	if len(per) != n || st.Sent != n {
		t.Fatalf("%d contacts messaged, want %d; status %+v", len(per), n, st)
	}
}
