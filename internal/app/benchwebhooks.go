package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/localstack"
	"github.com/herald-dev/herald/internal/procstat"
	"github.com/herald-dev/herald/segments"
)

// WebhookBenchOptions configure BenchWebhooks.
type WebhookBenchOptions struct {
	DataDir     string        // where the private Redis keeps its files
	Messages    int           // messages of the seeded campaign whose statuses are posted
	Concurrency []int         // closed-loop steps: connections posting at once (default 8, 32, 64)
	Posts       int           // POSTs per step (default: every status once)
	OpenFor     time.Duration // length of the open-loop run at 80% of capacity (default 5 s)
	InDoubt     float64       // share of sends left in doubt, settled by their first status (default 0.05)
	Progress    func(stage string, done, total int64)
}

// WebhookBenchResult is what BenchWebhooks measured.
type WebhookBenchResult struct {
	Messages        int                `json:"messages"`
	StatusesPerPost int                `json:"statuses_per_post"`
	Statuses        int                `json:"statuses"` // distinct POST bodies: statuses (sent, delivered, read, failed) and inbound replies
	Steps           []WebhookBenchStep `json:"steps"`
	// CapacityPerSecond is the best accepted POSTs/s of the steps; the open loop runs at
	// 80% of it.
	CapacityPerSecond float64          `json:"capacity_per_second"`
	OpenLoop          WebhookBenchOpen `json:"open_loop"`
	// EventsExpected are the events the accepted POSTs must have put in Kafka (delivered,
	// read, and the settlement of each in-doubt send); EventsMissing of them are not there.
	EventsExpected int `json:"events_expected"`
	EventsMissing  int `json:"events_missing"`
	// InboundExpected are the inbound replies the accepted POSTs carried (herald.inbound);
	// InboundMissing of them are not there.
	InboundExpected int `json:"inbound_expected"`
	InboundMissing  int `json:"inbound_missing"`
}

// WebhookBenchStep is one closed-loop step: serve, then the raw loopback ceiling, with
// the same client, bodies and concurrency.
type WebhookBenchStep struct {
	Concurrency         int     `json:"concurrency"`
	Posts               int     `json:"posts"`
	Accepted            int     `json:"accepted"` // answered 200
	Refused             int     `json:"refused"`  // answered otherwise (503 when overloaded)
	PostsPerSecond      float64 `json:"posts_per_second"`
	CeilingPerSecond    float64 `json:"ceiling_posts_per_second"`
	Ratio               float64 `json:"ratio"`
	LatencyP50Ms        float64 `json:"latency_p50_ms"`
	LatencyP99Ms        float64 `json:"latency_p99_ms"`
	CeilingLatencyP50Ms float64 `json:"ceiling_latency_p50_ms"`
	CeilingLatencyP99Ms float64 `json:"ceiling_latency_p99_ms"`
	// CPU per POST, in ms (the table prints µs): serve's side (this process — client, serve and Kafka — and
	// redis-server) and the ceiling's (this process: client and the bare handler).
	// RatioCPU = CeilingCPUMSPerPost ÷ CPUMSPerPost: moves less than Ratio when other
	// jobs share the machine.
	CPUMSPerPost        float64 `json:"cpu_ms_per_post"`
	CeilingCPUMSPerPost float64 `json:"ceiling_cpu_ms_per_post"`
	RatioCPU            float64 `json:"ratio_cpu"`
}

// WebhookBenchOpen is the open-loop run: POSTs started at a fixed rate whatever the
// answers, latency counted from when each was due.
type WebhookBenchOpen struct {
	TargetPerSecond float64 `json:"target_per_second"`
	Posts           int     `json:"posts"`
	Accepted        int     `json:"accepted"`
	PostsPerSecond  float64 `json:"posts_per_second"`
	LatencyP50Ms    float64 `json:"latency_p50_ms"`
	LatencyP99Ms    float64 `json:"latency_p99_ms"`
}

const benchCampaign = "1"

