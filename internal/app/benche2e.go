package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/procstat"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// E2EOptions configure `herald bench e2e`.
type E2EOptions struct {
	DataDir  string
	Contacts int
	Senders  int
	Rate     float64 // per sender, msg/s; the sandbox enforces the same limit (130429 above it)
	// WorkerCmd starts the worker as its own process (so its CPU and RSS are its own);
	// nil runs it inside this process.
	WorkerCmd func(env []string) *exec.Cmd
	Progress  func(stage string, done, total int64)
	// CampaignProfile, if set, receives this process's CPU profile (pprof) from launch
	// until every event is in ClickHouse: the pipeline without setup and ceilings.
	CampaignProfile io.Writer
	// SandboxCmd starts the WhatsApp sandbox as its own process (`herald sandbox` with
	// args; env holds the stack's HERALD_* values), so that the simulator's CPU is
	// counted apart from Herald's; nil runs it inside this process.
	SandboxCmd func(args, env []string) *exec.Cmd
	// SinkCmd starts the sink as its own process; nil runs it inside this process.
	SinkCmd func(env []string) *exec.Cmd
	// StatusesPerPost and WebhookConcurrency shape the sandbox's status webhooks
	// (defaults 1 and sandbox.DefaultWebhookConcurrency: as Meta mostly sends them).
	StatusesPerPost, WebhookConcurrency int
	// Timeline, if set, receives a line a second from launch until every event is in
	// ClickHouse: sends the sandbox accepted, webhook POSTs it made, statuses waiting to
	// be posted, and how busy the machine's CPUs were.
	Timeline io.Writer
	// ProcessCPUs is the GOMAXPROCS of each process the bench starts (the sandbox, the
	// worker and the sink; in the cluster layout serve too), as each would run in a
	// container of that many CPUs on a cluster (the sandbox stands in for Meta, whose
	// servers are not on this machine at all); 0 leaves Go's default: every core of the
	// machine, for each of them. This process (serve, Kafka, the scheduler and the
	// ceiling) keeps the default either way.
	ProcessCPUs int
}

// processEnv is env for a process the bench starts: with GOMAXPROCS set when the run
// gives those processes a CPU budget of their own.
func (o E2EOptions) processEnv(env []string) []string {
	if o.ProcessCPUs <= 0 {
		return env
	}
	return append(slices.Clip(env), "GOMAXPROCS="+strconv.Itoa(o.ProcessCPUs))
}

// E2EProcess is the CPU one process of the run used from launch until every event was
// in ClickHouse, per message sent.
type E2EProcess struct {
	Name        string  `json:"name"`  // bench, worker, sink, sandbox, redis-server, clickhouse-server
	Roles       string  `json:"roles"` // what ran in it
	CPUMSPerMsg float64 `json:"cpu_ms_per_message"`
}

