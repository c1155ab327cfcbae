package app

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mail "github.com/wneessen/go-mail"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/email"
	emailsandbox "github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/procstat"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// EmailE2EOptions configure `herald bench e2e --channel email`.
type EmailE2EOptions struct {
	DataDir  string
	Contacts int     // per round: each Herald round is a campaign to contacts of its own
	Senders  int     // email senders (SMTP accounts) the campaigns spread over
	Conns    int     // SMTP connections per sender (its pool_size); the ceiling opens Senders × Conns
	Rate     float64 // per sender, msg/s: high enough not to be the limit
	Rounds   int     // ceiling, Herald, ceiling, Herald … ceiling: Rounds Herald rounds
	// WorkerCmd starts the worker as its own process; nil runs it inside this process.
	WorkerCmd func(env []string) *exec.Cmd
	Progress  func(stage string, done, total int64)
	// CampaignProfile, if set, receives this process's CPU profile (pprof) of the last
	// Herald round, from launch until its events are in ClickHouse.
	CampaignProfile io.Writer
}

// EmailE2EResult is what `herald bench e2e --channel email` measured: each round, and
// the Herald rounds against the ceilings around them.
type EmailE2EResult struct {
	Channel              string  `json:"channel"`
	Contacts             int     `json:"contacts"` // per round
	Senders              int     `json:"senders"`
	ConnectionsPerSender int     `json:"connections_per_sender"`
	Rate                 float64 `json:"rate_per_sender"`

	Rounds []E2ERound `json:"rounds"` // in the order they ran

	// Over the Herald rounds: msg/s, the same run's ceiling around each (the mean of the
	// ceilings before and after it) and their ratio, CPU per message of each side and
	// the ratio by CPU (the ceiling's CPU per message ÷ Herald's).
	HeraldMsgPerSec    Spread `json:"herald_msg_per_second"`
	CeilingMsgPerSec   Spread `json:"ceiling_msg_per_second"`
	Ratio              Spread `json:"ratio"`
	HeraldCPUMSPerMsg  Spread `json:"herald_cpu_ms_per_message"`
	CeilingCPUMSPerMsg Spread `json:"ceiling_cpu_ms_per_message"`
	RatioCPU           Spread `json:"ratio_cpu"`

	Sent      int64 `json:"sent"` // by the campaigns' own counts, all Herald rounds
	Failed    int64 `json:"failed"`
	Skipped   int64 `json:"skipped"`
	Delivered int64 `json:"delivered"` // messages of the campaigns the sandbox accepted, all Herald rounds
	// Duplicates are messages the sandbox accepted twice for one (campaign, contact).
	Duplicates    int64   `json:"duplicates"`
	FunnelMatches bool    `json:"funnel_matches"` // every campaign's ClickHouse funnel equals the sandbox's record
	WorkerRSSMB   float64 `json:"worker_rss_mb"`  // peak RSS of the worker process (of this process when in-process)
}

// E2ERound is one round of a channel bench: the ceiling (a raw client, no Herald) or a
// Herald campaign.
type E2ERound struct {
	Round       int     `json:"round"`
	Side        string  `json:"side"`        // "ceiling" or "herald"
	Messages    int64   `json:"messages"`    // accepted by the sandbox in this round
	Connections int64   `json:"connections"` // opened at the sandbox in this round
	ElapsedMS   float64 `json:"elapsed_ms"`  // ceiling: first dial → last message; herald: launch → the campaign completed
	MsgPerSec   float64 `json:"msg_per_second"`
	CPUMSPerMsg float64 `json:"cpu_ms_per_message"` // every process taking part (herald: until its events are in ClickHouse)
	// Herald rounds only.
	WorkerCPUMSPerMsg float64 `json:"worker_cpu_ms_per_message"` // the worker process (0 when in-process)
	RedisCPUMSPerMsg  float64 `json:"redis_cpu_ms_per_message"`
	CHCPUMSPerMsg     float64 `json:"clickhouse_cpu_ms_per_message"`
	DrainMS           float64 `json:"drain_ms"`               // launch → every event in ClickHouse
	CeilingMsgPerSec  float64 `json:"ceiling_msg_per_second"` // mean of the ceilings before and after
	Ratio             float64 `json:"ratio"`                  // MsgPerSec ÷ CeilingMsgPerSec
	Sent              int64   `json:"sent"`
	Failed            int64   `json:"failed"`
	Skipped           int64   `json:"skipped"`
	Duplicates        int64   `json:"duplicates"` // messages the sandbox accepted twice for one contact
	CampaignID        string  `json:"campaign_id,omitempty"`
}