// BenchWebhooks measures webhook ingestion in `herald serve`: Meta-shaped signed POSTs,
// one status each (sent, delivered, read, in a realistic mix), about the messages of a
// seeded campaign whose sends are recorded in Redis (some left in doubt, settled by the
// webhooks), into a real serve on a private Redis and embedded Kafka, at each
// concurrency; then the same POSTs into a handler that only reads the body, the
// ceiling; then an open loop at 80% of the capacity found. Every event the accepted
// POSTs imply is looked for in Kafka at the end.
func BenchWebhooks(ctx context.Context, cfg Config, o WebhookBenchOptions) (WebhookBenchResult, error) {
	if o.Messages <= 0 {
		o.Messages = 20000
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{8, 32, 64}
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 5 * time.Second
	}
	if o.InDoubt == 0 {
		o.InDoubt = 0.05
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	res := WebhookBenchResult{Messages: o.Messages, StatusesPerPost: 1, Steps: []WebhookBenchStep{}}
	cfg.Defaults()
	if cfg.AppSecret == "" {
		cfg.AppSecret = "bench-app-secret"
	}
	if err := localstack.EnsureInstalled(ctx, cfg.Logger); err != nil {
		return res, err
	}
	rs, err := localstack.StartRedis(ctx, filepath.Join(o.DataDir, "redis"))
	if err != nil {
		return res, err
	}
	defer rs.Stop()
	kf, err := kafkax.StartEmbedded(0)
	if err != nil {
		return res, err
	}
	defer kf.Close()
	cfg.KafkaBrokers, cfg.RedisURL, cfg.ClickHouseDSN = kf.Brokers, "redis://"+rs.Addr+"/0", ""
	d := NewDeps(cfg)
	defer d.Close()
	if err := kafkax.EnsureTopics(ctx, kf.Brokers, d.Topics.All(), 4); err != nil {
		return res, err
	}
	progress("seed campaign", 0, int64(o.Messages))
	contacts, doubt, err := seedWebhookCampaign(ctx, d, o)
	if err != nil {
		return res, err
	}
	bodies, keys := webhookBodies(cfg.AppSecret, contacts)
	res.Statuses = len(bodies)
	if o.Posts <= 0 {
		o.Posts = len(bodies)
	}

	srv, err := newServer(d)
	if err != nil {
		return res, err
	}
	serveURL, stopServe, err := listenLoopback(srv.Handler())
	if err != nil {
		return res, err
	}
	defer stopServe()
	raw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	rawURL, stopRaw, err := listenLoopback(raw)
	if err != nil {
		return res, err
	}
	defer stopRaw()

	accepted := make([]bool, len(bodies)) // which bodies serve answered 200 at least once
	var accMu sync.Mutex
	next := 0 // the bodies each phase posts continue where the last stopped
	take := func(n int) []int {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = (next + i) % len(bodies)
		}
		next = (next + n) % len(bodies)
		return idx
	}
	for _, conc := range o.Concurrency {
		idx := take(o.Posts)
		progress(fmt.Sprintf("serve and ceiling, %d connections", conc), 0, int64(len(idx)))
		st := WebhookBenchStep{Concurrency: conc, Posts: len(idx)}
		// Serve and the ceiling take turns on slices of the same POSTs, so that other load
		// on the machine weighs on both alike.
		var sr, cr loopResult
		var serveCPU, rawCPU time.Duration
		for part := range benchRounds {
			lo, hi := part*len(idx)/benchRounds, (part+1)*len(idx)/benchRounds
			c0, r0 := procstat.CPU(), procstat.ProcessCPU(rs.Pid())
			sr.add(closedLoop(ctx, serveURL, bodies, idx[lo:hi], conc))
			c1, r1 := procstat.CPU(), procstat.ProcessCPU(rs.Pid())
			cr.add(closedLoop(ctx, rawURL, bodies, idx[lo:hi], conc))
			serveCPU += c1 - c0 + r1 - r0
			rawCPU += procstat.CPU() - c1
		}
		accMu.Lock()
		for i, ok := range sr.ok {
			if ok {
				accepted[idx[i]] = true
				st.Accepted++
			}
		}
		accMu.Unlock()
		st.Refused = st.Posts - st.Accepted
		st.PostsPerSecond = float64(st.Accepted) / sr.elapsed.Seconds()
		st.LatencyP50Ms, st.LatencyP99Ms = quantileMs(sr.lat, 0.50), quantileMs(sr.lat, 0.99)
		st.CeilingPerSecond = float64(len(idx)) / cr.elapsed.Seconds()
		st.CeilingLatencyP50Ms, st.CeilingLatencyP99Ms = quantileMs(cr.lat, 0.50), quantileMs(cr.lat, 0.99)
		if st.CeilingPerSecond > 0 {
			st.Ratio = st.PostsPerSecond / st.CeilingPerSecond
		}
		st.CPUMSPerPost = float64(serveCPU.Microseconds()) / 1000 / float64(st.Posts)
		st.CeilingCPUMSPerPost = float64(rawCPU.Microseconds()) / 1000 / float64(st.Posts)
		if st.CPUMSPerPost > 0 {
			st.RatioCPU = st.CeilingCPUMSPerPost / st.CPUMSPerPost
		}
		res.Steps = append(res.Steps, st)
		res.CapacityPerSecond = max(res.CapacityPerSecond, st.PostsPerSecond)
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	if res.CapacityPerSecond > 0 {
		rate := 0.8 * res.CapacityPerSecond
		n := max(1, int(rate*o.OpenFor.Seconds()))
		idx := take(n)
		progress(fmt.Sprintf("open loop at %.0f POSTs/s", rate), 0, int64(n))
		r := openLoop(ctx, serveURL, bodies, idx, rate, slices.Max(o.Concurrency))
		ol := WebhookBenchOpen{TargetPerSecond: rate, Posts: n}
		for i, ok := range r.ok {
			if ok {
				accepted[idx[i]] = true
				ol.Accepted++
			}
		}
		ol.PostsPerSecond = float64(ol.Accepted) / r.elapsed.Seconds()
		ol.LatencyP50Ms, ol.LatencyP99Ms = quantileMs(r.lat, 0.50), quantileMs(r.lat, 0.99)
		res.OpenLoop = ol
	}

	// Every accepted POST's events must be in Kafka.
	want, wantIn := map[string]bool{}, map[string]bool{}
	for i, ok := range accepted {
		if !ok {
			continue
		}
		k := keys[i]
		switch {
		case k.inbound != "":
			wantIn[k.inbound] = true
			if k.kind == events.OptedOut {
				want[events.ID("", k.contact, events.OptedOut, k.inbound)] = true
			}
		case k.kind != events.Sent:
			want[events.ID(benchCampaign, k.contact, k.kind, "")] = true
		case doubt[k.contact]:
			want[events.ID(benchCampaign, k.contact, events.Sent, "")] = true
		}
	}
	res.EventsExpected = len(want)
	progress("check Kafka", 0, int64(len(want)))
	missing, err := missingEvents(ctx, kf.Brokers, d.Topics.Events, want)
	if err != nil {
		return res, err
	}
	res.EventsMissing = missing
	res.InboundExpected = len(wantIn)
	if res.InboundMissing, err = missingEvents(ctx, kf.Brokers, d.Topics.Inbound, wantIn); err != nil {
		return res, err
	}
	return res, nil
}

// seedWebhookCampaign stores Messages contacts and campaign 1 as running with every send
// recorded as sent, except a share left in doubt (claimed, never finished: their
// worker died), which the webhooks settle.
func seedWebhookCampaign(ctx context.Context, d *Deps, o WebhookBenchOptions) ([]uint32, map[uint32]bool, error) {
	c, err := d.Components()
	if err != nil {
		return nil, nil, err
	}
	rdb, err := d.Redis()
	if err != nil {
		return nil, nil, err
	}
	if err := rdb.HSet(ctx, d.Cfg.Prefix+"{cmp:"+benchCampaign+"}", "state", "running", "audience", o.Messages, "fanout_done", "1").Err(); err != nil {
		return nil, nil, err
	}
	var ids []uint32
	doubt := map[uint32]bool{}
	r := rand.New(rand.NewPCG(7, 16))
	const chunk = 2000
	for start := 0; start < o.Messages; start += chunk {
		n := min(chunk, o.Messages-start)
		cs := make([]segments.Contact, n)
		for i := range cs {
			cs[i].Phone = fmt.Sprintf("+6681%07d", start+i)
		}
		got, err := c.Contacts.Upsert(ctx, cs)
		if err != nil {
			return nil, nil, fmt.Errorf("seed contacts: %w", err)
		}
		keys := make([]dispatcher.Key, n)
		for i, id := range got {
			keys[i] = dispatcher.Key{Campaign: benchCampaign, Contact: id}
		}
		if _, err := c.Tracker.Claim(ctx, keys); err != nil {
			return nil, nil, fmt.Errorf("seed claims: %w", err)
		}
		var done []dispatcher.Key
		for _, k := range keys {
			if r.Float64() < o.InDoubt {
				doubt[k.Contact] = true
			} else {
				done = append(done, k)
			}
		}
		outcomes := make([]string, len(done))
		for i := range outcomes {
			outcomes[i] = dispatcher.OutcomeSent
		}
		if _, err := c.Tracker.Finish(ctx, done, outcomes); err != nil {
			return nil, nil, fmt.Errorf("seed sends: %w", err)
		}
		ids = append(ids, got...)
	}
	return ids, doubt, nil
}

type webhookKey struct {
	contact uint32
	kind    events.Kind
	inbound string // an inbound message's id
}

// webhookBodies builds one signed POST per status: sent and delivered of every message
// (2% failed with 131026 instead of delivered), read of 60%; and one per inbound reply
// (3% of the contacts answer, one in six of them "STOP"); shuffled the way concurrent
// deliveries interleave.
func webhookBodies(secret string, contacts []uint32) ([]signedBody, []webhookKey) {
	r := rand.New(rand.NewPCG(3, 5))
	var out []signedBody
	var keys []webhookKey
	const pnid = "106540352242922"
	price := &graph.Pricing{Billable: true, PricingModel: "PMP", Type: "regular", Category: "marketing"}
	for ci, c := range contacts {
		st := func(status string) graph.Status {
			return graph.Status{ID: "wamid.BENCH" + strconv.FormatUint(uint64(c), 10), Status: status,
				Timestamp: strconv.FormatInt(time.Now().Unix(), 10), RecipientID: "6681" + strconv.FormatUint(uint64(c), 10),
				BizOpaqueCallbackData: benchCampaign + ":" + strconv.FormatUint(uint64(c), 10)}
		}
		sent := st(graph.StatusSent)
		sent.Pricing = price
		sts := []graph.Status{sent}
		kinds := []events.Kind{events.Sent}
		if r.Float64() < 0.02 {
			f := st(graph.StatusFailed)
			f.Errors = []graph.WebhookError{{Code: 131026, Title: "Message undeliverable", Message: "Message undeliverable"}}
			sts, kinds = append(sts, f), append(kinds, events.Failed)
		} else {
			dl := st(graph.StatusDelivered)
			dl.Pricing = price
			sts, kinds = append(sts, dl), append(kinds, events.Delivered)
			if r.Float64() < 0.6 {
				sts, kinds = append(sts, st(graph.StatusRead)), append(kinds, events.Read)
			}
		}
		if r.Float64() < 0.03 {
			text, kind := "thanks!", events.Kind("")
			if r.IntN(6) == 0 {
				text, kind = "STOP", events.OptedOut
			}
			from := fmt.Sprintf("6681%07d", ci)
			msg := graph.InboundMessage{From: from, ID: "wamid.IN" + strconv.Itoa(ci), Timestamp: strconv.FormatInt(time.Now().Unix(), 10),
				Type: "text", Text: &graph.InboundText{Body: text}}
			wc := graph.WebhookContact{WaID: from}
			wc.Profile.Name = "N" + strconv.Itoa(ci)
			n := graph.Notification{Object: graph.ObjectWhatsApp, Entry: []graph.Entry{{ID: "100000000000001", Changes: []graph.Change{{
				Field: "messages", Value: graph.Value{MessagingProduct: "whatsapp",
					Metadata: graph.Metadata{DisplayPhoneNumber: "15550783881", PhoneNumberID: pnid},
					Contacts: []graph.WebhookContact{wc}, Messages: []graph.InboundMessage{msg}}}}}}}
			b, _ := json.Marshal(n)
			out = append(out, signedBody{body: b, sig: graph.Sign(secret, b)})
			keys = append(keys, webhookKey{contact: c, kind: kind, inbound: msg.ID})
		}
		for i, s := range sts {
			n := graph.Notification{Object: graph.ObjectWhatsApp, Entry: []graph.Entry{{ID: "100000000000001", Changes: []graph.Change{{
				Field: "messages", Value: graph.Value{MessagingProduct: "whatsapp",
					Metadata: graph.Metadata{DisplayPhoneNumber: "15550783881", PhoneNumberID: pnid},
					Statuses: []graph.Status{s}}}}}}}
			b, _ := json.Marshal(n)
			out = append(out, signedBody{body: b, sig: graph.Sign(secret, b)})
			keys = append(keys, webhookKey{contact: c, kind: kinds[i]})
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i]; keys[i], keys[j] = keys[j], keys[i] })
	return out, keys
}

