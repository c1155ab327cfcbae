package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/throttle"
)

const (
	benchSender   = "bench-sender"
	benchPNID     = "100000000000042"
	benchToken    = "bench-token"
	benchTemplate = "herald_bench"
)

func benchThrottleCommand() *cli.Command {
	return &cli.Command{
		Name:  "throttle",
		Usage: "sender governor precision across worker processes, and policy decisions per second per core",
		Description: "Starts a private redis-server and the WhatsApp sandbox (its per-number throughput set to --rate),\n" +
			"then --processes worker processes that share one sender capped at --rate (and --per-minute) with\n" +
			"a backlog, pacing real HTTP sends to the sandbox through throttle.Pace. Reports the achieved rate,\n" +
			"the most sends in any sliding 1 s and 60 s window at start and at the sandbox's acceptance,\n" +
			"windows above the cap, 130429 refusals and forfeited slots. Then measures throttle.Policy.Check\n" +
			"in batches of 500 against the same Redis, per second and per CPU-second of this process, next to\n" +
			"raw pipelined HGETs of the same keys.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "processes", Value: 4, Usage: "worker processes sharing the sender"},
			&cli.Float64Flag{Name: "rate", Value: 80, Usage: "the sender's cap in messages per second"},
			&cli.IntFlag{Name: "per-minute", Usage: "the sender's per-minute cap (0: 60 × rate)"},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Minute, Usage: "how long the processes send"},
			&cli.IntFlag{Name: "backlog", Usage: "jobs queued across the processes (default: 20% more than the duration can send)"},
			&cli.DurationFlag{Name: "slack", Value: throttle.PaceSlack, Usage: "Limits.Slack (at least the pacer's 5ms): widens each window the caps hold over; costs slack / 1s of the rate; beyond 5ms it is margin for the trip to the sandbox"},
			&cli.DurationFlag{Name: "horizon", Value: 2 * time.Second, Usage: "each Pace call's horizon"},
			&cli.IntFlag{Name: "batch", Value: 500, Usage: "jobs per Pace call, and per policy Check"},
			&cli.IntFlag{Name: "policy-contacts", Value: 1_000_000, Usage: "contacts with consent state for the policy scenario (a pass over them is one campaign)"},
			&cli.DurationFlag{Name: "policy-duration", Value: 5 * time.Second, Usage: "each policy measurement (baseline, policy)"},
			&cli.StringFlag{Name: "scenario", Value: "all", Usage: "all, governor or policy"},
			&cli.StringFlag{Name: "channel", Value: "whatsapp", Usage: "the provider sandbox the governor scenario sends to: whatsapp (Cloud API), telegram (Bot API: --rate defaults to the bot's 30/s; above it, paid broadcast) or line (its push endpoint limited to --rate req/s)"},
		},
		Action: func(c *cli.Context) error {
			rate := c.Float64("rate")
			if c.String("channel") == "telegram" && !c.IsSet("rate") {
				rate = 30
			}
			o := throttleBenchOptions{Channel: c.String("channel"),
				Processes: c.Int("processes"), Rate: rate, PerMinute: c.Int("per-minute"),
				Duration: c.Duration("duration"), Backlog: c.Int("backlog"), Slack: c.Duration("slack"),
				Horizon: c.Duration("horizon"), Batch: c.Int("batch"), PolicyContacts: c.Int("policy-contacts"),
				PolicyDuration: c.Duration("policy-duration"), Scenario: c.String("scenario"),
			}
			if err := o.Validate(); err != nil {
				return usage("bench throttle: %w", err)
			}
			cfg, err := config(c)
			if err != nil {
				return err
			}
			return benchThrottle(c, cfg, o)
		},
	}
}

type throttleBenchOptions struct {
	Processes      int
	Rate           float64
	PerMinute      int
	Duration       time.Duration
	Backlog        int
	Slack          time.Duration
	Horizon        time.Duration
	Batch          int
	PolicyContacts int
	PolicyDuration time.Duration
	Scenario       string
	Channel        string // whatsapp (default), telegram or line
}

func (o throttleBenchOptions) limits() throttle.Limits {
	return throttle.Limits{Rate: o.Rate, PerMinute: o.PerMinute, Slack: o.Slack}
}