// Spread is the median, lowest and highest of a figure over rounds.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Median: m, Min: s[0], Max: s[len(s)-1]}
}

const benchMailTemplate = `name: bench_mail
channel: email
locale: en_US
kind: email
email:
  subject: "{{ name | default: 'Hello' }}, our spring sale starts today"
  text: |
    Hi {{ name | default: "there" }}, 20% off everything this week.
    Shoes, bags and coats: the whole shop, until Sunday night.
  html: "<p>Hi {{ name | default: 'there' | escape }}, <b>20% off</b> everything this week.</p><p>Shoes, bags and coats: the whole shop, until Sunday night.</p>"
variables:
  name: {type: string, default: ""}
`

const (
	benchMailFrom     = "news@shop.example"
	benchMailFromName = "Shop News"
)

// benchContact is a contact of one round, as the ceiling needs it.
type benchContact struct {
	id    uint32
	email string
	name  string
}

// benchMail is one message as the ceiling sends it: everything Herald's adapter puts in
// it, decided before the clock starts.
type benchMail struct {
	to, subject, text, html, messageID, callback, unsubscribe string
}

// BenchE2EEmail runs email campaigns through the whole pipeline into the SMTP sandbox
// and, in the same run, alternating with them, the ceiling for the same SMTP work: go-mail
// alone sending the same messages over as many connections into the same sandbox.
func BenchE2EEmail(ctx context.Context, cfg Config, o EmailE2EOptions) (EmailE2EResult, error) {
	res := EmailE2EResult{Channel: "email", Contacts: o.Contacts, Senders: o.Senders, ConnectionsPerSender: o.Conns, Rate: o.Rate,
		Rounds: []E2ERound{}}
	progress := o.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dev, err := StartDev(ctx, cfg, DevOptions{DataDir: o.DataDir, Sandbox: sandbox.Config{DelayScale: 0.01, Seed: 7}})
	if err != nil {
		return res, err
	}
	defer dev.Close()
	// The SMTP sandbox measures SMTP work only: no greylisting, refusals, rate limits,
	// bounces or complaints (nothing flows back to serve).
	dev.EmailSandbox = emailsandbox.New(emailsandbox.Config{Addr: dev.EmailSandboxAddr, Listener: dev.EmailSandboxListener, Logger: dev.Deps.Cfg.Logger})
	dev.NoWorker = o.WorkerCmd != nil
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dev.Run(gctx) })
	stop := func() error {
		cancel()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	b, err := newEmailBench(gctx, dev, o, progress)
	if err == nil {
		err = b.run(gctx, &res)
	}
	return res, errors.Join(err, stop())
}

type emailBench struct {
	dev      *Dev
	o        EmailE2EOptions
	progress func(string, int64, int64)
	comp     *Components
	tpl      *templates.Compiled
	senders  []string
	rounds   [][]benchContact
	worker   *exec.Cmd
	// workerExited is closed once the worker process has exited, with workerErr.
	workerExited chan struct{}
	workerErr    error
}