type signedBody struct {
	body []byte
	sig  string
}

func listenLoopback(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	return "http://" + l.Addr().String() + "/webhooks/whatsapp", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

func benchClient(conns int) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
}

type loopResult struct {
	ok      []bool
	lat     []time.Duration
	elapsed time.Duration
}

// benchRounds is how many turns serve and the ceiling take within a step.
const benchRounds = 4

func (r *loopResult) add(o loopResult) {
	r.ok = append(r.ok, o.ok...)
	r.lat = append(r.lat, o.lat...)
	r.elapsed += o.elapsed
}

func postSigned(ctx context.Context, hc *http.Client, url string, b signedBody) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b.body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "facebookexternalua")
	req.Header.Set(graph.SignatureHeader, b.sig)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// closedLoop posts bodies[idx…] over conc connections, each posting its next as soon as
// the last is answered.
func closedLoop(ctx context.Context, url string, bodies []signedBody, idx []int, conc int) loopResult {
	hc := benchClient(conc)
	defer hc.CloseIdleConnections()
	r := loopResult{ok: make([]bool, len(idx)), lat: make([]time.Duration, len(idx))}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(idx) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				r.ok[i] = postSigned(ctx, hc, url, bodies[idx[i]])
				r.lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// openLoop starts POST i at start + i/rate whatever became of the others, over at most
// conns connections (as a provider posts over a bounded pool; a POST waits for a free
// one), and counts each one's latency from when it was due, so that a stall shows in
// the latency of everything queued behind it.
func openLoop(ctx context.Context, url string, bodies []signedBody, idx []int, rate float64, conns int) loopResult {
	const maxInFlight = 4096
	hc := benchClient(conns)
	hc.Transport.(*http.Transport).MaxConnsPerHost = conns
	defer hc.CloseIdleConnections()
	r := loopResult{ok: make([]bool, len(idx)), lat: make([]time.Duration, len(idx))}
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range idx {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r.ok[i] = postSigned(ctx, hc, url, bodies[idx[i]])
			r.lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

func quantileMs(lat []time.Duration, q float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(float64(len(s))*q))]) / float64(time.Millisecond)
}

