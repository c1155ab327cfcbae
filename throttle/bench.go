package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"

	"github.com/herald-dev/herald/internal/procstat"
)

// This file holds the measuring side of `herald bench throttle`: one process's paced
// send loop, the window analysis of send times, and the policy decision benchmark. The
// command (internal/cli) starts the servers and the processes.

// PaceWorkerConfig is one process of the governor benchmark: a backlog of jobs paced
// onto a shared sender's slots.
type PaceWorkerConfig struct {
	Governor *Governor
	Sender   string
	Limits   Limits
	Jobs     int           // this process's backlog
	Batch    int           // jobs per Pace call (default 500, as the worker's batches)
	Horizon  time.Duration // Pace's horizon (default 2 s)
	Start    time.Time     // wait until then (all processes start together)
	Stop     time.Time     // start no job at or after this time
	// Send sends job i; it runs in a goroutine of its own and must not panic.
	Send func(ctx context.Context, job int)
}

// PaceWorkerResult is what one process of the governor benchmark did.
type PaceWorkerResult struct {
	Starts    []int64 `json:"starts"` // unix ns of each job's start, by job index
	Forfeited int     `json:"forfeited"`
	Unused    int     `json:"unused"`
	Paces     int     `json:"paces"` // Pace calls
	Held      int     `json:"held"`  // Pace calls that found the sender held
}

var errBenchStop = errors.New("bench: stop time reached")

// RunPaceWorker paces cfg.Jobs jobs between Start and Stop, sending each at its start,
// and waits for the sends in flight. A Pace that ends before all its jobs are started
// waits for the sender to be nearly free (Next less half the horizon) and goes on, so
// several processes interleave their reservations.
func RunPaceWorker(ctx context.Context, cfg PaceWorkerConfig) (PaceWorkerResult, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = 2 * time.Second
	}
	res := PaceWorkerResult{Starts: make([]int64, 0, cfg.Jobs)}
	var wg sync.WaitGroup
	defer wg.Wait()
	if !sleepUntil(ctx, cfg.Start) {
		return res, ctx.Err()
	}
	job := 0
	for job < cfg.Jobs && time.Now().Before(cfg.Stop) {
		n := min(cfg.Batch, cfg.Jobs-job)
		base := job
		p, err := Pace(ctx, cfg.Governor, cfg.Sender, cfg.Limits, n, min(cfg.Horizon, time.Until(cfg.Stop)), func(i int) error {
			now := time.Now()
			if !now.Before(cfg.Stop) {
				return errBenchStop
			}
			res.Starts = append(res.Starts, now.UnixNano())
			wg.Go(func() { cfg.Send(ctx, base+i) })
			return nil
		}, nil)
		res.Paces++
		res.Forfeited += p.Forfeited
		res.Unused += p.Unused
		job += p.Started
		if errors.Is(err, errBenchStop) {
			break
		}
		if err != nil {
			return res, err
		}
		if p.Held {
			res.Held++
		}
		if p.Started < n {
			if !p.Next.Before(cfg.Stop) {
				break // the sender is busy until the end
			}
			wake := p.Next
			if !p.Held {
				wake = wake.Add(-cfg.Horizon / 2)
			}
			if wake.After(cfg.Stop) {
				wake = cfg.Stop
			}
			if !sleepUntil(ctx, wake) {
				return res, ctx.Err()
			}
		}
	}
	return res, nil
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// WindowStats describe send times against a sender's caps over sliding windows.
type WindowStats struct {
	Sends  int `json:"sends"`
	Max1s  int `json:"max_1s"`  // most sends in any 1 s window [t, t+1s)
	Max60s int `json:"max_60s"` // most sends in any 60 s window
	Over1s int `json:"over_1s"` // sends that are beyond the cap in the 1 s window ending with them (must be 0)
	Over60 int `json:"over_60s"`
}

// Windows measures sorted send times (unix ns) against the 1 s cap and the 60 s cap.
func Windows(times []int64, cap1s, cap60s int) WindowStats {
	s := WindowStats{Sends: len(times)}
	s.Max1s, s.Over1s = windowCount(times, int64(time.Second), cap1s)
	s.Max60s, s.Over60 = windowCount(times, int64(time.Minute), cap60s)
	return s
}

