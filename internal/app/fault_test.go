package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/localstack"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// faultStaleAfter is the fault tests' StaleSendAfter on channels whose status webhook
// settles a send in doubt (WhatsApp, SMS): a send in doubt is queued again once it has
// waited this long for its status. That rests on the stated assumption that the cutoff
// is far beyond the provider's webhook delay (production's default is 10 min). Under a
// loaded suite the sandboxes' status POSTs queue up behind thousands of others: 8 s
// re-sent messages that had landed (8 and 69 SMS numbers twice in two of six runs), and
// so did 25 s once on the cluster layout (71 of 5,000), whose two serves run under -race
// beside five other processes. A send that truly never left waits this long to go again.
const faultStaleAfter = time.Minute

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
	SMSAPIURL    string
	TelegramURL  string
	LINEAPIURL   string
	PublicURL    string
	ClickKey     string
	ClickBaseURL string
	ClaimLease   time.Duration
	// Journeys runs the journey engine in the worker (its two consumer groups): only the
	// journeys' fault test needs it, and the channels' fault tests keep to the groups
	// they test.
	Journeys bool
	// The launch role: the campaign to launch, with these fan-out settings.
	Campaign    string
	FanoutLease time.Duration
	FanoutChunk int
	// Breaker tunes the workers' circuit breakers (channel failover's fault test).
	Breaker dispatcher.BreakerConfig
}

func runChild() int {
	if f := extraChildRoles[os.Getenv(childRoleEnv)]; f != nil {
		return f()
	}
	var cc childConfig
	if err := json.Unmarshal([]byte(os.Getenv(childConfigEnv)), &cc); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	cfg := Config{KafkaBrokers: cc.KafkaBrokers, RedisURL: cc.RedisURL, Prefix: cc.Prefix, TopicPrefix: cc.TopicPrefix,
		WhatsAppURL: cc.WhatsAppURL, SMSAPIURL: cc.SMSAPIURL, TelegramAPIURL: cc.TelegramURL, LINEAPIURL: cc.LINEAPIURL, PublicURL: cc.PublicURL, ClickKey: cc.ClickKey, ClickBaseURL: cc.ClickBaseURL, ClaimLease: cc.ClaimLease, NoScheduler: true, NoJourneys: !cc.Journeys,
		FanoutLease: cc.FanoutLease, FanoutChunk: cc.FanoutChunk, Breaker: cc.Breaker,
		// What a worker logs reaches the test's stderr buffer, printed when a test fails.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d := NewDeps(cfg)
	defer d.Close()
	if os.Getenv(childRoleEnv) == "launch" {
		comp, err := d.Components()
		if err == nil {
			_, err = comp.Campaigns.Launch(ctx, cc.Campaign, nil)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "launch:", err)
			return 1
		}
		return 0
	}
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
	outs []*lockedBuffer
}

// lockedBuffer is a bytes.Buffer that os/exec's copying goroutine and the test may use
// at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logs writes the last lines the worker processes printed to stderr (on a failure).
// Live workers are then asked for their goroutines (SIGQUIT); each process's whole
// output goes to a file in HERALD_FAULT_DUMP_DIR (default: a directory under the
// system's temporary one, kept after the test).
func (w *workerProcs) logs() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, b := range w.outs {
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		w.t.Logf("worker process %d, last lines:\n%s", i, strings.Join(lines[max(0, len(lines)-20):], "\n"))
	}
	for _, c := range w.cmds {
		if c.ProcessState == nil {
			_ = c.Process.Signal(syscall.SIGQUIT)
			_ = c.Wait()
		}
	}
	dir := os.Getenv("HERALD_FAULT_DUMP_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "herald-fault-dumps")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	name := strings.ReplaceAll(w.t.Name(), "/", "_")
	for i, b := range w.outs {
		f := filepath.Join(dir, fmt.Sprintf("%s-%d-process-%d.txt", name, os.Getpid(), i))
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err == nil {
			w.t.Logf("process %d's output with its goroutines: %s", i, f)
		}
	}
}

func (w *workerProcs) start() *exec.Cmd {
	w.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = w.env
	out := &lockedBuffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.outs = append(w.outs, out)
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
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, ReadRate: 0.5, PairInterval: -1, Templates: welcomeSandbox},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter = 3*time.Second, faultStaleAfter
			if st != nil {
				st.NoWorker = true
			}
		})
	d := s.Deps
	comp := seedAudience(t, ctx, d, n, e2eTemplate)
	cc, _ := json.Marshal(childConfig{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		WhatsAppURL: d.Cfg.WhatsAppURL, ClickKey: d.Cfg.ClickKey, ClickBaseURL: d.Cfg.ClickBaseURL, ClaimLease: d.Cfg.ClaimLease})
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=worker", childConfigEnv+"="+string(cc))}
	defer procs.stopAll()
	live := []*exec.Cmd{procs.start(), procs.start(), procs.start()}
	// Two senders at a rate that makes the campaign last ~8 s: long enough for ten kills.
	cp := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome"}, float64(n)/8/2, "106540352240001", "106540352240002")
	rng := rand.New(rand.NewPCG(1, 2))
	for kill := 0; kill < 10; kill++ {
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		i := rng.IntN(len(live))
		_ = live[i].Process.Kill() // SIGKILL: no cleanup, no release, no flush
		_ = live[i].Wait()
		live[i] = procs.start()
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 4*time.Minute)
	waitSettled(t, ctx, s, cp.ID, time.Minute)
	assertOnceEach(t, s, cp.ID, n, st)
}