func (o throttleBenchOptions) Validate() error {
	switch {
	case o.Processes < 1 || o.Processes > 64:
		return fmt.Errorf("--processes %d: want 1 to 64", o.Processes)
	case o.Duration < time.Second:
		return fmt.Errorf("--duration %v: want at least 1s", o.Duration)
	case o.Backlog < 0:
		return fmt.Errorf("--backlog must not be negative")
	case o.Horizon <= 0:
		return fmt.Errorf("--horizon must be positive")
	case o.Batch < 1:
		return fmt.Errorf("--batch must be positive")
	case o.PolicyContacts < 1:
		return fmt.Errorf("--policy-contacts must be positive")
	case o.PolicyDuration <= 0:
		return fmt.Errorf("--policy-duration must be positive")
	case o.Scenario != "all" && o.Scenario != "governor" && o.Scenario != "policy":
		return fmt.Errorf("--scenario %q: want all, governor or policy", o.Scenario)
	case o.Channel != "" && o.Channel != "whatsapp" && o.Channel != "telegram" && o.Channel != "line":
		return fmt.Errorf("--channel %q: want whatsapp, telegram or line", o.Channel)
	case o.Channel == "telegram" && o.Rate > 1000:
		return fmt.Errorf("--rate %v: a Telegram bot sends at most 1000 msg/s (paid broadcast)", o.Rate)
	}
	if err := o.limits().Validate(); err != nil {
		return err
	}
	return nil
}

// ThrottleBenchResult is the output of `herald bench throttle`.
type ThrottleBenchResult struct {
	Governor *GovernorBenchResult        `json:"governor,omitempty"`
	Policy   *throttle.PolicyBenchResult `json:"policy,omitempty"`
}

// GovernorBenchResult is the governor scenario's outcome. Durations are in milliseconds.
type GovernorBenchResult struct {
	Channel       string               `json:"channel"`
	Processes     int                  `json:"processes"`
	Rate          float64              `json:"rate"`
	Cap1s         int                  `json:"cap_1s"`
	Cap60s        int                  `json:"cap_60s"`
	SlackMS       float64              `json:"slack_ms"`
	DurationMS    float64              `json:"duration_ms"`
	Backlog       int                  `json:"backlog"`
	Started       int                  `json:"started"`
	Accepted      int                  `json:"accepted"`
	AchievedRate  float64              `json:"achieved_rate"`  // accepted / duration
	PercentOfCap  float64              `json:"percent_of_cap"` // accepted / what an exact schedule fits (throttle.IdealSends)
	AtStart       throttle.WindowStats `json:"at_start"`
	AtAcceptance  throttle.WindowStats `json:"at_acceptance"`
	Throughput429 int64                `json:"refused_130429"`
	Refused       []CodeRequests       `json:"refused"` // by Graph code, at the sandbox; by code
	Transport     int64                `json:"transport_errors"`
	Forfeited     int                  `json:"forfeited_slots"`
	Unused        int                  `json:"unused_slots"`
	Paces         int                  `json:"pace_calls"`
	LatencyP50MS  float64              `json:"latency_p50_ms"` // start → accepted by the sandbox
	LatencyP99MS  float64              `json:"latency_p99_ms"`
	LatencyMaxMS  float64              `json:"latency_max_ms"`
	// CPUPressure is the share of the run during which some task on the machine waited
	// for a CPU (Linux PSI, /proc/pressure/cpu); -1 when unknown. Above a few percent,
	// late wake-ups forfeit slots and delay requests: the figures are the machine's.
	CPUPressure float64 `json:"cpu_pressure"`
	LoadAverage string  `json:"load_average,omitempty"`
}

// CodeRequests is how many requests the sandbox refused with a Graph error code.
type CodeRequests struct {
	Code     int   `json:"code"`
	Requests int64 `json:"requests"`
}