// E2EResult is what one run measured.
type E2EResult struct {
	Contacts int     `json:"contacts"`
	Senders  int     `json:"senders"`
	Rate     float64 `json:"rate_per_sender"`

	Sent           int64   `json:"sent"`
	Failed         int64   `json:"failed"`
	Skipped        int64   `json:"skipped"`
	SendMS         float64 `json:"send_ms"`                // launch → the last job done
	MsgPerSec      float64 `json:"msg_per_second"`         // sent / SendMS
	DrainMS        float64 `json:"drain_ms"`               // launch → every event in ClickHouse
	MsgPerSecDrain float64 `json:"msg_per_second_drained"` // sent / DrainMS
	LatencyP50Ms   float64 `json:"latency_p50_ms"`         // launch → accepted by the provider
	LatencyP99Ms   float64 `json:"latency_p99_ms"`
	// CPU per message sent, in ms (the same figure as CPU seconds per 1,000 messages).
	CPUMSPerMsg       float64 `json:"cpu_ms_per_message"`        // this (the bench's) process: serve, the scheduler, Kafka, and whatever roles run in it
	WorkerCPUMSPerMsg float64 `json:"worker_cpu_ms_per_message"` // the worker process alone (0 when in-process)
	SinkCPUMSPerMsg   float64 `json:"sink_cpu_ms_per_message"`   // the sink process alone (0 when in-process)
	// SandboxCPUMSPerMsg is the sandbox process's CPU (0 when in-process); HeraldCPUMSPerMsg
	// is then the pipeline's without it: what Herald itself (and its servers) cost.
	SandboxCPUMSPerMsg float64 `json:"sandbox_cpu_ms_per_message"`
	HeraldCPUMSPerMsg  float64 `json:"herald_cpu_ms_per_message"`
	RedisCPUMSPerMsg   float64 `json:"redis_cpu_ms_per_message"` // redis-server
	CHCPUMSPerMsg      float64 `json:"clickhouse_cpu_ms_per_message"`
	TotalCPUMSPerMsg   float64 `json:"total_cpu_ms_per_message"` // all of the above: the pipeline's CPU per message
	WorkerRSSMB        float64 `json:"worker_rss_mb"`            // peak RSS of the worker process (of the whole process when in-process)
	Rejected130429     int64   `json:"rejected_130429"`

	RawRequestsPerSec float64 `json:"raw_requests_per_second"` // Go client → sandbox alone, same machine, same run: mean of before and after
	RawBefore         float64 `json:"raw_requests_per_second_before"`
	RawAfter          float64 `json:"raw_requests_per_second_after"`
	RequestsPerMsg    float64 `json:"requests_per_message"`   // send requests + webhook POSTs, per message sent
	CeilingMsgPerSec  float64 `json:"ceiling_msg_per_second"` // RawRequestsPerSec / RequestsPerMsg
	Ratio             float64 `json:"ratio"`                  // MsgPerSec / CeilingMsgPerSec
	RatioDrained      float64 `json:"ratio_drained"`          // MsgPerSecDrain / CeilingMsgPerSec
	// RawCPUPerRequest is the CPU (client and sandbox) one raw request cost, in ms: mean
	// of before and after. RatioCPU = RawCPUPerRequest × RequestsPerMsg ÷ the pipeline's
	// CPU per message: the pipeline's CPU efficiency against the bare exchange, which
	// moves less than Ratio with other load on a shared machine. (The raw exchange is not
	// CPU-bound — it keeps about one core busy — so RatioCPU is no forecast of Ratio.)
	RawCPUPerRequest float64 `json:"raw_cpu_ms_per_request"`
	RatioCPU         float64 `json:"ratio_cpu"`
	FunnelMatches    bool    `json:"funnel_matches"` // ClickHouse's funnel equals the sandbox's record
	// StatusesPerPost and WebhookConcurrency are the sandbox's webhook shape.
	StatusesPerPost    int `json:"statuses_per_post"`
	WebhookConcurrency int `json:"webhook_concurrency"`
	// ProcessCPUs is the GOMAXPROCS of the processes the bench started (0: Go's default,
	// every core).
	ProcessCPUs int `json:"process_cpus"`
	// Processes is the CPU per message of each process, launch → drained.
	Processes []E2EProcess `json:"processes"`
}

const benchTemplate = `name: bench
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: bench_offer
  language: en_US
  category: MARKETING
  body:
    first_name: "{{ name | default: 'friend' }}"
variables:
  name: {type: string, default: ""}
`