func newEmailBench(ctx context.Context, dev *Dev, o EmailE2EOptions, progress func(string, int64, int64)) (*emailBench, error) {
	comp, err := dev.Deps.Components()
	if err != nil {
		return nil, err
	}
	b := &emailBench{dev: dev, o: o, progress: progress, comp: comp}
	if err := waitListening(ctx, dev.EmailSandboxAddr); err != nil {
		return nil, err
	}
	// Contacts: each round its own, tagged with the round, opted in to email marketing.
	total := o.Contacts * o.Rounds
	const chunk = 10_000
	for r := 1; r <= o.Rounds; r++ {
		tag := "bench_round_" + strconv.Itoa(r)
		var round []benchContact
		for done := 0; done < o.Contacts; done += chunk {
			n := min(chunk, o.Contacts-done)
			cs := make([]segments.Contact, n)
			for i := range cs {
				k := done + i + 1
				cs[i] = segments.Contact{Email: fmt.Sprintf("r%d.c%d@mail.example", r, k), Name: "Reader " + strconv.Itoa(k), Tags: []string{tag}}
			}
			ids, err := comp.Contacts.Upsert(ctx, cs)
			if err != nil {
				return nil, err
			}
			changes := make([]throttle.Change, len(ids))
			for i, id := range ids {
				changes[i] = throttle.Change{ContactID: id, Channel: "email", Purpose: "marketing", Action: events.Grant, Source: "import", Actor: "bench"}
				round = append(round, benchContact{id: id, email: cs[i].Email, name: cs[i].Name})
			}
			if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
				return nil, err
			}
			progress("contacts", int64((r-1)*o.Contacts+done+n), int64(total))
		}
		b.rounds = append(b.rounds, round)
	}
	t, err := templates.ParseFile([]byte(benchMailTemplate), "bench_mail.yaml")
	if err != nil {
		return nil, err
	}
	if _, err := comp.Templates.Save(ctx, t, []byte(benchMailTemplate)); err != nil {
		return nil, err
	}
	if b.tpl, err = templates.Compile(t); err != nil {
		return nil, err
	}
	for i := 1; i <= o.Senders; i++ {
		id := fmt.Sprintf("bench-mail-%02d", i)
		s := dispatcher.Sender{ID: id, Channel: "email", Rate: o.Rate, Settings: map[string]string{
			"smtp_addr": dev.EmailSandboxAddr, "from": benchMailFrom, "from_name": benchMailFromName, "tls": "none",
			"pool_size": strconv.Itoa(o.Conns)}}
		if err := comp.Senders.Put(ctx, s); err != nil {
			return nil, err
		}
		b.senders = append(b.senders, id)
	}
	return b, nil
}