// seedAudience imports n opted-in contacts tagged customer (+6681…) and saves tplText.
func seedAudience(t testing.TB, ctx context.Context, d *Deps, n int, tplText string) *Components {
	t.Helper()
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	csv.WriteString("phone,name,tags,opted_in\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "+6681%07d,N%d,customer,yes\n", i+1, i)
	}
	if _, err := ImportContacts(ctx, d, &csv, ImportOptions{Source: "audience.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(tplText), "template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(tplText)); err != nil {
		t.Fatal(err)
	}
	return comp
}

// launchTo stores senders (phone-number id = id) at rate and launches cp to them.
func launchTo(t testing.TB, ctx context.Context, comp *Components, cp dispatcher.Campaign, rate float64, senders ...string) dispatcher.Campaign {
	t.Helper()
	for _, id := range senders {
		if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: id, Channel: "whatsapp", PhoneNumberID: id, Token: DevSandboxToken, Rate: rate}); err != nil {
			t.Fatal(err)
		}
	}
	cp.Senders = senders
	cp, err := comp.Campaigns.Create(ctx, cp, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	return cp
}

// assertOnceEach checks the sandbox accepted exactly one message of cp for each of n
// contacts and the campaign counted n sent.
func assertOnceEach(t testing.TB, s *Stack, cp string, n int, st dispatcher.Status) {
	t.Helper()
	per := map[string]int{}
	for _, r := range s.Sandbox.Records() {
		if strings.HasPrefix(r.CallbackData, cp+":") {
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
		t.Fatalf("%d contacts messaged (want %d), %d more than once; status %+v", len(per), n, dups, st)
	}
}

// waitSettled waits for the sandbox's last webhooks and the sink, then checks the funnel
// in ClickHouse against the sandbox's record.
func waitSettled(t testing.TB, ctx context.Context, s *Stack, cp string, within time.Duration) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if err := waitSink(wctx, s.Deps); err != nil {
		t.Fatal(err)
	}
	conn, err := s.Deps.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := analytics.Funnel(ctx, conn, cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := SandboxTruth(s.Sandbox.Records(), cp).Check(f); err != nil {
		t.Fatal(err)
	}
}

var welcomeSandbox = []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}

func waitCompletedWithin(t *testing.T, ctx context.Context, c *dispatcher.Campaigns, id string, d time.Duration) dispatcher.Status {
	t.Helper()
	deadline := time.Now().Add(d)
	var last dispatcher.Status // the last status read: what a failure reports
	for {
		st, err := c.Status(ctx, id) // errors while a server restarts are retried
		if err == nil {
			if last = st; st.State == dispatcher.Completed {
				return st
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("campaign %s did not complete: state %s, audience %d, queued %d, sent %d, skipped %d, failed %d, done %d, fan-out done %v, pause reason %q (%v)",
				id, last.State, last.Audience, last.Queued, last.Sent, last.Skipped, last.Failed, last.Done, last.FanoutDone, last.PauseReason, err)
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
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Templates: welcomeSandbox},
		func(c *Config, _ *Stack) { c.RedisURL, c.Prefix = "redis://"+srv.Addr+"/0", "herald:" })
	comp := seedAudience(t, ctx, s.Deps, n, e2eTemplate)
	cp := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome"}, 500, "106540352240009")
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
	assertOnceEach(t, s, cp.ID, n, st)
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
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, ReadRate: 0.5, PairInterval: -1, Templates: welcomeSandbox},
		func(c *Config, _ *Stack) { c.ClickHouseDSN = "clickhouse://" + proxy.Addr + "/" + db })
	comp := seedAudience(t, ctx, s.Deps, n, e2eTemplate)
	proxy.Down()
	cp := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome"}, 1000, "106540352240010")
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 2*time.Minute)
	time.Sleep(down) // the campaign is done; the sink keeps failing and retrying
	proxy.Up(t)
	waitSettled(t, ctx, s, cp.ID, 2*time.Minute)
	assertOnceEach(t, s, cp.ID, n, st)
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
	s, ctx := testStack(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Fault: fault, Templates: welcomeSandbox})
	comp := seedAudience(t, ctx, s.Deps, n, e2eTemplate)
	armed.Store(time.Now().UnixNano())
	cp := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome"}, 500, "106540352240011")
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 4*time.Minute)
	if r := s.Sandbox.Stats().Rejected; r[130429] == 0 || r[0] == 0 {
		t.Fatalf("no bursts were injected: %v", r)
	}
	if st.Failed != 0 {
		t.Fatalf("%d sends failed for good", st.Failed)
	}
	assertOnceEach(t, s, cp.ID, n, st)
}