// missingEvents reads the events topic and counts the ids of want not in it.
func missingEvents(ctx context.Context, brokers []string, topic string, want map[string]bool) (int, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		return 0, fmt.Errorf("events topic metadata: %w", errors.Join(err, errors.New("topic not found")))
	}
	found := map[string]bool{}
	for _, p := range md.Topics[0].Partitions {
		offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(p.ID)}}})
		if err != nil {
			return 0, fmt.Errorf("events offsets: %w", err)
		}
		last := offs.Topics[topic][0].LastOffset
		if last == 0 {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MaxWait: 200 * time.Millisecond, MaxBytes: 8 << 20})
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		for {
			m, err := rd.ReadMessage(rctx)
			if err != nil {
				cancel()
				rd.Close()
				return 0, fmt.Errorf("read events: %w", err)
			}
			var e struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(m.Value, &e) == nil {
				found[e.ID] = true
			}
			if m.Offset+1 >= last {
				break
			}
		}
		cancel()
		rd.Close()
	}
	missing := 0
	for id := range want {
		if !found[id] {
			missing++
		}
	}
	return missing, nil
}

// PrintWebhookBench prints the result as a table.
func PrintWebhookBench(w io.Writer, r WebhookBenchResult) {
	fmt.Fprintf(w, "webhook ingestion: %d messages of a seeded campaign, %d POSTs (%d status or reply each)\n", r.Messages, r.Statuses, r.StatusesPerPost)
	fmt.Fprintf(w, "  %11s %8s %8s %10s %10s %6s %8s %8s %8s %8s %8s %8s %6s\n", "connections", "posts", "refused", "posts/s", "ceiling/s", "ratio",
		"p50 ms", "p99 ms", "raw p50", "raw p99", "CPU µs", "raw µs", "by CPU")
	for _, s := range r.Steps {
		fmt.Fprintf(w, "  %11d %8d %8d %10.0f %10.0f %6.2f %8.2f %8.2f %8.2f %8.2f %8.1f %8.1f %6.2f\n", s.Concurrency, s.Posts, s.Refused,
			s.PostsPerSecond, s.CeilingPerSecond, s.Ratio, s.LatencyP50Ms, s.LatencyP99Ms, s.CeilingLatencyP50Ms, s.CeilingLatencyP99Ms,
			s.CPUMSPerPost*1000, s.CeilingCPUMSPerPost*1000, s.RatioCPU)
	}
	fmt.Fprintf(w, "  (CPU µs per POST: serve's side counts this process — client, serve, Kafka — and redis-server; the ceiling's this process)\n")
	o := r.OpenLoop
	fmt.Fprintf(w, "  open loop at 80%% of %.0f POSTs/s: %.0f POSTs/s target, %.0f accepted/s (%d of %d), p50 %.2f ms, p99 %.2f ms\n",
		r.CapacityPerSecond, o.TargetPerSecond, o.PostsPerSecond, o.Accepted, o.Posts, o.LatencyP50Ms, o.LatencyP99Ms)
	fmt.Fprintf(w, "  in Kafka: %d events expected, %d missing; %d inbound replies expected, %d missing\n", r.EventsExpected, r.EventsMissing, r.InboundExpected, r.InboundMissing)
}