// cpuPressure reads the total µs some task waited for a CPU (Linux PSI).
func cpuPressure() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	_, total, ok := strings.Cut(line, "total=")
	us, err := strconv.ParseInt(strings.TrimSpace(total), 10, 64)
	if !ok || err != nil {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func benchThrottle(c *cli.Context, cfg app.Config, o throttleBenchOptions) error {
	ctx := c.Context
	srv, _, stop, err := benchRedis(c, cfg)
	if err != nil {
		return err
	}
	defer stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 16})
	defer rdb.Close()

	pr := newBenchProgress(c)
	var out ThrottleBenchResult
	if o.Scenario != "policy" {
		g, err := benchGovernor(ctx, srv.Addr, o, pr)
		pr.finish()
		if err != nil {
			return err
		}
		out.Governor = &g
	}
	if o.Scenario != "governor" {
		p, err := throttle.RunPolicyBench(ctx, throttle.PolicyBenchConfig{Redis: rdb, Prefix: "herald:", Contacts: o.PolicyContacts,
			Batch: o.Batch, Duration: o.PolicyDuration, Progress: pr.set})
		pr.finish()
		if err != nil {
			return err
		}
		out.Policy = &p
	}
	if jsonOut(c) {
		return printJSON(c.App.Writer, out)
	}
	printThrottleBench(c, o, out)
	return nil
}

// benchGovernor runs the sandbox here and the worker processes, and measures their sends.
func benchGovernor(ctx context.Context, redisAddr string, o throttleBenchOptions, pr *benchProgress) (GovernorBenchResult, error) {
	lim := o.limits()
	cap1, cap60 := lim.Caps()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res := GovernorBenchResult{Channel: o.Channel, Processes: o.Processes, Rate: o.Rate, Cap1s: cap1, Cap60s: cap60, DurationMS: ms(o.Duration),
		SlackMS: ms(max(o.Slack, throttle.PaceSlack))} // Pace never reserves with less
	sb := newBenchSandbox(o)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	sctx, stopSandbox := context.WithCancel(ctx)
	eg, sctx := errgroup.WithContext(sctx)
	eg.Go(func() error { return app.ServeHTTP(sctx, l, sb.Handler()) })
	eg.Go(func() error { return sb.Run(sctx) })
	defer func() {
		stopSandbox()
		_ = eg.Wait()
	}()

	backlog := o.Backlog
	if backlog == 0 {
		backlog = int(o.Rate*o.Duration.Seconds()*1.2) + o.Processes
	}
	res.Backlog = backlog
	per := (backlog + o.Processes - 1) / o.Processes
	start := time.Now().Add(time.Second + 100*time.Millisecond*time.Duration(o.Processes))
	stop := start.Add(o.Duration)
	prefix := "herald:bench" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	outs := make([]bytes.Buffer, o.Processes)
	errs := make([]bytes.Buffer, o.Processes)
	wctx, stopWorkers := context.WithCancel(ctx) // no worker outlives an early return
	defer stopWorkers()
	var wg errgroup.Group
	for i := 0; i < o.Processes; i++ {
		jobs := min(per, backlog-i*per)
		cmd, err := benchWorkerCommand(wctx, "bench", "throttle-worker",
			"--redis-addr", redisAddr, "--prefix", prefix, "--sandbox-url", "http://"+l.Addr().String(),
			"--id", strconv.Itoa(i), "--jobs", strconv.Itoa(max(jobs, 0)), "--channel", o.Channel,
			"--rate", strconv.FormatFloat(o.Rate, 'f', -1, 64), "--per-minute", strconv.Itoa(o.PerMinute),
			"--slack", o.Slack.String(), "--horizon", o.Horizon.String(), "--batch", strconv.Itoa(o.Batch),
			"--start", strconv.FormatInt(start.UnixNano(), 10), "--stop", strconv.FormatInt(stop.UnixNano(), 10))
		if err != nil {
			return res, err
		}
		cmd.Stdout, cmd.Stderr = &outs[i], &errs[i]
		if err := cmd.Start(); err != nil {
			return res, fmt.Errorf("bench: start worker process: %w", err)
		}
		wg.Go(func() error {
			if err := cmd.Wait(); err != nil {
				return fmt.Errorf("bench: worker process %d: %w\n%s", i, err, strings.TrimSpace(errs[i].String()))
			}
			return nil
		})
	}
	psi0, psiOK := cpuPressure()
	t0 := time.Now()
	// Progress: accepted sends against what the duration allows.
	done := make(chan struct{})
	var pg sync.WaitGroup
	pg.Go(func() {
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		total := int64(throttle.IdealSends(lim, o.Duration))
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				pr.set("governor", sb.acceptedCount(), total)
			}
		}
	})
	err = wg.Wait()
	close(done)
	pg.Wait()
	if err != nil {
		return res, err
	}
	res.CPUPressure, res.LoadAverage = -1, loadAverage()
	if psi1, ok := cpuPressure(); ok && psiOK {
		res.CPUPressure = float64(psi1-psi0) / float64(time.Since(t0))
	}

	// Start times from the processes; acceptance times from the sandbox's records.
	startAt := map[string]int64{}
	var starts []int64
	for i := range outs {
		var w throttleWorkerOutput
		if err := json.Unmarshal(outs[i].Bytes(), &w); err != nil {
			return res, fmt.Errorf("bench: worker process %d output: %w", i, err)
		}
		for job, ns := range w.Starts {
			starts = append(starts, ns)
			startAt[benchCallback(i, job)] = ns
		}
		res.Forfeited += w.Forfeited
		res.Unused += w.Unused
		res.Paces += w.Paces
		res.Transport += w.Transport
	}
	var accepted []int64
	var lat []time.Duration
	for _, r := range sb.accepted() {
		at := r.at.UnixNano()
		accepted = append(accepted, at)
		if s, ok := startAt[r.cb]; ok {
			lat = append(lat, time.Duration(at-s))
		}
	}
	slices.Sort(starts)
	slices.Sort(accepted)
	res.Started, res.Accepted = len(starts), len(accepted)
	res.AtStart = throttle.Windows(starts, cap1, cap60)
	res.AtAcceptance = throttle.Windows(accepted, cap1, cap60)
	res.AchievedRate = float64(len(accepted)) / o.Duration.Seconds()
	res.PercentOfCap = 100 * float64(len(accepted)) / throttle.IdealSends(lim, o.Duration)
	// The provider's throughput refusal: the Cloud API's 130429, the Bot API's 429.
	res.Throughput429, res.Refused = sb.refusals()
	if res.Refused == nil {
		res.Refused = []CodeRequests{}
	}
	slices.SortFunc(res.Refused, func(a, b CodeRequests) int { return a.Code - b.Code })
	ps := throttle.Percentiles(lat, 0.5, 0.99, 1)
	res.LatencyP50MS, res.LatencyP99MS, res.LatencyMaxMS = ms(ps[0]), ms(ps[1]), ms(ps[2])
	return res, nil
}

