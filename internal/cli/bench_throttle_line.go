package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/channels/line"
	linesandbox "github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// benchGovernorLINE is the governor scenario on LINE: the sandbox's push endpoint allows
// --rate requests per second (LINE's own limit is 2,000), and the worker processes push
// one message per contact through the LINE adapter, each request in a governor slot.
// "130429" in the result counts the sandbox's 429 "Too Many Requests".
func benchGovernorLINE(ctx context.Context, redisAddr string, o throttleBenchOptions, pr *benchProgress) (GovernorBenchResult, error) {
	lim := o.limits()
	cap1, cap60 := lim.Caps()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res := GovernorBenchResult{Processes: o.Processes, Rate: o.Rate, Cap1s: cap1, Cap60s: cap60, DurationMS: ms(o.Duration),
		SlackMS: ms(max(o.Slack, throttle.PaceSlack))}
	sb := linesandbox.New(linesandbox.Config{Token: benchToken, PushRate: int(math.Ceil(o.Rate))})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	sctx, stopSandbox := context.WithCancel(ctx)
	eg, sctx := errgroup.WithContext(sctx)
	eg.Go(func() error { return app.ServeHTTP(sctx, l, sb.Handler()) })
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
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg errgroup.Group
	for i := 0; i < o.Processes; i++ {
		jobs := min(per, backlog-i*per)
		cmd, err := benchWorkerCommand(wctx, "bench", "throttle-worker-line",
			"--redis-addr", redisAddr, "--prefix", prefix, "--sandbox-url", "http://"+l.Addr().String(),
			"--id", strconv.Itoa(i), "--jobs", strconv.Itoa(max(jobs, 0)),
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
				pr.set("governor (line)", sb.Stats().Accepted, total)
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
	startAt := map[string]int64{} // user id → start
	var starts []int64
	for i := range outs {
		var w throttleWorkerOutput
		if err := json.Unmarshal(outs[i].Bytes(), &w); err != nil {
			return res, fmt.Errorf("bench: worker process %d output: %w", i, err)
		}
		for job, ns := range w.Starts {
			starts = append(starts, ns)
			startAt[linesandbox.UserID(benchCallback(i, job))] = ns
		}
		res.Forfeited += w.Forfeited
		res.Unused += w.Unused
		res.Paces += w.Paces
		res.Transport += w.Transport
	}
	var accepted []int64
	var lat []time.Duration
	for _, r := range sb.Records() {
		at := r.At.UnixNano()
		accepted = append(accepted, at)
		if s, ok := startAt[r.To]; ok {
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
	st := sb.Stats()
	res.Throughput429 = st.Rejected["429 rate"]
	res.Refused = []CodeRequests{}
	for reason, n := range st.Rejected {
		code, _ := strconv.Atoi(strings.Fields(reason)[0])
		res.Refused = append(res.Refused, CodeRequests{Code: code, Requests: n})
	}
	slices.SortFunc(res.Refused, func(a, b CodeRequests) int { return a.Code - b.Code })
	ps := throttle.Percentiles(lat, 0.5, 0.99, 1)
	res.LatencyP50MS, res.LatencyP99MS, res.LatencyMaxMS = ms(ps[0]), ms(ps[1]), ms(ps[2])
	return res, nil
}

// benchThrottleWorkerLINECommand is one worker process of `herald bench throttle
// --channel line` (hidden): it paces pushes onto the shared sender and prints what it
// did as JSON.
func benchThrottleWorkerLINECommand() *cli.Command {
	return &cli.Command{
		Name:   "throttle-worker-line",
		Usage:  "one LINE worker process of `herald bench throttle` (internal)",
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
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			rdb := redis.NewClient(&redis.Options{Addr: c.String("redis-addr"), PoolSize: 4})
			defer rdb.Close()
			gov := throttle.NewGovernor(rdb, c.String("prefix"))
			ch, err := line.New(line.Config{BaseURL: c.String("sandbox-url")})
			if err != nil {
				return err
			}
			msgs, err := line.Messages(templates.Rendered{Kind: templates.KindText, Text: "Herald bench"})
			if err != nil {
				return err
			}
			id := c.Int("id")
			var mu sync.Mutex
			codes := map[int]int64{}
			var transport atomic.Int64
			send := func(ctx context.Context, job int) {
				cb := benchCallback(id, job)
				_, err := ch.Push(ctx, benchToken, line.RetryKey(cb), linesandbox.UserID(cb), msgs)
				var ae *line.APIError
				switch {
				case err == nil:
				case errors.As(err, &ae):
					mu.Lock()
					codes[ae.Status]++
					mu.Unlock()
					_ = gov.Pushback(ctx, benchSender, line.Classify(err).Signal) // a rate 429 slows the sender, as the worker does
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