// BenchE2E runs one campaign through the whole pipeline on private servers and measures
// it against the HTTP ceiling of the same machine in the same run.
func BenchE2E(ctx context.Context, cfg Config, o E2EOptions) (E2EResult, error) {
	if o.StatusesPerPost <= 0 {
		o.StatusesPerPost = 1
	}
	if o.WebhookConcurrency <= 0 {
		o.WebhookConcurrency = sandbox.DefaultWebhookConcurrency
	}
	res := E2EResult{Contacts: o.Contacts, Senders: o.Senders, Rate: o.Rate,
		StatusesPerPost: o.StatusesPerPost, WebhookConcurrency: o.WebhookConcurrency, ProcessCPUs: o.ProcessCPUs}
	progress := o.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dev, err := StartDev(ctx, cfg, DevOptions{DataDir: o.DataDir, Sandbox: sandbox.Config{
		Throughput: o.Rate, DelayScale: 0.01, ReadRate: 0.5, UndeliverableRate: 0.02, Seed: 7,
		StatusesPerPost: o.StatusesPerPost, WebhookConcurrency: o.WebhookConcurrency,
		Templates: []sandbox.ApprovedTemplate{{Name: "bench_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}},
	}})
	if err != nil {
		return res, err
	}
	defer dev.Close()
	dev.NoWorker = o.WorkerCmd != nil
	dev.NoSink = o.SinkCmd != nil
	env := os.Environ()
	for k, v := range dev.Env {
		env = append(env, k+"="+v)
	}
	var procs []*benchProc
	stopProcs := func() {
		for _, p := range procs {
			p.stop()
		}
	}
	defer stopProcs()
	var sb e2eSandbox = localSandbox{dev.Sandbox}
	if o.SandboxCmd != nil {
		// The sandbox takes over the address the stack reserved for it (the worker's
		// HERALD_WHATSAPP_API_URL), in a process of its own.
		dev.NoSandbox = true
		addr := dev.sandboxL.Addr().String()
		dev.sandboxL.Close()
		p, err := startProc("sandbox", "the WhatsApp sandbox", o.SandboxCmd([]string{"sandbox", "--listen", addr,
			"--webhook-url", dev.ServeURL + "/webhooks/whatsapp", "--throughput", strconv.FormatFloat(o.Rate, 'g', -1, 64),
			"--delay-scale", "0.01", "--read-rate", "0.5", "--undeliverable", "0.02", "--seed", "7",
			"--statuses-per-post", strconv.Itoa(o.StatusesPerPost), "--webhook-concurrency", strconv.Itoa(o.WebhookConcurrency)}, o.processEnv(env)))
		if err != nil {
			return res, err
		}
		procs = append(procs, p)
		remote := &sandbox.Remote{URL: dev.SandboxURL, Token: DevSandboxToken}
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		err = remote.WaitReady(rctx)
		if err == nil {
			err = remote.CreateTemplate(rctx, "100000000000001", "bench_offer", "en_US", "MARKETING", "Hi {{first_name}}, this offer is yours.")
		}
		rcancel()
		if err != nil {
			return res, err
		}
		sb = remoteSandbox{remote}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dev.Run(gctx) })
	stop := func() error {
		cancel()
		return g.Wait()
	}
	if err := e2eSetup(gctx, dev, o, progress); err != nil {
		return res, errors.Join(err, stop())
	}
	// The ceiling is measured before the campaign and after it (the machine may be shared:
	// the mean of the two is the baseline of this run).
	rawN := max(20_000, min(o.Contacts, 100_000))
	progress("raw HTTP ceiling (before)", 0, 1)
	var cpuBefore, cpuAfter float64
	if res.RawBefore, cpuBefore, err = rawRequestRate(gctx, rawN); err != nil {
		return res, errors.Join(err, stop())
	}
	var worker *benchProc
	if o.WorkerCmd != nil {
		if worker, err = startProc("worker", "worker (sends)", o.WorkerCmd(o.processEnv(env))); err != nil {
			return res, errors.Join(err, stop())
		}
		procs = append(procs, worker)
	}
	if o.SinkCmd != nil {
		p, err := startProc("sink", "sink (Kafka → ClickHouse)", o.SinkCmd(o.processEnv(env)))
		if err != nil {
			return res, errors.Join(err, stop())
		}
		procs = append(procs, p)
	}
	err = e2eRun(gctx, dev, sb, procs, o, &res, progress)
	var workerHWM float64
	if worker != nil {
		// The peak RSS of the worker's own address space (ru_maxrss would also count the
		// parent's pages the child had between fork and exec).
		workerHWM = procstat.PeakRSSMB(worker.cmd.Process.Pid)
	}
	stopProcs()
	if worker != nil && res.Sent > 0 {
		res.WorkerRSSMB = workerHWM
	}
	if err != nil {
		return res, errors.Join(err, stop())
	}
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	// The ceiling: the same HTTP work with nothing else running.
	progress("raw HTTP ceiling (after)", 0, 1)
	if res.RawAfter, cpuAfter, err = rawRequestRate(parent, rawN); err != nil {
		return res, err
	}
	progress("raw HTTP ceiling (after)", 1, 1)
	res.RawRequestsPerSec = (res.RawBefore + res.RawAfter) / 2
	res.CeilingMsgPerSec = res.RawRequestsPerSec / res.RequestsPerMsg
	res.Ratio = res.MsgPerSec / res.CeilingMsgPerSec
	res.RatioDrained = res.MsgPerSecDrain / res.CeilingMsgPerSec
	res.RawCPUPerRequest = (cpuBefore + cpuAfter) / 2
	res.TotalCPUMSPerMsg = res.CPUMSPerMsg + res.WorkerCPUMSPerMsg + res.SinkCPUMSPerMsg + res.SandboxCPUMSPerMsg + res.RedisCPUMSPerMsg + res.CHCPUMSPerMsg
	if res.SandboxCPUMSPerMsg > 0 {
		res.HeraldCPUMSPerMsg = res.TotalCPUMSPerMsg - res.SandboxCPUMSPerMsg
	}
	if res.TotalCPUMSPerMsg > 0 {
		res.RatioCPU = res.RawCPUPerRequest * res.RequestsPerMsg / res.TotalCPUMSPerMsg
	}
	return res, nil
}

// benchProc is a process of the bench (worker, sink, sandbox) other than this one.
type benchProc struct {
	name, roles string
	cmd         *exec.Cmd
}

func startProc(name, roles string, cmd *exec.Cmd) (*benchProc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s process: %w", name, err)
	}
	return &benchProc{name: name, roles: roles, cmd: cmd}, nil
}