// WebhookBenchCSV returns the steps as CSV rows (a header first), the open loop as a
// last row with its concurrency empty.
func WebhookBenchCSV(r WebhookBenchResult) [][]string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	rows := [][]string{{"phase", "concurrency", "posts", "accepted", "posts_per_second", "ceiling_posts_per_second", "ratio", "latency_p50_ms", "latency_p99_ms", "ceiling_latency_p50_ms", "ceiling_latency_p99_ms",
		"cpu_ms_per_post", "ceiling_cpu_ms_per_post", "ratio_cpu"}}
	for _, s := range r.Steps {
		rows = append(rows, []string{"closed", strconv.Itoa(s.Concurrency), strconv.Itoa(s.Posts), strconv.Itoa(s.Accepted), f(s.PostsPerSecond),
			f(s.CeilingPerSecond), f(s.Ratio), f(s.LatencyP50Ms), f(s.LatencyP99Ms), f(s.CeilingLatencyP50Ms), f(s.CeilingLatencyP99Ms),
			f(s.CPUMSPerPost), f(s.CeilingCPUMSPerPost), f(s.RatioCPU)})
	}
	o := r.OpenLoop
	rows = append(rows, []string{"open_80pct", "", strconv.Itoa(o.Posts), strconv.Itoa(o.Accepted), f(o.PostsPerSecond), "", "", f(o.LatencyP50Ms), f(o.LatencyP99Ms), "", "", "", "", ""})
	return rows
}