func (b *emailBench) run(ctx context.Context, res *EmailE2EResult) error {
	if b.o.WorkerCmd != nil {
		env := os.Environ()
		for k, v := range b.dev.Env {
			env = append(env, k+"="+v)
		}
		b.worker = b.o.WorkerCmd(env)
		if err := b.worker.Start(); err != nil {
			return fmt.Errorf("start the worker process: %w", err)
		}
		b.workerExited = make(chan struct{})
		go func() {
			b.workerErr = b.worker.Wait()
			close(b.workerExited)
		}()
		defer func() {
			select {
			case <-b.workerExited:
			default:
				_ = b.worker.Process.Kill()
				<-b.workerExited
			}
		}()
	}
	var ceilings []E2ERound
	var herald []int // indices in res.Rounds
	var campaigns []string
	for r := 1; r <= b.o.Rounds; r++ {
		cp, err := b.comp.Campaigns.Create(ctx, dispatcher.Campaign{Name: "bench " + strconv.Itoa(r), Segment: "bench_round_" + strconv.Itoa(r),
			Template: "bench_mail", Senders: b.senders}, b.comp.Senders)
		if err != nil {
			return err
		}
		mails, err := b.mails(cp.ID, b.rounds[r-1])
		if err != nil {
			return err
		}
		c, err := b.ceiling(ctx, r, mails)
		if err != nil {
			return err
		}
		ceilings = append(ceilings, c)
		res.Rounds = append(res.Rounds, c)
		h, err := b.herald(ctx, r, cp.ID, r == b.o.Rounds)
		if err != nil {
			return err
		}
		res.Rounds = append(res.Rounds, h)
		herald = append(herald, len(res.Rounds)-1)
		campaigns = append(campaigns, cp.ID)
		if r == b.o.Rounds { // the last ceiling, after the last Herald round
			c, err := b.ceiling(ctx, r+1, mails)
			if err != nil {
				return err
			}
			ceilings = append(ceilings, c)
			res.Rounds = append(res.Rounds, c)
		}
	}
	if b.worker != nil {
		res.WorkerRSSMB = procstat.PeakRSSMB(b.worker.Process.Pid)
		_ = b.worker.Process.Signal(syscall.SIGTERM)
		<-b.workerExited
	} else {
		res.WorkerRSSMB = procstat.PeakRSSMB(os.Getpid())
	}
	var hm, cm, ratio, hcpu, ccpu, rcpu []float64
	for i, at := range herald {
		h := &res.Rounds[at]
		// Round i sits between ceilings i and i+1.
		before, after := ceilings[i], ceilings[i+1]
		h.CeilingMsgPerSec = (before.MsgPerSec + after.MsgPerSec) / 2
		if h.CeilingMsgPerSec > 0 {
			h.Ratio = h.MsgPerSec / h.CeilingMsgPerSec
		}
		hm, cm, ratio = append(hm, h.MsgPerSec), append(cm, h.CeilingMsgPerSec), append(ratio, h.Ratio)
		c := (before.CPUMSPerMsg + after.CPUMSPerMsg) / 2
		hcpu, ccpu = append(hcpu, h.CPUMSPerMsg), append(ccpu, c)
		if h.CPUMSPerMsg > 0 {
			rcpu = append(rcpu, c/h.CPUMSPerMsg)
		}
		res.Sent += h.Sent
		res.Failed += h.Failed
		res.Skipped += h.Skipped
		res.Delivered += h.Messages
		res.Duplicates += h.Duplicates
	}
	res.HeraldMsgPerSec, res.CeilingMsgPerSec, res.Ratio = spreadOf(hm), spreadOf(cm), spreadOf(ratio)
	res.HeraldCPUMSPerMsg, res.CeilingCPUMSPerMsg, res.RatioCPU = spreadOf(hcpu), spreadOf(ccpu), spreadOf(rcpu)
	// Every event is in ClickHouse (each round waited for it): the funnels against the
	// sandbox's record.
	conn, err := b.dev.Deps.ClickHouse(ctx)
	if err != nil {
		return err
	}
	res.FunnelMatches = true
	for i, id := range campaigns {
		f, err := analytics.Funnel(ctx, conn, id)
		if err != nil {
			return err
		}
		if (Truth{Accepted: uint64(res.Rounds[herald[i]].Messages)}).Check(f) != nil {
			res.FunnelMatches = false
		}
	}
	return nil
}

// mails are the messages of a round's campaign as Herald renders them, for the ceiling.
func (b *emailBench) mails(campaign string, cs []benchContact) ([]benchMail, error) {
	_, tracker, err := b.dev.Deps.Links()
	if err != nil {
		return nil, err
	}
	out := make([]benchMail, len(cs))
	for i, c := range cs {
		r, err := b.tpl.Render(campaign, c.id, dispatcher.ContactVars(segments.Contact{ID: c.id, Email: c.email, Name: c.name}))
		if err != nil {
			return nil, err
		}
		if r.Email == nil {
			return nil, errors.New("bench template rendered no email")
		}
		m := benchMail{to: c.email, subject: r.Email.Subject, text: r.Email.Text, html: r.Email.HTML,
			messageID: email.NewMessageID(campaign, c.id, r.Variant, "shop.example", nil),
			callback:  dispatcher.CallbackDataVariant(campaign, c.id, r.Variant)}
		if tracker != nil {
			if m.unsubscribe, err = tracker.UnsubscribeURL(campaign, c.id, "email"); err != nil {
				return nil, err
			}
		}
		out[i] = m
	}
	return out, nil
}