// benchWorkerCommand is the command of one worker process: this executable, re-run with
// args. Tests replace it (a test binary is not herald).
var benchWorkerCommand = func(ctx context.Context, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find the herald executable: %w", err)
	}
	return exec.CommandContext(ctx, exe, args...), nil
}

func benchCallback(process, job int) string { return strconv.Itoa(process) + ":" + strconv.Itoa(job) }

type throttleWorkerOutput struct {
	throttle.PaceWorkerResult
	Codes     map[int]int64 `json:"codes"` // refusals by Graph code
	Transport int64         `json:"transport_errors"`
}

// benchThrottleWorkerCommand is one worker process of `herald bench throttle` (hidden):
// it paces its jobs onto the shared sender and prints what it did as JSON.
func benchThrottleWorkerCommand() *cli.Command {
	return &cli.Command{
		Name:   "throttle-worker",
		Usage:  "one worker process of `herald bench throttle` (internal)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "redis-addr", Required: true},
			&cli.StringFlag{Name: "prefix", Required: true},
			&cli.StringFlag{Name: "sandbox-url", Required: true},
			&cli.IntFlag{Name: "id"},
			&cli.IntFlag{Name: "jobs"},
			&cli.Float64Flag{Name: "rate", Value: 80},
			&cli.IntFlag{Name: "per-minute"},
			&cli.DurationFlag{Name: "slack", Value: throttle.PaceSlack},
			&cli.DurationFlag{Name: "horizon", Value: 2 * time.Second},
			&cli.IntFlag{Name: "batch", Value: 500},
			&cli.Int64Flag{Name: "start", Usage: "unix ns"},
			&cli.Int64Flag{Name: "stop", Usage: "unix ns"},
			&cli.StringFlag{Name: "channel", Value: "whatsapp"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			rdb := redis.NewClient(&redis.Options{Addr: c.String("redis-addr"), PoolSize: 4})
			defer rdb.Close()
			gov := throttle.NewGovernor(rdb, c.String("prefix"))
			wa := graph.NewClient(graph.ClientConfig{BaseURL: c.String("sandbox-url")})
			id := c.Int("id")
			var mu sync.Mutex
			codes := map[int]int64{}
			var transport atomic.Int64
			var other func(ctx context.Context, id, job int) (int, bool) // a channel other than WhatsApp
			switch c.String("channel") {
			case "telegram":
				other = benchTelegramSend(c.String("sandbox-url"), c.Float64("rate"))
			case "line":
				other = benchLINESend(c.String("sandbox-url"), gov)
			}
			send := func(ctx context.Context, job int) {
				if other != nil {
					switch code, refused := other(ctx, id, job); {
					case !refused:
					case code == 0:
						transport.Add(1)
					default:
						mu.Lock()
						codes[code]++
						mu.Unlock()
					}
					return
				}
				_, err := wa.Send(ctx, benchPNID, benchToken, graph.SendRequest{
					To: fmt.Sprintf("+1555%03d%06d", id, job), Type: "template",
					Template:              &graph.Template{Name: benchTemplate, Language: graph.Language{Code: "en_US"}},
					BizOpaqueCallbackData: benchCallback(id, job),
				})
				var ae *graph.APIError
				switch {
				case err == nil:
				case errors.As(err, &ae):
					mu.Lock()
					codes[ae.Code]++
					mu.Unlock()
					_ = gov.Pushback(ctx, benchSender, graph.ClassifyCode(ae.Code).Signal) // 130429 slows the sender, as the worker does
				default:
					transport.Add(1)
				}
			}
			res, err := throttle.RunPaceWorker(ctx, throttle.PaceWorkerConfig{
				Governor: gov, Sender: benchSender, Jobs: c.Int("jobs"), Batch: c.Int("batch"), Horizon: c.Duration("horizon"),
				Limits: throttle.Limits{Rate: c.Float64("rate"), PerMinute: c.Int("per-minute"), Slack: c.Duration("slack")},
				Start:  time.Unix(0, c.Int64("start")), Stop: time.Unix(0, c.Int64("stop")), Send: send,
			})
			if err != nil {
				return err
			}
			return json.NewEncoder(c.App.Writer).Encode(throttleWorkerOutput{PaceWorkerResult: res, Codes: codes, Transport: transport.Load()})
		},
	}
}