// stop ends the process (SIGTERM) and waits for it; once only.
func (p *benchProc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

// e2eSandbox is what the bench reads of the WhatsApp sandbox, in this process or another.
type e2eSandbox interface {
	WaitIdle(ctx context.Context) error
	Records(ctx context.Context) ([]sandbox.Record, error)
	Stats(ctx context.Context) (sandbox.Stats, error)
}

type localSandbox struct{ *sandbox.Sandbox }

func (l localSandbox) Records(context.Context) ([]sandbox.Record, error) {
	return l.Sandbox.Records(), nil
}
func (l localSandbox) Stats(context.Context) (sandbox.Stats, error) { return l.Sandbox.Stats(), nil }

type remoteSandbox struct{ *sandbox.Remote }

// e2eSetup stores the contacts (opted in), the template and the senders.
func e2eSetup(ctx context.Context, dev *Dev, o E2EOptions, progress func(string, int64, int64)) error {
	comp, err := dev.Deps.Components()
	if err != nil {
		return err
	}
	const chunk = 10_000
	for done := 0; done < o.Contacts; done += chunk {
		n := min(chunk, o.Contacts-done)
		cs := make([]segments.Contact, n)
		for i := range cs {
			k := done + i + 1
			cs[i] = segments.Contact{Phone: fmt.Sprintf("+6681%07d", k), Name: "N" + strconv.Itoa(k), Tags: []string{"customer"}, Country: "TH"}
		}
		ids, err := comp.Contacts.Upsert(ctx, cs)
		if err != nil {
			return err
		}
		changes := make([]throttle.Change, len(ids))
		for i, id := range ids {
			changes[i] = throttle.Change{ContactID: id, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "import", Actor: "bench"}
		}
		if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
			return err
		}
		progress("contacts", int64(done+n), int64(o.Contacts))
	}
	tpl, err := templates.ParseFile([]byte(benchTemplate), "bench.yaml")
	if err != nil {
		return err
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(benchTemplate)); err != nil {
		return err
	}
	for i := 1; i <= o.Senders; i++ {
		id := fmt.Sprintf("10654035224%04d", i)
		if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: id, Channel: "whatsapp", PhoneNumberID: id, Token: DevSandboxToken, Rate: o.Rate}); err != nil {
			return err
		}
	}
	return nil
}