// Pause and resume twenty times during a campaign: every contact still gets exactly one
// message.
func TestPauseResumeTwentyTimes(t *testing.T) {
	const n = 2000
	s, ctx := testStack(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Templates: welcomeSandbox})
	comp := seedAudience(t, ctx, s.Deps, n, e2eTemplate)
	cp := launchTo(t, ctx, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome"}, 250, "106540352240012")
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
	assertOnceEach(t, s, cp.ID, n, st)
}

// The process launching a campaign killed with SIGKILL half-way through its fan-out:
// the scheduler's leader finishes the fan-out from its checkpoint once the lease has
// run out, and every contact gets exactly one message, the funnel equal to the
// sandbox's record.
func TestKilledLauncherFanoutIsFinished(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a launcher process")
	}
	const n = 3000
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Templates: welcomeSandbox},
		func(c *Config, _ *Stack) { c.FanoutLease = 2 * time.Second })
	d := s.Deps
	comp := seedAudience(t, ctx, d, n, e2eTemplate)
	const sender = "106540352240001"
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: sender, Channel: "whatsapp", PhoneNumberID: sender, Token: DevSandboxToken, Rate: 2000}); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{sender}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	// Chunks of 5 jobs: the fan-out takes hundreds of round trips, time to kill it.
	cc, _ := json.Marshal(childConfig{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		Campaign: cp.ID, FanoutLease: 2 * time.Second, FanoutChunk: 5})
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=launch", childConfigEnv+"="+string(cc))}
	defer procs.stopAll()
	launcher := procs.start()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := comp.Campaigns.Status(ctx, cp.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Queued >= 200 {
			if st.FanoutDone {
				t.Fatalf("the fan-out finished before the kill (%+v): the test tested nothing", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the launcher queued nothing: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = launcher.Process.Kill() // SIGKILL: the lease stays until it runs out
	_ = launcher.Wait()
	st, _ := comp.Campaigns.Status(ctx, cp.ID)
	if st.FanoutDone || st.Queued >= n {
		t.Fatalf("the fan-out was not cut off: %+v", st)
	}
	st = waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 2*time.Minute)
	waitSettled(t, ctx, s, cp.ID, time.Minute)
	assertOnceEach(t, s, cp.ID, n, st)
}

// channelAudience imports n contacts tagged customer whose addresses addr(i) gives
// (column is the CSV column: phone or email), grants them marketing consent on channel,
// and saves tplText.
func channelAudience(t *testing.T, ctx context.Context, d *Deps, comp *Components, n int, column string, addr func(int) string, channel, tplText string) {
	t.Helper()
	var csv strings.Builder
	csv.WriteString(column + ",tags\n")
	for i := range n {
		fmt.Fprintf(&csv, "%s,customer\n", addr(i))
	}
	if _, err := ImportContacts(ctx, d, strings.NewReader(csv.String()), ImportOptions{Source: channel + ".csv"}); err != nil {
		t.Fatal(err)
	}
	var changes []throttle.Change
	for i := range n {
		id, err := comp.Contacts.Lookup(ctx, addr(i))
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, throttle.Change{ContactID: id, Channel: channel, Purpose: "marketing", Action: events.Grant, Source: "web_form"})
	}
	if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(tplText), channel+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(tplText)); err != nil {
		t.Fatal(err)
	}
}

// campaignUnderKills runs a campaign of the segment customer from sender on three worker
// processes, SIGKILLing one at a random moment five times, and returns its final status.
func campaignUnderKills(t *testing.T, ctx context.Context, s *Stack, comp *Components, sender dispatcher.Sender, template string, seed uint64) dispatcher.Status {
	t.Helper()
	d := s.Deps
	cc, _ := json.Marshal(childConfig{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		WhatsAppURL: d.Cfg.WhatsAppURL, SMSAPIURL: d.Cfg.SMSAPIURL, TelegramURL: d.Cfg.TelegramAPIURL, LINEAPIURL: d.Cfg.LINEAPIURL, PublicURL: d.Cfg.publicURL(), ClickKey: d.Cfg.ClickKey,
		ClickBaseURL: d.Cfg.ClickBaseURL, ClaimLease: d.Cfg.ClaimLease})
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=worker", childConfigEnv+"="+string(cc))}
	defer procs.stopAll()
	defer func() {
		if t.Failed() {
			procs.logs()
		}
	}()
	live := []*exec.Cmd{procs.start(), procs.start(), procs.start()}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: template, Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for range 5 {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		i := rng.IntN(len(live))
		_ = live[i].Process.Kill()
		_ = live[i].Wait()
		live[i] = procs.start()
	}
	return waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 6*time.Minute)
}