// benchProgress draws one progress bar per stage on a terminal, and a line per stage
// otherwise.
type benchProgress struct {
	c     *cli.Context
	tty   bool
	mu    sync.Mutex
	stage string
	bar   *progressbar.ProgressBar
}

func newBenchProgress(c *cli.Context) *benchProgress {
	return &benchProgress{c: c, tty: app.IsTerminal(c.App.ErrWriter)}
}

func (p *benchProgress) set(stage string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if stage != p.stage {
		if p.bar != nil {
			_ = p.bar.Finish()
			p.bar = nil
		}
		p.stage = stage
		if !p.tty {
			fmt.Fprintf(p.c.App.ErrWriter, "bench throttle: %s…\n", stage)
			return
		}
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(p.c.App.ErrWriter), progressbar.OptionSetDescription(stage),
			progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	if p.bar != nil {
		_ = p.bar.Set64(min(done, total))
	}
}

func (p *benchProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
	p.stage = ""
}

func printThrottleBench(c *cli.Context, o throttleBenchOptions, r ThrottleBenchResult) {
	var rows [][]string
	if g := r.Governor; g != nil {
		verdict := func(over int) string {
			if over == 0 {
				return "0 windows above the cap"
			}
			return fmt.Sprintf("%d sends above the cap (FAIL)", over)
		}
		refused := "none"
		if len(g.Refused) > 0 {
			var parts []string
			for _, r := range g.Refused {
				parts = append(parts, fmt.Sprintf("%d×%d", r.Requests, r.Code))
			}
			slices.Sort(parts)
			refused = strings.Join(parts, ", ")
		}
		throughputLabel := "130429 from the sandbox"
		switch g.Channel {
		case "telegram":
			throughputLabel = "429 from the Bot API sandbox"
		case "line":
			throughputLabel = "429 from the LINE sandbox"
		}
		rows = append(rows,
			[]string{"governor: achieved rate", fmt.Sprintf("%.2f msg/s", g.AchievedRate),
				fmt.Sprintf("%.2f%% of the cap (target ≥ 98%%); %d accepted in %s by %d processes sharing one sender (backlog %d)", g.PercentOfCap, g.Accepted, o.Duration, g.Processes, g.Backlog)},
			[]string{"max in 1 s, at start", strconv.Itoa(g.AtStart.Max1s), fmt.Sprintf("cap %d: %s", g.Cap1s, verdict(g.AtStart.Over1s))},
			[]string{"max in 60 s, at start", strconv.Itoa(g.AtStart.Max60s), fmt.Sprintf("cap %d: %s", g.Cap60s, verdict(g.AtStart.Over60))},
			[]string{"max in 1 s, at the sandbox", strconv.Itoa(g.AtAcceptance.Max1s), fmt.Sprintf("cap %d: %s", g.Cap1s, verdict(g.AtAcceptance.Over1s))},
			[]string{"max in 60 s, at the sandbox", strconv.Itoa(g.AtAcceptance.Max60s), fmt.Sprintf("cap %d: %s", g.Cap60s, verdict(g.AtAcceptance.Over60))},
			[]string{throughputLabel, strconv.FormatInt(g.Throughput429, 10), "refusals: " + refused + fmt.Sprintf("; transport errors %d", g.Transport)},
			[]string{"forfeited slots", strconv.Itoa(g.Forfeited), fmt.Sprintf("%.2f%% of starts; %d slots unused, %d Pace calls", 100*float64(g.Forfeited)/float64(max(g.Started, 1)), g.Unused, g.Paces)},
			[]string{"slack", (time.Duration(g.SlackMS * float64(time.Millisecond))).String(), fmt.Sprintf("costs %.2f%% of the cap", 100*max(o.Slack, throttle.PaceSlack).Seconds())},
			[]string{"start → accepted", fmt.Sprintf("%.2f ms", g.LatencyP50MS), fmt.Sprintf("median; p99 %.2f ms, max %.2f ms", g.LatencyP99MS, g.LatencyMaxMS)},
		)
		if g.CPUPressure >= 0 {
			rows = append(rows, []string{"machine CPU pressure", fmt.Sprintf("%.0f%%", 100*g.CPUPressure),
				"of the run some task waited for a CPU (PSI); load average " + g.LoadAverage})
		}
	}
	if p := r.Policy; p != nil {
		var vs []string
		for k, n := range p.Verdicts {
			vs = append(vs, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(vs)
		rows = append(rows,
			[]string{"policy: decisions per CPU-second", fmt.Sprintf("%.0f", p.PerCPUSec),
				fmt.Sprintf("target ≥ 100,000; herald's CPU (getrusage): %.2f CPU-s for %d decisions", p.CPUMS/1000, p.Decisions)},
			[]string{"policy: decisions/s", fmt.Sprintf("%.0f", p.PerSec),
				fmt.Sprintf("%d goroutines, batches of %d, %d contacts, %.1f s; redis-server %.2f µs CPU per decision", p.Workers, p.Batch, p.Contacts, p.DurationMS/1000, 1000*p.RedisCPUMS)},
			[]string{"baseline: pipelined HGET per CPU-second", fmt.Sprintf("%.0f", p.BaselinePerCPU),
				fmt.Sprintf("%.0f jobs/s; the same keys, no decisions; redis-server %.2f µs CPU per job", p.BaselinePerSec, 1000*p.BaselineRedisCPUMS)},
			[]string{"policy / baseline (per CPU)", fmt.Sprintf("%.2f", p.Ratio), strings.Join(vs, ", ")},
		)
	}
	table(c.App.Writer, []string{"MEASURE", "VALUE", "DETAIL"}, rows)
}