func e2eRun(ctx context.Context, dev *Dev, sb e2eSandbox, procs []*benchProc, o E2EOptions, res *E2EResult, progress func(string, int64, int64)) error {
	d := dev.Deps
	comp, err := d.Components()
	if err != nil {
		return err
	}
	var ids []string
	for i := 1; i <= o.Senders; i++ {
		ids = append(ids, fmt.Sprintf("10654035224%04d", i))
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Name: "bench", Segment: "customer", Template: "bench", Senders: ids}, comp.Senders)
	if err != nil {
		return err
	}
	if o.CampaignProfile != nil {
		if err := pprof.StartCPUProfile(o.CampaignProfile); err != nil {
			return fmt.Errorf("campaign profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := procstat.CPU()
	redis0, ch0 := procstat.ProcessCPU(dev.Redis.Pid()), procstat.ProcessCPU(dev.ClickHouse.Pid())
	procs0 := make([]time.Duration, len(procs))
	for i, p := range procs {
		procs0[i] = procstat.ProcessCPU(p.cmd.Process.Pid)
	}
	start := time.Now()
	stopTimeline := func() {}
	if o.Timeline != nil {
		stopTimeline = e2eTimeline(ctx, o.Timeline, sb, start)
	}
	defer stopTimeline()
	launched := make(chan error, 1)
	go func() {
		_, err := comp.Campaigns.Launch(ctx, cp.ID, nil)
		launched <- err
	}()
	var st dispatcher.Status
	for {
		if st, err = comp.Campaigns.Status(ctx, cp.ID); err != nil {
			return err
		}
		progress("campaign", st.Done, int64(o.Contacts))
		if st.State == dispatcher.Completed {
			break
		}
		select {
		case err := <-launched:
			if err != nil {
				return fmt.Errorf("launch: %w", err)
			}
			launched = nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	sendDone := time.Since(start)
	if launched != nil {
		if err := <-launched; err != nil {
			return fmt.Errorf("launch: %w", err)
		}
	}
	progress("events into ClickHouse", 0, 1)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer wcancel()
	if err := sb.WaitIdle(wctx); err != nil {
		return fmt.Errorf("sandbox webhooks: %w", err)
	}
	if err := waitSink(wctx, d); err != nil {
		return err
	}
	drained := time.Since(start)
	stopTimeline()
	cpu := (procstat.CPU() - cpu0).Seconds()
	redisCPU := (procstat.ProcessCPU(dev.Redis.Pid()) - redis0).Seconds()
	chCPU := (procstat.ProcessCPU(dev.ClickHouse.Pid()) - ch0).Seconds()
	procsCPU := make([]float64, len(procs))
	for i, p := range procs {
		procsCPU[i] = (procstat.ProcessCPU(p.cmd.Process.Pid) - procs0[i]).Seconds()
	}
	if o.CampaignProfile != nil {
		pprof.StopCPUProfile()
	}
	progress("events into ClickHouse", 1, 1)

	res.Sent, res.Failed, res.Skipped = st.Sent, st.Failed, st.Skipped
	res.SendMS, res.DrainMS = float64(sendDone.Microseconds())/1000, float64(drained.Microseconds())/1000
	if st.Sent > 0 {
		res.MsgPerSec = float64(st.Sent) / sendDone.Seconds()
		res.MsgPerSecDrain = float64(st.Sent) / drained.Seconds()
		res.CPUMSPerMsg = cpu / float64(st.Sent) * 1000
		res.RedisCPUMSPerMsg = redisCPU / float64(st.Sent) * 1000
		res.CHCPUMSPerMsg = chCPU / float64(st.Sent) * 1000
		perMsg := func(s float64) float64 { return s / float64(st.Sent) * 1000 }
		roles := "serve, scheduler, Kafka (kfake)"
		for _, r := range []struct {
			name, role string
			away       bool
		}{{"worker", "worker", dev.NoWorker}, {"sink", "sink", dev.NoSink}, {"sandbox", "the sandbox", dev.NoSandbox}} {
			if !r.away {
				roles += ", " + r.role
			}
		}
		res.Processes = append(res.Processes, E2EProcess{Name: "bench", Roles: roles, CPUMSPerMsg: res.CPUMSPerMsg})
		for i, p := range procs {
			ms := perMsg(procsCPU[i])
			res.Processes = append(res.Processes, E2EProcess{Name: p.name, Roles: p.roles, CPUMSPerMsg: ms})
			switch p.name {
			case "worker":
				res.WorkerCPUMSPerMsg = ms
			case "sink":
				res.SinkCPUMSPerMsg = ms
			case "sandbox":
				res.SandboxCPUMSPerMsg = ms
			}
		}
		res.Processes = append(res.Processes, E2EProcess{Name: "redis-server", Roles: "Redis", CPUMSPerMsg: res.RedisCPUMSPerMsg},
			E2EProcess{Name: "clickhouse-server", Roles: "ClickHouse", CPUMSPerMsg: res.CHCPUMSPerMsg})
	}
	res.WorkerRSSMB = procstat.PeakRSSMB(os.Getpid())
	recs, err := sb.Records(ctx)
	if err != nil {
		return err
	}
	lat := make([]float64, 0, len(recs))
	for _, r := range recs {
		lat = append(lat, float64(r.AcceptedAt.Sub(start))/float64(time.Millisecond))
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.LatencyP50Ms = lat[len(lat)*50/100]
		res.LatencyP99Ms = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	stats, err := sb.Stats(ctx)
	if err != nil {
		return err
	}
	res.Rejected130429 = stats.Rejected[130429]
	if stats.Accepted > 0 {
		res.RequestsPerMsg = float64(stats.Requests+stats.WebhookPosts) / float64(stats.Accepted)
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		return err
	}
	f, err := analytics.Funnel(ctx, conn, cp.ID)
	if err != nil {
		return err
	}
	res.FunnelMatches = SandboxTruth(recs, cp.ID).Check(f) == nil
	return nil
}

// e2eTimeline writes a line a second to w (see E2EOptions.Timeline) until stopped.
func e2eTimeline(ctx context.Context, w io.Writer, sb e2eSandbox, start time.Time) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		fmt.Fprintf(w, "%7s %10s %16s %17s %13s\n", "t (s)", "sends/s", "webhook POSTs/s", "statuses pending", "machine busy")
		var last sandbox.Stats
		busy0, idle0 := procstat.MachineCPU()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		prev := start
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			st, err := sb.Stats(ctx)
			if err != nil {
				return
			}
			now := time.Now()
			dt := now.Sub(prev).Seconds()
			busy1, idle1 := procstat.MachineCPU()
			share := 0.0
			if d := (busy1 - busy0) + (idle1 - idle0); d > 0 {
				share = float64(busy1-busy0) / float64(d)
			}
			fmt.Fprintf(w, "%7.1f %10.0f %16.0f %17d %12.0f%%\n", now.Sub(start).Seconds(),
				float64(st.Accepted-last.Accepted)/dt, float64(st.WebhookPosts-last.WebhookPosts)/dt, st.Pending, share*100)
			last, prev, busy0, idle0 = st, now, busy1, idle1
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// rawRequestRate measures the requests per second a Go client (the worker's, same pool
// settings) gets from the sandbox alone over loopback: no Kafka, Redis, policy, webhooks;
// and the CPU one request cost (client and sandbox, both in this process), in ms.
func rawRequestRate(ctx context.Context, n int) (perSec, cpuMs float64, err error) {
	sb := sandbox.New(sandbox.Config{Token: DevSandboxToken, Throughput: 1e9, PairInterval: -1,
		Templates: []sandbox.ApprovedTemplate{{Name: "raw", Language: "en_US", Category: "UTILITY"}}}, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	srv := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	d := NewDeps(Config{WhatsAppURL: "http://" + l.Addr().String()})
	client := d.WhatsAppClient()
	req := graph.SendRequest{Type: "template", Template: &graph.Template{Name: "raw", Language: graph.Language{Code: "en_US"}}}
	// Warm the connection pool, then measure.
	for i := 0; i < 256; i++ {
		r := req
		r.To = fmt.Sprintf("+6689%07d", 9_000_000+i)
		if _, err := client.Send(ctx, "106540352242900", DevSandboxToken, r); err != nil {
			return 0, 0, err
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	cpu0 := procstat.CPU()
	start := time.Now()
	for w := 0; w < 128; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				r := req
				r.To = fmt.Sprintf("+6689%07d", i)
				// A transport error (a kept-alive connection closed under the request: EOF)
				// is tried again on a fresh connection, as the worker retries it; the
				// sandbox's own refusals are not.
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					if _, err = client.Send(ctx, "106540352242900", DevSandboxToken, r); !isTransportError(err) {
						break
					}
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, fmt.Errorf("raw requests: %w", firstErr)
	}
	elapsed := time.Since(start).Seconds()
	cpu := float64(procstat.CPU()-cpu0) / float64(time.Millisecond)
	return float64(n) / elapsed, cpu / float64(n), nil
}

// isTransportError reports whether err is a failure to exchange the request at all (no
// answer from the provider), which the worker treats as retryable too.
func isTransportError(err error) bool {
	var te *graph.TransportError
	return errors.As(err, &te) && te.HTTPStatus == 0
}

// PrintE2E writes a result as a table.
func PrintE2E(w io.Writer, r E2EResult) {
	fmt.Fprintf(w, "campaign of %d contacts over %d senders at %v msg/s each\n", r.Contacts, r.Senders, r.Rate)
	if r.StatusesPerPost > 0 {
		fmt.Fprintf(w, "  status webhooks: up to %d per POST over %d connections\n", r.StatusesPerPost, r.WebhookConcurrency)
	}
	if r.ProcessCPUs > 0 {
		fmt.Fprintf(w, "  each process the bench started: GOMAXPROCS %d (--process-cpus)\n", r.ProcessCPUs)
	}
	fmt.Fprintf(w, "  sent %d  failed %d  skipped %d  130429 refusals %d  funnel matches the sandbox: %v\n", r.Sent, r.Failed, r.Skipped, r.Rejected130429, r.FunnelMatches)
	fmt.Fprintf(w, "  messages/s            %10.0f   (launch → last job done, %.1f s)\n", r.MsgPerSec, r.SendMS/1000)
	fmt.Fprintf(w, "  messages/s drained    %10.0f   (launch → every event in ClickHouse, %.1f s)\n", r.MsgPerSecDrain, r.DrainMS/1000)
	fmt.Fprintf(w, "  latency launch→sent   p50 %.0f ms  p99 %.0f ms\n", r.LatencyP50Ms, r.LatencyP99Ms)
	if len(r.Processes) > 0 {
		fmt.Fprintf(w, "  CPU s / 1000 msgs by process (launch → drained):\n")
		for _, p := range r.Processes {
			fmt.Fprintf(w, "    %-18s %8.3f   %s\n", p.Name, p.CPUMSPerMsg, p.Roles)
		}
		if r.WorkerRSSMB > 0 {
			fmt.Fprintf(w, "  peak RSS              %10.0f MB (%s)\n", r.WorkerRSSMB, map[bool]string{true: "the worker process", false: "the bench process"}[r.WorkerCPUMSPerMsg > 0])
		}
	} else {
		fmt.Fprintf(w, "  CPU s / 1000 msgs     %10.3f   (this process)\n", r.CPUMSPerMsg)
		if r.WorkerCPUMSPerMsg > 0 {
			fmt.Fprintf(w, "  worker CPU s / 1000   %10.3f   worker peak RSS %.0f MB\n", r.WorkerCPUMSPerMsg, r.WorkerRSSMB)
		}
		fmt.Fprintf(w, "  redis, clickhouse     %10.3f   %.3f CPU s / 1000 msgs\n", r.RedisCPUMSPerMsg, r.CHCPUMSPerMsg)
	}
	fmt.Fprintf(w, "  pipeline CPU s / 1000 %10.3f   (all of the above)\n", r.TotalCPUMSPerMsg)
	if r.HeraldCPUMSPerMsg > 0 {
		fmt.Fprintf(w, "  without the sandbox   %10.3f   (Herald, its Kafka, Redis and ClickHouse)\n", r.HeraldCPUMSPerMsg)
	}
	fmt.Fprintf(w, "  raw requests/s        %10.0f   (Go client → sandbox alone, same run: %.0f before, %.0f after)\n", r.RawRequestsPerSec, r.RawBefore, r.RawAfter)
	fmt.Fprintf(w, "  HTTP requests / msg   %10.2f   (sends incl. refused + webhook POSTs)\n", r.RequestsPerMsg)
	fmt.Fprintf(w, "  ceiling messages/s    %10.0f\n", r.CeilingMsgPerSec)
	fmt.Fprintf(w, "  ratio                 %10.2f   (drained: %.2f)\n", r.Ratio, r.RatioDrained)
	fmt.Fprintf(w, "  raw CPU ms / request  %10.3f   ratio by CPU %.2f (raw CPU per message ÷ the pipeline's)\n", r.RawCPUPerRequest, r.RatioCPU)
}