func windowCount(times []int64, w int64, limit int) (most, over int) {
	for i, j := 0, 0; i < len(times); i++ {
		for times[i]-times[j] >= w {
			j++
		}
		n := i - j + 1
		most = max(most, n)
		if n > limit {
			over++
		}
	}
	return most, over
}

// Caps returns the cap of a 1 s and of a 60 s window under lim: ⌈Rate⌉, and the
// per-minute cap or ⌈60 × Rate⌉.
func (l Limits) Caps() (perSecond, perMinute int) {
	perSecond = int(math.Ceil(l.Rate))
	perMinute = int(math.Ceil(60 * l.Rate))
	if l.PerMinute > 0 && l.PerMinute < perMinute {
		perMinute = l.PerMinute
	}
	return perSecond, perMinute
}

// IdealSends is how many sends an exact schedule under lim fits in d with a backlog,
// ignoring the slack: Rate × d, or with a per-minute cap below 60 × Rate, the cap for
// each whole minute plus what the rate fits of the rest (at most the cap).
func IdealSends(lim Limits, d time.Duration) float64 {
	if lim.PerMinute <= 0 || float64(lim.PerMinute) >= 60*lim.Rate {
		return lim.Rate * d.Seconds()
	}
	minutes := math.Floor(d.Minutes())
	rest := d.Seconds() - 60*minutes
	return minutes*float64(lim.PerMinute) + min(float64(lim.PerMinute), lim.Rate*rest)
}

// PolicyBenchConfig configures the policy decision benchmark.
type PolicyBenchConfig struct {
	Redis    redis.UniversalClient
	Prefix   string
	Contacts int           // contacts with a consent state (default 1,000,000)
	Batch    int           // jobs per Check (default 500)
	Workers  int           // concurrent checkers (default GOMAXPROCS)
	Duration time.Duration // each measurement (default 5 s)
	// FreeFormEvery: every k-th job is free-form text, which also reads the 24h window
	// (default 5; <0: none).
	FreeFormEvery int
	Progress      func(stage string, done, total int64) // may be nil
}

// PolicyBenchResult is the policy decision benchmark's outcome. Per-CPU figures divide
// by the CPU time (user + system, getrusage) of this process over the measurement:
// decisions per second per core. Redis's own CPU is reported apart. Durations are in
// milliseconds, rates per second.
type PolicyBenchResult struct {
	Contacts int `json:"contacts"`
	Batch    int `json:"batch"`
	Workers  int `json:"workers"`

	Decisions          int64            `json:"decisions"`
	DurationMS         float64          `json:"duration_ms"`
	CPUMS              float64          `json:"cpu_ms"`
	PerSec             float64          `json:"decisions_per_second"`
	PerCPUSec          float64          `json:"decisions_per_cpu_second"`
	RedisCPUMS         float64          `json:"redis_cpu_ms_per_decision"`
	Verdicts           map[string]int64 `json:"verdicts"`
	BaselinePerSec     float64          `json:"baseline_per_second"`
	BaselinePerCPU     float64          `json:"baseline_per_cpu_second"`
	BaselineRedisCPUMS float64          `json:"baseline_redis_cpu_ms_per_job"`
	// Ratio is PerCPUSec / BaselinePerCPU: the share of raw pipelined HGET speed the
	// policy keeps, CPU for CPU.
	Ratio float64 `json:"ratio_to_baseline"`
}

type discardPublisher struct{}

func (discardPublisher) WriteMessages(context.Context, ...kafka.Message) error { return nil }