// ceiling sends mails with go-mail alone (no Herald code) over Senders × Conns
// connections into the sandbox: one client per connection, dialled once, each driven
// by a goroutine taking the next message, without the NOOP and RSET go-mail adds by
// default (Herald's adapter sends neither). go-mail waits for each command's reply where
// Herald's adapter pipelines MAIL, RCPT and DATA: where round trips rather than CPU are
// the limit, Herald can pass this ceiling. The clock runs from the first dial to the
// last message; this process's CPU (the client and the sandbox) is its cost.
func (b *emailBench) ceiling(ctx context.Context, round int, mails []benchMail) (E2ERound, error) {
	stage := fmt.Sprintf("ceiling %d: go-mail alone", round)
	b.progress(stage, 0, int64(len(mails)))
	r := E2ERound{Round: round, Side: "ceiling"}
	sb := b.dev.EmailSandbox
	st0 := sb.Stats()
	host, port, err := splitHostPort(b.dev.EmailSandboxAddr)
	if err != nil {
		return r, err
	}
	conns := b.o.Senders * b.o.Conns
	var next atomic.Int64
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	clients := make([]*mail.Client, conns)
	cpu0 := procstat.CPU()
	start := time.Now()
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := mail.NewClient(host, mail.WithPort(port), mail.WithTLSPolicy(mail.NoTLS), mail.WithHELO("localhost"),
				mail.WithTimeout(30*time.Second), mail.WithoutNoop(), mail.WithoutRset())
			if err == nil {
				err = c.DialWithContext(ctx)
			}
			if err != nil {
				errs <- fmt.Errorf("ceiling: connect: %w", err)
				return
			}
			clients[w] = c
			for i := next.Add(1) - 1; i < int64(len(mails)); i = next.Add(1) - 1 {
				m, err := mails[i].msg()
				if err == nil {
					err = c.Send(m)
				}
				if err != nil {
					errs <- fmt.Errorf("ceiling: send to %s: %w", mails[i].to, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := procstat.CPU() - cpu0
	for _, c := range clients {
		if c != nil {
			_ = c.Close()
		}
	}
	close(errs)
	if err := <-errs; err != nil {
		return r, err
	}
	st := sb.Stats()
	if err := refusedNone(st); err != nil {
		return r, err
	}
	recs := sb.TakeRecords()
	r.Messages, r.Connections = st.Accepted-st0.Accepted, st.Connections-st0.Connections
	if r.Messages != int64(len(mails)) || len(recs) != len(mails) {
		return r, fmt.Errorf("ceiling: the sandbox accepted %d messages (%d records), want %d", r.Messages, len(recs), len(mails))
	}
	r.ElapsedMS = float64(elapsed.Microseconds()) / 1000
	r.MsgPerSec = float64(r.Messages) / elapsed.Seconds()
	r.CPUMSPerMsg = float64(cpu.Microseconds()) / 1000 / float64(r.Messages)
	b.progress(stage, int64(len(mails)), int64(len(mails)))
	return r, nil
}

// msg builds m as Herald's adapter does: the same fields, in go-mail.
func (m *benchMail) msg() (*mail.Msg, error) {
	g := mail.NewMsg(mail.WithNoDefaultUserAgent())
	if err := g.FromFormat(benchMailFromName, benchMailFrom); err != nil {
		return nil, err
	}
	if err := g.To(m.to); err != nil {
		return nil, err
	}
	g.Subject(m.subject)
	g.SetMessageIDWithValue(m.messageID)
	g.SetDate()
	g.SetGenHeader("X-Herald-Callback", m.callback)
	if m.unsubscribe != "" {
		g.SetListUnsubscribe(m.unsubscribe)
		g.SetListUnsubscribePost()
	}
	g.SetBodyString(mail.TypeTextPlain, m.text)
	g.AddAlternativeString(mail.TypeTextHTML, m.html)
	return g, nil
}

// herald launches round's campaign and measures it from launch until it completed, and
// its CPU until its events are in ClickHouse.
func (b *emailBench) herald(ctx context.Context, round int, campaign string, profile bool) (E2ERound, error) {
	r := E2ERound{Round: round, Side: "herald", CampaignID: campaign}
	stage := fmt.Sprintf("herald %d: campaign", round)
	n := int64(b.o.Contacts)
	sb := b.dev.EmailSandbox
	st0 := sb.Stats()
	if profile && b.o.CampaignProfile != nil {
		if err := pprof.StartCPUProfile(b.o.CampaignProfile); err != nil {
			return r, fmt.Errorf("campaign profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	wpid := 0
	if b.worker != nil {
		wpid = b.worker.Process.Pid
	}
	cpu0, worker0 := procstat.CPU(), procstat.ProcessCPU(wpid)
	redis0, ch0 := procstat.ProcessCPU(b.dev.Redis.Pid()), procstat.ProcessCPU(b.dev.ClickHouse.Pid())
	start := time.Now()
	launched := make(chan error, 1)
	go func() {
		_, err := b.comp.Campaigns.Launch(ctx, campaign, nil)
		launched <- err
	}()
	var st dispatcher.Status
	var err error
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if st, err = b.comp.Campaigns.Status(ctx, campaign); err != nil {
			return r, err
		}
		b.progress(stage, st.Done, n)
		if st.State == dispatcher.Completed {
			break
		}
		select {
		case <-b.workerExited: // nil (never ready) when the worker runs in this process
			return r, fmt.Errorf("herald %d: the worker process exited (its output is in %s unless that directory was temporary): %w",
				round, filepath.Join(b.o.DataDir, "worker.log"), cmp.Or(b.workerErr, errors.New("exit status 0")))
		case err := <-launched:
			if err != nil {
				return r, fmt.Errorf("launch: %w", err)
			}
			launched = nil
		case <-ctx.Done():
			return r, ctx.Err()
		case <-tick.C:
		}
	}
	done := time.Since(start)
	if at := st.CompletedAt.Sub(start); !st.CompletedAt.IsZero() && at > 0 && at < done {
		done = at // the worker's own timestamp, not this loop's next look
	}
	if launched != nil {
		if err := <-launched; err != nil {
			return r, fmt.Errorf("launch: %w", err)
		}
	}
	b.progress(fmt.Sprintf("herald %d: events into ClickHouse", round), 0, 1)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer wcancel()
	if err := waitSink(wctx, b.dev.Deps); err != nil {
		return r, err
	}
	drained := time.Since(start)
	cpu := procstat.CPU() - cpu0
	wcpu := procstat.ProcessCPU(wpid) - worker0
	redisCPU := procstat.ProcessCPU(b.dev.Redis.Pid()) - redis0
	chCPU := procstat.ProcessCPU(b.dev.ClickHouse.Pid()) - ch0
	if wpid == 0 {
		wcpu = 0
	}
	b.progress(fmt.Sprintf("herald %d: events into ClickHouse", round), 1, 1)

	st1 := sb.Stats()
	if err := refusedNone(st1); err != nil {
		return r, err
	}
	recs := sb.TakeRecords()
	seen := make(map[uint32]bool, len(recs))
	for _, rec := range recs {
		c, contact, ok := dispatcher.ParseCallbackData(rec.Callback)
		if !ok || c != campaign {
			return r, fmt.Errorf("herald %d: the sandbox accepted a message of campaign %q (callback %q), want only %s", round, c, rec.Callback, campaign)
		}
		if seen[contact] {
			r.Duplicates++
		}
		seen[contact] = true
	}
	r.Messages, r.Connections = st1.Accepted-st0.Accepted, st1.Connections-st0.Connections
	r.Sent, r.Failed, r.Skipped = st.Sent, st.Failed, st.Skipped
	r.ElapsedMS, r.DrainMS = float64(done.Microseconds())/1000, float64(drained.Microseconds())/1000
	if r.Messages > 0 {
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(r.Messages) }
		r.MsgPerSec = float64(r.Messages) / done.Seconds()
		r.WorkerCPUMSPerMsg, r.RedisCPUMSPerMsg, r.CHCPUMSPerMsg = per(wcpu), per(redisCPU), per(chCPU)
		r.CPUMSPerMsg = per(cpu) + r.WorkerCPUMSPerMsg + r.RedisCPUMSPerMsg + r.CHCPUMSPerMsg
	}
	return r, nil
}

// refusedNone checks that the sandbox refused nothing: both sides measure SMTP work, not
// retries.
func refusedNone(st emailsandbox.Stats) error {
	for reply, n := range st.Refused {
		if n > 0 {
			return fmt.Errorf("the SMTP sandbox refused %d commands with %s: the bench wants a sandbox that takes everything", n, reply)
		}
	}
	return nil
}

// splitHostPort splits a host:port address.
func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	return host, p, err
}

// waitListening waits until something accepts connections at addr.
func waitListening(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PrintEmailE2E writes a result as a table: each round, then the Herald rounds against
// their ceilings.
func PrintEmailE2E(w io.Writer, r EmailE2EResult) {
	fmt.Fprintf(w, "email campaigns of %d contacts per round over %d senders × %d SMTP connections (rate %v msg/s each), %d rounds\n",
		r.Contacts, r.Senders, r.ConnectionsPerSender, r.Rate, (len(r.Rounds)-1)/2)
	fmt.Fprintf(w, "  %-5s %-7s %9s %6s %10s %9s %11s %7s\n", "ROUND", "SIDE", "MESSAGES", "CONNS", "ELAPSED", "MSG/S", "CPU MS/MSG", "RATIO")
	for _, x := range r.Rounds {
		ratio := ""
		if x.Side == "herald" {
			ratio = fmt.Sprintf("%.2f", x.Ratio)
		}
		fmt.Fprintf(w, "  %-5d %-7s %9d %6d %8.2f s %9.0f %11.3f %7s\n", x.Round, x.Side, x.Messages, x.Connections, x.ElapsedMS/1000, x.MsgPerSec, x.CPUMSPerMsg, ratio)
	}
	sp := func(s Spread, f string) string {
		return fmt.Sprintf(f+"  ("+f+" – "+f+")", s.Median, s.Min, s.Max)
	}
	fmt.Fprintf(w, "  sent %d  failed %d  skipped %d  delivered to the sandbox %d  duplicates %d  funnels match the sandbox: %v\n",
		r.Sent, r.Failed, r.Skipped, r.Delivered, r.Duplicates, r.FunnelMatches)
	fmt.Fprintf(w, "  herald messages/s     %s   (launch → campaign completed)\n", sp(r.HeraldMsgPerSec, "%.0f"))
	fmt.Fprintf(w, "  ceiling messages/s    %s   (go-mail alone, same connections, same sandbox)\n", sp(r.CeilingMsgPerSec, "%.0f"))
	fmt.Fprintf(w, "  ratio                 %s   (median, lowest – highest)\n", sp(r.Ratio, "%.2f"))
	fmt.Fprintf(w, "  CPU ms / message      herald %s, ceiling %s\n", sp(r.HeraldCPUMSPerMsg, "%.3f"), sp(r.CeilingCPUMSPerMsg, "%.3f"))
	fmt.Fprintf(w, "  ratio by CPU          %s   (the ceiling's CPU per message ÷ the pipeline's)\n", sp(r.RatioCPU, "%.2f"))
	fmt.Fprintf(w, "  worker peak RSS       %.0f MB\n", r.WorkerRSSMB)
}

// WriteE2ERoundsCSV writes one row per round.
func WriteE2ERoundsCSV(w io.Writer, rounds []E2ERound) error {
	cw := csv.NewWriter(w)
	f := func(x float64, prec int) string { return strconv.FormatFloat(x, 'f', prec, 64) }
	_ = cw.Write([]string{"round", "side", "messages", "connections", "elapsed_ms", "msg_per_second", "cpu_ms_per_message",
		"worker_cpu_ms_per_message", "redis_cpu_ms_per_message", "clickhouse_cpu_ms_per_message", "drain_ms",
		"ceiling_msg_per_second", "ratio", "sent", "failed", "skipped", "duplicates", "campaign_id"})
	for _, x := range rounds {
		_ = cw.Write([]string{strconv.Itoa(x.Round), x.Side, strconv.FormatInt(x.Messages, 10), strconv.FormatInt(x.Connections, 10),
			f(x.ElapsedMS, 3), f(x.MsgPerSec, 1), f(x.CPUMSPerMsg, 4), f(x.WorkerCPUMSPerMsg, 4), f(x.RedisCPUMSPerMsg, 4),
			f(x.CHCPUMSPerMsg, 4), f(x.DrainMS, 3), f(x.CeilingMsgPerSec, 1), f(x.Ratio, 4),
			strconv.FormatInt(x.Sent, 10), strconv.FormatInt(x.Failed, 10), strconv.FormatInt(x.Skipped, 10), strconv.FormatInt(x.Duplicates, 10), x.CampaignID})
	}
	cw.Flush()
	return cw.Error()
}