// RunPolicyBench grants consent to Contacts contacts (revoking every 20th, leaving a tenth
// of the ids without state), opens the 24h window of every other contact, then measures
// Policy.Check in batches against the real Redis, and the same reads as raw pipelined
// HGETs for a baseline.
func RunPolicyBench(ctx context.Context, cfg PolicyBenchConfig) (PolicyBenchResult, error) {
	if cfg.Contacts <= 0 {
		cfg.Contacts = 1_000_000
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.FreeFormEvery == 0 {
		cfg.FreeFormEvery = 5
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	const sender, channel, purpose = "bench", "whatsapp", "marketing"
	res := PolicyBenchResult{Contacts: cfg.Contacts, Batch: cfg.Batch, Workers: cfg.Workers, Verdicts: map[string]int64{}}

	// Consent through the ledger (the real write path; the topic is discarded).
	led := NewLedger(cfg.Redis, cfg.Prefix, discardPublisher{})
	pol := NewPolicy(cfg.Redis, cfg.Prefix, nil)
	const chunk = 5000
	for lo := 1; lo <= cfg.Contacts; lo += chunk {
		hi := min(lo+chunk, cfg.Contacts+1)
		changes := make([]Change, 0, 2*(hi-lo))
		var ids []uint32
		var at []time.Time
		now := time.Now()
		for id := lo; id < hi; id++ {
			changes = append(changes, Change{ContactID: uint32(id), Channel: channel, Purpose: purpose, Action: events.Grant, Source: "import", Proof: "bench"})
			if id%20 == 0 {
				changes = append(changes, Change{ContactID: uint32(id), Channel: channel, Purpose: purpose, Action: events.Revoke, Source: "keyword", Proof: "bench"})
			}
			if id%2 == 0 {
				ids, at = append(ids, uint32(id)), append(at, now)
			}
		}
		if _, err := led.Apply(ctx, changes, false); err != nil {
			return res, fmt.Errorf("bench: grant consent: %w", err)
		}
		if err := pol.RecordInbound(ctx, sender, ids, at); err != nil {
			return res, fmt.Errorf("bench: open windows: %w", err)
		}
		progress("consent", int64(hi-1), int64(cfg.Contacts))
	}

	ids := cfg.Contacts + cfg.Contacts/10 // a tenth never granted
	// Each pass over the contacts is a new campaign, so a contact seen again is a new
	// message (pair rate, tier), not a retry of the same one.
	campaigns := make([]string, 0, 16)
	var campMu sync.Mutex
	campaign := func(pass int) string {
		campMu.Lock()
		defer campMu.Unlock()
		for len(campaigns) <= pass {
			campaigns = append(campaigns, "bench-"+strconv.Itoa(len(campaigns)))
		}
		return campaigns[pass]
	}
	job := func(k int) Job {
		id := uint32(1 + k%ids)
		return Job{Campaign: campaign(k / ids), ContactID: id, SenderID: sender, Channel: channel, Purpose: purpose,
			FreeForm: cfg.FreeFormEvery > 0 && k%cfg.FreeFormEvery == 0}
	}
	var verdicts [4]atomic.Int64
	decide := func(ctx context.Context, batch []Job) error {
		ds, err := pol.Check(ctx, batch)
		if err != nil {
			return err
		}
		for _, d := range ds {
			verdicts[min(int(d.Verdict), 3)].Add(1)
		}
		return nil
	}
	consentKey := cfg.Prefix + "consent:" + channel + ":" + purpose
	windowKey := cfg.Prefix + "window:" + sender
	raw := func(ctx context.Context, batch []Job) error {
		pipe := cfg.Redis.Pipeline()
		cmds := make([]*redis.StringCmd, 0, len(batch)+len(batch)/4)
		for _, j := range batch {
			id := strconv.FormatUint(uint64(j.ContactID), 10)
			cmds = append(cmds, pipe.HGet(ctx, consentKey, id))
			if j.FreeForm {
				cmds = append(cmds, pipe.HGet(ctx, windowKey, id))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for _, c := range cmds {
			_ = c.Val()
		}
		return nil
	}

	// Warm both paths (connections, scripts), then measure the baseline and the policy.
	if _, err := measure(ctx, cfg, job, raw, 200*time.Millisecond, nil); err != nil {
		return res, fmt.Errorf("bench: baseline: %w", err)
	}
	base, err := measure(ctx, cfg, job, raw, cfg.Duration, func(d, t int64) { progress("baseline", d, t) })
	if err != nil {
		return res, fmt.Errorf("bench: baseline: %w", err)
	}
	if _, err := measure(ctx, cfg, job, decide, 200*time.Millisecond, nil); err != nil {
		return res, fmt.Errorf("bench: policy: %w", err)
	}
	for i := range verdicts {
		verdicts[i].Store(0)
	}
	m, err := measure(ctx, cfg, job, decide, cfg.Duration, func(d, t int64) { progress("policy", d, t) })
	if err != nil {
		return res, fmt.Errorf("bench: policy: %w", err)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.Decisions, res.DurationMS, res.CPUMS = m.jobs, ms(m.wall), ms(m.cpu)
	res.PerSec = float64(m.jobs) / m.wall.Seconds()
	res.PerCPUSec = perCPU(m.jobs, m.cpu)
	res.RedisCPUMS = ms(m.redisCPU) / float64(max(m.jobs, 1))
	res.BaselinePerSec = float64(base.jobs) / base.wall.Seconds()
	res.BaselinePerCPU = perCPU(base.jobs, base.cpu)
	res.BaselineRedisCPUMS = ms(base.redisCPU) / float64(max(base.jobs, 1))
	if res.BaselinePerCPU > 0 {
		res.Ratio = res.PerCPUSec / res.BaselinePerCPU
	}
	for v := range verdicts {
		if n := verdicts[v].Load(); n > 0 {
			res.Verdicts[Verdict(v).String()] = n
		}
	}
	return res, nil
}

func perCPU(jobs int64, cpu time.Duration) float64 {
	if cpu <= 0 {
		return 0
	}
	return float64(jobs) / cpu.Seconds()
}

type measured struct {
	jobs      int64
	wall, cpu time.Duration
	redisCPU  time.Duration
}

// measure runs f over batches from cfg.Workers goroutines for d.
func measure(ctx context.Context, cfg PolicyBenchConfig, job func(int) Job, f func(context.Context, []Job) error, d time.Duration, tick func(done, total int64)) (measured, error) {
	var m measured
	rc0, err := redisCPU(ctx, cfg.Redis)
	if err != nil {
		return m, err
	}
	var jobs atomic.Int64
	var next atomic.Int64
	cpu0, t0 := procstat.CPU(), time.Now()
	stop := t0.Add(d)
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Workers)
	for range cfg.Workers {
		wg.Go(func() {
			batch := make([]Job, cfg.Batch)
			for time.Now().Before(stop) && ctx.Err() == nil {
				k := int(next.Add(int64(cfg.Batch))) - cfg.Batch
				for i := range batch {
					batch[i] = job(k + i)
				}
				if err := f(ctx, batch); err != nil {
					errs <- err
					return
				}
				jobs.Add(int64(cfg.Batch))
			}
		})
	}
	if tick != nil {
		done := make(chan struct{})
		go func() {
			tk := time.NewTicker(100 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-done:
					return
				case <-tk.C:
					tick(time.Since(t0).Milliseconds(), d.Milliseconds())
				}
			}
		}()
		defer close(done)
	}
	wg.Wait()
	m.wall, m.cpu, m.jobs = time.Since(t0), procstat.CPU()-cpu0, jobs.Load()
	select {
	case err := <-errs:
		return m, err
	default:
	}
	rc1, err := redisCPU(ctx, cfg.Redis)
	if err != nil {
		return m, err
	}
	m.redisCPU = rc1 - rc0
	if tick != nil {
		tick(d.Milliseconds(), d.Milliseconds())
	}
	return m, ctx.Err()
}

// redisCPU is the CPU time redis-server has used (INFO cpu).
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	var total time.Duration
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu %s: %w", k, err)
			}
			total += time.Duration(f * float64(time.Second))
		}
	}
	return total, nil
}

// Percentiles returns the p-th percentiles (0..1) of durations (sorted in place).
func Percentiles(ds []time.Duration, ps ...float64) []time.Duration {
	slices.Sort(ds)
	out := make([]time.Duration, len(ps))
	if len(ds) == 0 {
		return out
	}
	for i, p := range ps {
		k := int(p * float64(len(ds)-1))
		out[i] = ds[min(max(k, 0), len(ds)-1)]
	}
	return out
}
