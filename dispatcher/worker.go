package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/templates/links"
	"github.com/herald-dev/herald/throttle"
)

// Contacts loads recipient profiles (segments.Store).
type Contacts interface {
	ProfileFields(ctx context.Context, ids []uint32) ([]segments.Contact, error)
}

// Templates resolves a template name to its compiled form (templates.Cache), in a
// contact's locale when the template has one.
type Templates interface {
	Get(ctx context.Context, name string) (*templates.Compiled, error)
	GetFor(ctx context.Context, name, locale string) (*templates.Compiled, error)
}

// Governor hands out a sender's send slots (throttle.Governor).
type Governor = throttle.Reserver

// WorkerConfig wires a worker.
type WorkerConfig struct {
	Brokers    []string
	Topics     kafkax.Topics
	Group      string // consumer group (default "herald-worker")
	Campaigns  *Campaigns
	Tracker    *Tracker
	Senders    *Senders
	Contacts   Contacts
	Templates  Templates
	Policy     *throttle.Policy
	Governor   Governor
	Channels   map[string]Channel // adapters by channel name (whatsapp, email, sms…)
	Links      *links.Tracker     // click tracking for campaigns that ask for it; nil: not configured
	Events     Publisher          // herald.events
	Delayed    *Delayed           // deferred jobs and retries wait here (the Scheduler moves them back)
	DLQ        Publisher          // herald.dlq
	BatchSize  int                // jobs per batch (default 500)
	Lanes      int                // batches (of different senders) processed at once (default 8)
	MaxPending int                // fetched jobs waiting in lanes before reading pauses (default 20 × BatchSize)
	Linger     time.Duration      // how long a lane waits to fill a batch (default 5 ms)
	// Horizon bounds how far ahead a batch paces a sender: jobs its rate cannot start
	// within it wait in the delayed set instead of holding the lane (default 2 s).
	Horizon time.Duration
	// MinInFlight and MaxInFlight bound the concurrent provider requests (defaults 64 and
	// 1024); between them the worker keeps twice each active sender's rate × request
	// latency (sendSlots).
	MinInFlight, MaxInFlight int
	MaxAttempts              int // sends per job before it fails (default 5)
	// MaxErrorRate pauses a campaign whose share of failed sends crosses it (default
	// 0.25; a campaign's own MaxErrorRate wins), judged once MinErrorSample sends of the
	// campaign have an outcome (default 50).
	MaxErrorRate   float64
	MinErrorSample int64
	// SenderHold is how long a sender's refused job waits after a quality refusal
	// (131048) when the governor does not hold the sender longer (default 15 min).
	SenderHold time.Duration
	// Pushback receives provider refusals that should slow a recipient or a sender
	// (131056, 131049, 130429, 131048). Optional.
	Pushback Pushback
	// Ledger records the opt-outs providers report (131050) as consent revokes. Required.
	Ledger *throttle.Ledger
	// UndeliverableFor is how long a contact the provider cannot reach (131026) stays
	// suppressed on the channel (default 30 days).
	UndeliverableFor time.Duration
	// Reactor carries out refusals' actions; nil: one built from the fields above.
	Reactor *Reactor
	// Failover fires the fallbacks of campaigns with a channel policy (failover.go); nil:
	// such campaigns send on their first channel only. Breaker is the per-sender circuit
	// breaker: fed by every send when set, consulted by campaigns that fall back on
	// circuit_open.
	Failover *Failover
	Breaker  *Breaker
	// Journeys tells which journey sends' contacts have exited their journey since the
	// send was queued (journeys.Exits); nil: not checked.
	Journeys   JourneyExits
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Pushback is told of provider signals that change how a recipient or a sender is paced:
// Recipient of the recipient's (back-off, marketing hold), Sender of the sender's (slow,
// hold, maintenance).
type Pushback interface {
	Recipient(ctx context.Context, sender string, contact uint32, sig throttle.Signal, at time.Time) error
	Sender(ctx context.Context, sender string, sig throttle.Signal) error
}

// Worker consumes herald.outbound and sends.
type Worker struct {
	cfg                 WorkerConfig
	log                 *slog.Logger
	m                   workerMetrics
	specsMu             sync.Mutex
	specs               map[string]Campaign
	quiet               map[string]*throttle.QuietHours // campaigns' own quiet hours
	sendQ               chan sendTask                   // to the send goroutines, shared by the lanes
	slots               *sendSlots                      // how many send goroutines the senders need
	sendersMu           sync.Mutex
	senders             int  // send goroutines started
	sendersStopped      bool // sendQ is closed
	sendCount           atomic.Int64
	sendsOnce, stopOnce sync.Once
	marks               *marker // batches the "send started" marks
	reactor             *Reactor
	spillMu             sync.Mutex
	spill               map[string]time.Time // sender → when the last job deferred for its rate is due
}

type workerMetrics struct {
	jobs, skips, defers, sendErrs *prometheus.CounterVec
	forfeits                      prometheus.Counter
	batch                         prometheus.Histogram
	slots                         prometheus.Gauge
}

// NewWorker returns a worker; Run starts it.
func NewWorker(cfg WorkerConfig) *Worker {
	if cfg.Group == "" {
		cfg.Group = "herald-worker"
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.MinInFlight <= 0 {
		cfg.MinInFlight = 64
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1024
	}
	cfg.MaxInFlight = max(cfg.MaxInFlight, cfg.MinInFlight)
	if cfg.Lanes <= 0 {
		cfg.Lanes = 8
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 20 * cfg.BatchSize
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = 2 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.MaxErrorRate == 0 {
		cfg.MaxErrorRate = 0.25
	}
	if cfg.SenderHold <= 0 {
		cfg.SenderHold = 15 * time.Minute
	}
	if cfg.MinErrorSample <= 0 {
		cfg.MinErrorSample = 50
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry() // unregistered: metrics are kept but not exported
	}
	f := promauto.With(reg)
	reactor := cfg.Reactor
	if reactor == nil {
		reactor = NewReactor(ReactorConfig{Ledger: cfg.Ledger, Policy: cfg.Policy, Campaigns: cfg.Campaigns, Contacts: cfg.Contacts,
			Pushback: cfg.Pushback, Events: cfg.Events, UndeliverableFor: cfg.UndeliverableFor, Logger: log})
	}
	return &Worker{cfg: cfg, log: log.With("component", "worker"), marks: &marker{t: cfg.Tracker, gather: markGather}, reactor: reactor, specs: map[string]Campaign{}, quiet: map[string]*throttle.QuietHours{}, spill: map[string]time.Time{}, sendQ: make(chan sendTask), slots: newSendSlots(cfg.MinInFlight, cfg.MaxInFlight), m: workerMetrics{
		jobs:     f.NewCounterVec(prometheus.CounterOpts{Name: "herald_worker_jobs_total", Help: "Send jobs by outcome (sent, skipped, failed, retried, deferred, parked, duplicate, in_doubt, invalid)."}, []string{"outcome"}),
		defers:   f.NewCounterVec(prometheus.CounterOpts{Name: "herald_worker_deferrals_total", Help: "Deferred jobs by reason code."}, []string{"reason"}),
		skips:    f.NewCounterVec(prometheus.CounterOpts{Name: "herald_worker_skips_total", Help: "Skipped jobs by reason code."}, []string{"reason"}),
		sendErrs: f.NewCounterVec(prometheus.CounterOpts{Name: "herald_worker_send_errors_total", Help: "Provider refusals by action."}, []string{"action"}),
		forfeits: f.NewCounter(prometheus.CounterOpts{Name: "herald_worker_slots_forfeited_total", Help: "Governor slots given up because the worker reached them late (re-reserved, never used in a burst)."}),
		batch:    f.NewHistogram(prometheus.HistogramOpts{Name: "herald_worker_batch_seconds", Help: "Time to process one batch of jobs.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		slots:    f.NewGauge(prometheus.GaugeOpts{Name: "herald_worker_send_slots", Help: "Send goroutines (concurrent provider requests at most): twice the active senders' rate × latency, within the worker's bounds."}),
	}}
}

// item is one job's progress through a batch. Each stage only touches items that are at
// it, so a stage that failed (Redis or Kafka unreachable) is simply run again.
type item struct {
	msg         kafka.Message
	job         Job
	cp          Campaign
	contact     segments.Contact
	rendered    templates.Rendered
	decision    throttle.Decision
	sender      Sender
	providerID  string
	startedAt   time.Time // when its send started: the time of its sent event
	unsubscribe string    // its one-click unsubscribe URL (email marketing)

	claimed       bool   // we own it
	outcome       string // sent, skipped, failed; "" while undecided
	reason        string
	code          int
	retryable     bool
	retry         bool // publish as a retry job instead of an outcome
	retryAt       time.Time
	deferUntil    time.Time // not yet: wait in the delayed set until then
	deferReason   string    // why (an event says so); "" for a silent re-delay
	reacted       bool      // the refusal's pushback was reported
	delayed       bool      // stored in the delayed set
	judged        bool      // counted by judgeErrors
	action        string    // the provider refusal's action
	signal        throttle.Signal
	wait          time.Duration // the refusal's suggested wait (SendError.RetryAfter)
	quiet         *throttle.QuietHours
	restricted    map[string]bool // its campaign's "sender:country" pairs not to try (130497)
	fallback      bool            // rendered with the campaign's fallback template (outside the window)
	drop          bool            // nothing more to do (duplicate, in doubt, invalid → DLQ)
	senderMissing bool
	cancelled     bool
	park          bool // its campaign is paused: move the job to the parked list
	parked        bool
	dlqReason     string
	published     bool // its event (or retry/DLQ message) is in Kafka
	finished      bool // its outcome is recorded in Redis

	chosen      bool  // its channel was chosen by the policy (choose)
	fireDone    bool  // a fallback request's compare-and-set ran
	refused     bool  // the fallback request may not fire: dropped once its claim is given back
	fired       Fired // the fallback in force (stage 1)
	requested   bool  // the fallback it asks for is stored (requestFallbacks)
	breakerSeen bool  // its send's outcome was counted by the breaker
}

// key is the job's progress key: its campaign's, or its fallback's.
func (it *item) key() Key { return stageKey(it.job.Campaign, it.job.Contact, it.job.Stage) }

func (w *Worker) process(ctx context.Context, batch []kafka.Message) error {
	items := make([]*item, 0, len(batch))
	for _, m := range batch {
		it := &item{msg: m}
		j, err := UnmarshalJob(m.Value)
		if err != nil {
			it.drop, it.dlqReason = true, err.Error()
		}
		it.job = j
		items = append(items, it)
	}
	stages := []func(context.Context, []*item) error{w.early, w.loadCampaigns, w.park, w.claim, w.choose, w.render, w.decide, w.journeyExited, w.send, w.recordBreaker, w.react, w.requestFallbacks, w.park, w.publish, w.finish, w.judgeErrors}
	for _, stage := range stages {
		for attempt := 0; ; attempt++ {
			err := stage(ctx, items)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				w.releaseUnsent(items)
				return ctx.Err()
			}
			w.log.Warn("batch stage failed; retrying (nothing is sent unchecked)", "err", err, "attempt", attempt+1)
			if !sleepCtx(ctx, backoff(attempt)) {
				w.releaseUnsent(items)
				return ctx.Err()
			}
		}
	}
	return nil
}

// releaseUnsent gives back the claims of jobs this worker took but never sent, so their
// redelivery (to this or another worker) is not mistaken for an in-doubt send.
func (w *Worker) releaseUnsent(items []*item) {
	var keys []Key
	for _, it := range items {
		// Not sent, or refused by the provider with a code (a transport error may have
		// been accepted: that one stays in doubt for the status webhook to settle).
		if it.claimed && it.outcome == "" && it.providerID == "" && !it.published && (!it.retry || it.code > 0) {
			keys = append(keys, it.key())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.cfg.Tracker.Release(ctx, keys); err != nil {
		w.log.Warn("release claims on shutdown", "err", err, "jobs", len(keys))
	}
}

// early sends jobs that are not due yet (a retry redelivered ahead of its time) back to
// the delayed set untouched: nothing waits inside a batch.
func (w *Worker) early(_ context.Context, items []*item) error {
	limit := time.Now().Add(250 * time.Millisecond)
	for _, it := range items {
		if !it.drop && it.job.NotBefore.After(limit) {
			it.deferUntil = it.job.NotBefore
		}
	}
	return nil
}

func (w *Worker) loadCampaigns(ctx context.Context, items []*item) error {
	// The state is read fresh for every batch (one round trip): a cancel takes effect
	// at the next batch.
	var ids []string
	seen := map[string]bool{}
	for _, it := range items {
		if !it.drop && it.deferUntil.IsZero() && !seen[it.job.Campaign] {
			seen[it.job.Campaign] = true
			ids = append(ids, it.job.Campaign)
		}
	}
	states, err := w.cfg.Campaigns.States(ctx, ids)
	if err != nil {
		return err
	}
	restricted, err := w.cfg.Campaigns.Restrictions(ctx, ids)
	if err != nil {
		return err
	}
	state := map[string]State{}
	for i, id := range ids {
		state[id] = states[i]
	}
	for _, it := range items {
		if !it.drop && it.deferUntil.IsZero() {
			it.cancelled = state[it.job.Campaign] == Cancelled
			it.park = state[it.job.Campaign] == Paused
			it.restricted = restricted[it.job.Campaign]
		}
	}
	for _, it := range items {
		if it.drop || it.cp.ID != "" || !it.deferUntil.IsZero() {
			continue
		}
		w.specsMu.Lock()
		cp, ok := w.specs[it.job.Campaign]
		w.specsMu.Unlock()
		if !ok {
			var err error
			cp, err = w.cfg.Campaigns.Get(ctx, it.job.Campaign)
			if errors.Is(err, ErrNotFound) {
				it.drop, it.dlqReason = true, "unknown campaign "+it.job.Campaign
				continue
			}
			if err != nil {
				return err
			}
			q, err := cp.Quiet()
			if err != nil {
				w.log.Warn("campaign quiet hours unreadable; using the defaults", "campaign", cp.ID, "err", err)
			}
			w.specsMu.Lock()
			w.specs[cp.ID], w.quiet[cp.ID] = cp, q
			w.specsMu.Unlock()
		}
		it.cp = cp
		w.specsMu.Lock()
		it.quiet = w.quiet[cp.ID]
		w.specsMu.Unlock()
		if it.sender.ID == "" && it.job.Stage == 0 { // a fallback's sender is chosen by choose
			s, err := w.cfg.Senders.Cached(ctx, it.job.Sender)
			if errors.Is(err, ErrNotFound) {
				it.senderMissing = true // fails once claimed, so the campaign still completes
				continue
			}
			if err != nil {
				return err
			}
			it.sender = s
		}
	}
	return nil
}

func (w *Worker) claim(ctx context.Context, items []*item) error {
	var todo []*item
	var keys []Key
	for _, it := range items {
		if !it.drop && !it.claimed && it.deferUntil.IsZero() {
			todo = append(todo, it)
			keys = append(keys, it.key())
		}
	}
	res, err := w.cfg.Tracker.Claim(ctx, keys)
	if err != nil {
		return err
	}
	for i, it := range todo {
		switch res[i] {
		case Claimed:
			it.claimed = true
		case AlreadyDone:
			it.drop = true
			w.m.jobs.WithLabelValues("duplicate").Inc()
		case Held:
			// Another worker holds it, or held it and died before sending: look again
			// once its lease has run out.
			it.deferUntil = time.Now().Add(w.cfg.Tracker.Lease() + time.Second)
			w.m.jobs.WithLabelValues("held").Inc()
		default:
			it.drop = true
			w.m.jobs.WithLabelValues("in_doubt").Inc()
			w.log.Warn("job in doubt: claimed by a worker that did not finish it; the status webhook settles it", "campaign", it.job.Campaign, "contact", it.job.Contact)
		}
	}
	return nil
}

func active(it *item) bool {
	return it.claimed && !it.drop && it.outcome == "" && !it.retry && !it.park && it.deferUntil.IsZero()
}

// park moves the jobs of paused campaigns out of Kafka into the campaign's parked list
// (resume puts them back), giving back any claim first. A started send is never parked.
func (w *Worker) park(ctx context.Context, items []*item) error {
	var todo []*item
	var release []Key
	for _, it := range items {
		if it.park && !it.parked && it.outcome == "" && it.providerID == "" && !it.retry && !it.published {
			todo = append(todo, it)
			if it.claimed {
				release = append(release, it.key())
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := w.cfg.Tracker.Release(ctx, release); err != nil {
		return err
	}
	if err := w.releaseCaps(ctx, todo); err != nil {
		return err
	}
	pipe := w.cfg.Campaigns.rdb.Pipeline()
	for _, it := range todo {
		pipe.RPush(ctx, w.cfg.Campaigns.parkedKey(it.job.Campaign), it.msg.Value)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("park jobs of paused campaigns: %w", err)
	}
	for _, it := range todo {
		it.parked, it.claimed, it.drop, it.published = true, false, true, true
		w.m.jobs.WithLabelValues("parked").Inc()
	}
	return nil
}

func (w *Worker) render(ctx context.Context, items []*item) error {
	var todo []*item
	var ids []uint32
	for _, it := range items {
		if active(it) && it.contact.ID == 0 {
			todo = append(todo, it)
			ids = append(ids, it.job.Contact)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	profiles, err := w.cfg.Contacts.ProfileFields(ctx, ids)
	if err != nil {
		return err
	}
	for i, it := range todo {
		c := profiles[i]
		if it.cancelled {
			it.outcome, it.reason = OutcomeSkipped, "campaign_cancelled"
			continue
		}
		if it.senderMissing {
			it.outcome, it.reason = OutcomeFailed, "unknown_sender"
			continue
		}
		if w.channel(it.cp.Channel) == nil {
			it.outcome, it.reason = OutcomeFailed, "channel_unconfigured"
			continue
		}
		if c.ID == 0 {
			it.outcome, it.reason = OutcomeSkipped, "contact_erased"
			continue
		}
		if Address(it.cp.Channel, c) == "" {
			it.outcome, it.reason = OutcomeSkipped, NoAddressReason(it.cp.Channel)
			continue
		}
		if it.cp.InHoldout(it.job.Contact) {
			it.outcome, it.reason = OutcomeSkipped, ReasonHoldout
			continue
		}
		if it.restricted[it.sender.Ref()+":"+c.Country] {
			it.outcome, it.reason = OutcomeSkipped, ReasonCountryRestricted
			continue
		}
		it.contact = c
		if err := w.renderWith(ctx, it, it.cp.Template); err != nil {
			return err
		}
	}
	return nil
}

// renderWith renders it's message from the template named name in the contact's locale;
// a template problem decides the job (failed with its reason), an error is Redis's.
func (w *Worker) renderWith(ctx context.Context, it *item, name string) error {
	c := it.contact
	tpl, err := w.cfg.Templates.GetFor(ctx, name, c.Locale)
	if errors.Is(err, templates.ErrNotFound) {
		it.outcome, it.reason = OutcomeFailed, "template_missing"
		return nil
	}
	if err != nil {
		return err
	}
	r, err := tpl.Render(it.cp.ID, c.ID, ContactVars(c))
	if err != nil {
		it.outcome, it.reason = OutcomeFailed, "render_error"
		var re *templates.RenderError
		if errors.As(err, &re) {
			it.reason = "render_" + re.Reason()
		}
		w.log.Warn("render failed", "campaign", it.cp.ID, "contact", c.ID, "template", name, "err", err)
		return nil
	}
	if r.Channel != "" && it.cp.Channel != "" && r.Channel != it.cp.Channel {
		it.outcome, it.reason = OutcomeFailed, "template_channel_mismatch" // an email template in an SMS campaign…
		return nil
	}
	if it.cp.TrackLinks {
		if w.cfg.Links == nil {
			it.outcome, it.reason = OutcomeFailed, "link_tracking_unconfigured"
			return nil
		}
		if err := r.TrackLinks(w.cfg.Links, it.cp.ID, c.ID); err != nil {
			it.outcome, it.reason = OutcomeFailed, "render_tracked_links"
			w.log.Warn("tracked links", "campaign", it.cp.ID, "contact", c.ID, "err", err)
			return nil
		}
	}
	if it.cp.Channel == "email" && it.cp.Purpose == "marketing" {
		// Bulk marketing mail carries a one-click unsubscribe (RFC 8058; Gmail and Yahoo
		// require it): without a signing key and serve's address there is none to give.
		if w.cfg.Links == nil {
			it.outcome, it.reason = OutcomeFailed, "unsubscribe_unconfigured"
			return nil
		}
		u, err := w.cfg.Links.UnsubscribeURL(it.cp.ID, c.ID, it.cp.Channel)
		if err != nil {
			it.outcome, it.reason = OutcomeFailed, "unsubscribe_link"
			return nil
		}
		it.unsubscribe = u
	}
	it.rendered = r
	return nil
}

// ContactVars is the plain data a template sees for a contact: profile fields and custom
// attributes. The worker renders with it; previews and validation must use it too.
func ContactVars(c segments.Contact) map[string]any {
	v := make(map[string]any, 8+len(c.Attrs))
	for k, a := range c.Attrs {
		v[k] = a
	}
	v["name"], v["phone"], v["email"], v["country"], v["timezone"], v["locale"] = c.Name, c.Phone, c.Email, c.Country, c.TimeZone, c.Locale
	return v
}

// template is the name of the template the job's message was rendered from.
func (it *item) template() string {
	if it.fallback {
		return it.cp.FallbackTemplate
	}
	return it.cp.Template
}

func policyJob(it *item) throttle.Job {
	// The window opens per business phone number: key it as the webhook server does.
	return throttle.Job{Campaign: it.job.Campaign, ContactID: it.job.Contact, SenderID: it.sender.Ref(),
		Channel: it.cp.Channel, Purpose: it.cp.Purpose, FreeForm: it.rendered.FreeForm, CapCategory: it.cp.CapCategory,
		TimeZone: it.contact.TimeZone, Phone: it.contact.Phone, Country: it.contact.Country,
		SenderTier: it.sender.Tier, Quiet: it.quiet}
}

func (w *Worker) decide(ctx context.Context, items []*item) error {
	var todo []*item
	var jobs []throttle.Job
	for _, it := range items {
		if active(it) && it.decision == (throttle.Decision{}) {
			todo = append(todo, it)
			jobs = append(jobs, policyJob(it))
		}
	}
	if len(todo) == 0 {
		return nil
	}
	ds, err := w.cfg.Policy.Check(ctx, jobs)
	if err != nil {
		return err
	}
	var again []*item // free-form outside the window, rendered again from the fallback template
	for i, it := range todo {
		if ds[i].Verdict == throttle.Skip && ds[i].Reason == throttle.ReasonOutsideWindow && it.cp.FallbackTemplate != "" && !it.fallback {
			if err := w.renderWith(ctx, it, it.cp.FallbackTemplate); err != nil {
				return err
			}
			it.fallback = true
			if it.outcome != "" {
				continue // the fallback template is missing or does not render
			}
			if it.rendered.FreeForm {
				it.outcome, it.reason = OutcomeFailed, "fallback_template_free_form"
				continue
			}
			again = append(again, it)
			continue
		}
		w.apply(it, ds[i])
	}
	if len(again) == 0 {
		return nil
	}
	jobs = jobs[:0]
	for _, it := range again {
		jobs = append(jobs, policyJob(it))
	}
	if ds, err = w.cfg.Policy.Check(ctx, jobs); err != nil {
		return err
	}
	for i, it := range again {
		w.apply(it, ds[i])
	}
	return nil
}

// apply records the policy's decision on the job.
func (w *Worker) apply(it *item, d throttle.Decision) {
	it.decision = d
	switch d.Verdict {
	case throttle.Skip:
		it.outcome, it.reason = OutcomeSkipped, d.Reason
	case throttle.Defer:
		it.deferUntil, it.deferReason = d.Until, d.Reason
		if it.deferUntil.IsZero() {
			it.deferUntil = time.Now().Add(time.Second)
		}
	}
}

// send paces each sender's allowed jobs to its governor slots and sends them concurrently.
func (w *Worker) send(ctx context.Context, items []*item) error {
	bySender := map[string][]*item{}
	for _, it := range items {
		if active(it) && it.decision.Verdict == throttle.Allow && it.providerID == "" {
			k := it.job.Sender
			if it.job.Stage > 0 {
				k += "\x00fallback" // sent one by one: a batch record is the first sends'
			}
			bySender[k] = append(bySender[k], it)
		}
	}
	// Each sender is paced in its own lane, so a sender held back by its rate never
	// delays another sender's sends.
	w.startSenders()
	w.growSenders(w.slots.want(time.Now()))
	var sends, lanes sync.WaitGroup
	defer sends.Wait()
	errs := make(chan error, len(bySender))
	for _, list := range bySender {
		lanes.Add(1)
		if bc, ok := w.channel(list[0].cp.Channel).(BatchChannel); ok && list[0].job.Stage == 0 {
			go func() {
				defer lanes.Done()
				errs <- w.paceBatchLane(ctx, list, bc, &sends)
			}()
			continue
		}
		go func() {
			defer lanes.Done()
			errs <- w.paceLane(ctx, list, func(it *item) error {
				sends.Add(1)
				select {
				case w.sendQ <- sendTask{ctx: ctx, it: it, done: &sends}:
					return nil
				case <-ctx.Done():
					sends.Done()
					return ctx.Err()
				}
			})
		}()
	}
	lanes.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// sendTask is one provider request for the send goroutines.
type sendTask struct {
	ctx   context.Context
	it    *item
	batch *batchGroup // a batch request instead (BatchChannel)
	bc    BatchChannel
	done  *sync.WaitGroup
}

// startSenders starts the first MinInFlight long-lived goroutines that make provider
// requests (a goroutine per request would grow a fresh stack for every send).
func (w *Worker) startSenders() {
	w.sendsOnce.Do(func() { w.growSenders(w.cfg.MinInFlight) })
}

// growSenders starts send goroutines until there are n (never more than MaxInFlight,
// never after stopSenders).
func (w *Worker) growSenders(n int) {
	w.sendersMu.Lock()
	defer w.sendersMu.Unlock()
	for ; w.senders < min(n, w.cfg.MaxInFlight) && !w.sendersStopped; w.senders++ {
		go func() {
			for t := range w.sendQ {
				if t.batch != nil {
					w.sendBatch(t.ctx, t.bc, t.batch)
				} else {
					w.sendOne(t.ctx, t.it)
				}
				t.done.Done()
			}
		}()
	}
	w.m.slots.Set(float64(w.senders))
}

// stopSenders ends the send goroutines once no batch can send any more.
func (w *Worker) stopSenders() {
	w.stopOnce.Do(func() {
		w.startSenders() // so that closing never races a late first start
		w.sendersMu.Lock()
		w.sendersStopped = true
		close(w.sendQ)
		w.sendersMu.Unlock()
	})
}

// ReasonNoPhone skips a contact that has no phone number (known by email only) in a
// WhatsApp or SMS campaign, ReasonNoEmail one without an email address in an email
// campaign, ReasonNoTelegram one without a Telegram chat id in a Telegram campaign,
// and ReasonNoLine one without a LINE user id in a LINE campaign.
const (
	ReasonNoPhone    = "no_phone"
	ReasonNoEmail    = "no_email"
	ReasonNoTelegram = "no_telegram"
	ReasonNoLine     = "no_line"
)

// Address is a contact's address on a channel: its email address for email, its
// Telegram chat id for telegram, its LINE user id for line, its phone number (E.164)
// for the phone channels (whatsapp, sms, and a campaign stored without a channel).
func Address(channel string, c segments.Contact) string {
	switch channel {
	case "email":
		return c.Email
	case "telegram":
		return c.TelegramChatID
	case "line":
		return c.LineUserID
	}
	return c.Phone
}

// NoAddressReason is the reason a contact without an Address on a channel is skipped.
func NoAddressReason(channel string) string {
	switch channel {
	case "email":
		return ReasonNoEmail
	case "telegram":
		return ReasonNoTelegram
	case "line":
		return ReasonNoLine
	}
	return ReasonNoPhone
}

// channel returns the adapter that sends a campaign's channel (nil: not configured here).
// A campaign stored without a channel is on WhatsApp, as Create defaults it.
func (w *Worker) channel(name string) Channel {
	if name == "" {
		name = "whatsapp"
	}
	return w.cfg.Channels[name]
}

// ReasonSenderRate defers a job its sender's limits cannot start within the horizon, and
// ReasonSenderHeld one whose sender is on hold (a quality refusal). They are not about the
// contact, so they emit no event (the deferral metric counts them).
const (
	ReasonSenderRate = "sender_rate"
	ReasonSenderHeld = "sender_held"
)

// paceLane starts one sender's jobs in governor slots (throttle.Pace) up to the horizon,
// dropping jobs of campaigns paused meanwhile, and defers the jobs it could not start to
// when their slots are expected: one interval apart after the sender's previous overflow,
// so they come back at the sender's pace and hold nothing meanwhile.
func (w *Worker) paceLane(ctx context.Context, list []*item, start func(*item) error) error {
	s := list[0].sender
	lim := s.Limits()
	res, err := throttle.Pace(ctx, w.cfg.Governor, s.ID, lim, len(list), w.cfg.Horizon,
		func(i int) error {
			it := list[i]
			it.providerID = pending // started: a rerun of this stage must not send it again
			if err := start(it); err != nil {
				it.providerID = ""
				return err
			}
			return nil
		},
		func(started int) (int, error) {
			// A pause must take effect within ~2 s, even in the middle of a long batch.
			rest, err := w.dropPaused(ctx, list[started:])
			if err != nil {
				return 0, err
			}
			list = append(list[:started:started], rest...)
			return len(list), nil
		})
	w.m.forfeits.Add(float64(res.Forfeited))
	if err != nil {
		return err
	}
	left := list[res.Started:]
	if len(left) == 0 {
		return nil
	}
	reason := ReasonSenderRate
	if res.Held {
		reason = ReasonSenderHeld
	}
	interval := time.Duration(float64(time.Second) / s.Rate)
	w.spillMu.Lock()
	at := res.Next
	if at.IsZero() || at.Before(time.Now()) {
		at = time.Now().Add(interval)
	}
	if tail := w.spill[s.ID]; !res.Held && tail.After(at) {
		at = tail
	}
	for _, it := range left {
		it.deferUntil, it.deferReason = at, reason
		at = at.Add(interval)
	}
	w.spill[s.ID] = at
	w.spillMu.Unlock()
	return nil
}

// releaseCaps gives back the frequency-cap slots the policy took for allowed jobs.
func (w *Worker) releaseCaps(ctx context.Context, items []*item) error {
	var jobs []throttle.Job
	for _, it := range items {
		if it.decision.Verdict == throttle.Allow {
			jobs = append(jobs, policyJob(it))
		}
	}
	return w.cfg.Policy.ReleaseCaps(ctx, jobs)
}

// dropPaused marks the jobs of campaigns paused meanwhile for parking and returns the rest.
func (w *Worker) dropPaused(ctx context.Context, list []*item) ([]*item, error) {
	if w.cfg.Campaigns == nil {
		return list, nil
	}
	var ids []string
	seen := map[string]bool{}
	for _, it := range list {
		if !seen[it.job.Campaign] {
			seen[it.job.Campaign] = true
			ids = append(ids, it.job.Campaign)
		}
	}
	states, err := w.cfg.Campaigns.States(ctx, ids)
	if err != nil {
		return nil, err
	}
	paused := map[string]bool{}
	for i, id := range ids {
		paused[id] = states[i] == Paused
	}
	kept := list[:0:0]
	for _, it := range list {
		if paused[it.job.Campaign] {
			it.park = true
			continue
		}
		kept = append(kept, it)
	}
	// Journey contacts who exited meanwhile are skipped too.
	if err := w.journeyExited(ctx, kept); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(kept, func(it *item) bool { return it.outcome != "" }), nil
}

// pending marks a job whose send has started, until sendOne records its outcome.
const pending = "\x00pending"

func (w *Worker) sendOne(ctx context.Context, it *item) {
	msg := Message{To: Address(it.cp.Channel, it.contact), Rendered: it.rendered, Unsubscribe: it.unsubscribe,
		CallbackData: CallbackDataVariant(it.job.Campaign, it.job.Contact, it.rendered.Variant)}
	// The request is not cancelled with ctx: once started, a send finishes and is recorded.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	it.startedAt = time.Now()
	ok, err := w.marks.mark(sctx, it.key(), SendProof{Channel: it.cp.Channel, Purpose: it.cp.Purpose,
		ConsentRef: it.decision.ConsentRef, Template: it.template(), FreeForm: it.rendered.FreeForm})
	if err != nil {
		// Not sent: without the mark a crash could not tell it from an unsent job.
		it.providerID, it.deferUntil = "", time.Now().Add(time.Second)
		w.log.Warn("mark send started", "err", err)
		return
	}
	if !ok {
		// Our lease ran out and another worker took the job over: it sends, not us.
		it.providerID, it.drop, it.claimed = "", true, false
		w.m.jobs.WithLabelValues("lost_claim").Inc()
		return
	}
	start := time.Now()
	id, err := w.channel(it.cp.Channel).Send(sctx, it.sender, msg)
	w.observeSend(it.sender, start)
	w.settleSend(it, id, err)
}

// observeSend feeds a provider request's latency to the send-slot sizing.
func (w *Worker) observeSend(s Sender, start time.Time) {
	now := time.Now()
	w.slots.observe(s.ID, s.Rate, now.Sub(start), now)
	if w.sendCount.Add(1)%64 == 0 { // the pool also grows within a long batch
		w.growSenders(w.slots.want(now))
	}
}

// settleSend records a send's result on its job: sent with the provider's id, retried,
// or failed with the refusal's action.
func (w *Worker) settleSend(it *item, id string, err error) {
	it.providerID = ""
	if err == nil {
		it.providerID, it.outcome = id, OutcomeSent
		return
	}
	var se *SendError
	if !errors.As(err, &se) {
		se = &SendError{Retryable: true, Action: "transport", Err: err}
	}
	w.m.sendErrs.WithLabelValues(se.Action).Inc()
	it.code, it.retryable, it.action, it.signal, it.wait = se.Code, se.Retryable, se.Action, se.Signal, se.RetryAfter
	if se.Retryable && int(it.job.Attempt)+1 < w.cfg.MaxAttempts {
		d := se.RetryAfter
		if d == 0 {
			d = backoff(int(it.job.Attempt))
		}
		it.retry, it.retryAt = true, time.Now().Add(d)
		return
	}
	it.outcome, it.reason = OutcomeFailed, se.Action
}

// publish writes deferrals and retries to the delayed set, then events for decided and
// deferred jobs, then DLQ entries. A job that goes back to wait gives up its claim (and
// any frequency-cap slot) first: if the worker dies before the job is stored, the
// uncommitted original is redelivered and claimed again; never both lost and claimed.
func (w *Worker) publish(ctx context.Context, items []*item) error {
	var later []*item // deferred or retried, not stored yet
	for _, it := range items {
		if !it.published && !it.delayed && it.dlqReason == "" && it.outcome == "" && (it.retry || !it.deferUntil.IsZero()) {
			later = append(later, it)
		}
	}
	if len(later) > 0 {
		var keys []Key
		var allowed []*item
		jobs := make([]Job, len(later))
		for i, it := range later {
			if it.claimed {
				keys = append(keys, it.key())
			}
			if it.decision.Verdict == throttle.Allow {
				allowed = append(allowed, it) // allowed, then not sent (held back or refused)
			}
			j := it.job
			if it.retry {
				j.Attempt++
				j.NotBefore = it.retryAt
			} else {
				j.NotBefore = it.deferUntil
			}
			jobs[i] = j
		}
		if err := w.cfg.Tracker.Release(ctx, keys); err != nil {
			return err
		}
		for _, it := range later {
			it.claimed = false
		}
		if err := w.releaseCaps(ctx, allowed); err != nil {
			return err
		}
		if err := w.cfg.Delayed.Add(ctx, jobs); err != nil {
			return err
		}
		for _, it := range later {
			it.delayed = true
			switch {
			case it.retry:
				it.published = true
				w.m.jobs.WithLabelValues("retried").Inc()
			case it.deferReason == "":
				it.published = true // re-delayed silently: it was early
			case it.deferReason == ReasonSenderRate || it.deferReason == ReasonSenderHeld:
				it.published = true
				w.m.defers.WithLabelValues(it.deferReason).Inc()
			default:
				w.m.jobs.WithLabelValues("deferred").Inc()
				w.m.defers.WithLabelValues(it.deferReason).Inc()
			}
		}
	}

	var evs, dlq []kafka.Message
	var evItems, dlqItems []*item
	now := time.Now()
	for _, it := range items {
		if it.published {
			continue
		}
		switch {
		case it.dlqReason != "":
			dlq = append(dlq, kafka.Message{Key: it.msg.Key, Value: it.msg.Value, Headers: []kafka.Header{{Key: "reason", Value: []byte(it.dlqReason)}}})
			dlqItems = append(dlqItems, it)
		case it.delayed:
			evs = append(evs, w.deferredEvent(it, now))
			evItems = append(evItems, it)
		case it.outcome == OutcomeFallback:
			it.published = true // the fallback event says it (choose, for the next channel)
		case it.outcome != "":
			evs = append(evs, w.event(it, now))
			evItems = append(evItems, it)
		}
	}
	if len(evs) > 0 {
		if err := w.cfg.Events.WriteMessages(ctx, evs...); err != nil {
			return fmt.Errorf("publish events: %w", err)
		}
		for _, it := range evItems {
			it.published = true
		}
	}
	if len(dlq) > 0 {
		if err := w.cfg.DLQ.WriteMessages(ctx, dlq...); err != nil {
			return fmt.Errorf("publish dlq: %w", err)
		}
		for _, it := range dlqItems {
			it.published = true
			w.m.jobs.WithLabelValues("invalid").Inc()
			w.log.Warn("job sent to the DLQ", "reason", it.dlqReason)
		}
	}
	return nil
}

// deferredEvent tells the auditor why a job waits and until when. Each deferral is its
// own event (a job may be deferred more than once).
func (w *Worker) deferredEvent(it *item, now time.Time) kafka.Message {
	ev := events.New(events.Deferred, it.job.Campaign, it.job.Contact, now)
	ev.ID = events.ID(it.job.Campaign, it.job.Contact, events.Deferred, strconv.FormatInt(it.deferUntil.UnixMilli(), 10)+":"+it.deferReason)
	if it.job.Stage > 0 {
		ev.ID = events.ID(it.job.Campaign, it.job.Contact, events.Deferred, it.cp.Channel+":"+strconv.FormatInt(it.deferUntil.UnixMilli(), 10)+":"+it.deferReason)
	}
	ev.SenderID, ev.Channel, ev.Template, ev.Country = it.job.Sender, it.cp.Channel, it.cp.Template, it.contact.Country
	ev.Reason, ev.Until, ev.ErrorCode = it.deferReason, it.deferUntil.UTC(), it.code
	b, _ := ev.Marshal()
	return kafka.Message{Key: kafkax.ContactKey(it.job.Contact), Value: b}
}

// react carries out what a provider's refusal asks for beyond the job itself (the
// Reactor: opt-outs, suppressions, windows, country restrictions, back-off, pauses), then
// decides the job's own fate: wait (marketing hold, a held sender), park (a paused
// campaign), try again (a window the provider says is closed), or a skip that is about
// the contact rather than a failure.
func (w *Worker) react(ctx context.Context, items []*item) error {
	now := time.Now()
	var refusals []Refusal
	var todo []*item
	for _, it := range items {
		if it.code == 0 && it.action == "" || it.reacted {
			continue
		}
		todo = append(todo, it)
		refusals = append(refusals, Refusal{Campaign: it.job.Campaign, Contact: it.job.Contact, Sender: it.job.Sender,
			PhoneNumberID: it.sender.Ref(), Channel: it.cp.Channel, Country: it.contact.Country,
			Code: it.code, Action: it.action, Signal: it.signal, At: now})
	}
	if len(todo) == 0 {
		return nil
	}
	if err := w.reactor.React(ctx, refusals); err != nil {
		return err
	}
	for _, it := range todo {
		it.reacted = true
		switch it.action {
		case ActionHoldMarketing:
			if it.cp.Purpose == "marketing" {
				// Not a failure: the provider holds the contact's marketing (WhatsApp for a
				// day); try when the hold ends: after the refusal's RetryAfter, else after
				// throttle.MarketingHold (how long its signal holds the contact).
				hold := it.wait
				if hold <= 0 {
					hold = throttle.MarketingHold
				}
				it.outcome, it.reason, it.retry = "", "", false
				it.deferUntil, it.deferReason = now.Add(hold), "marketing_hold"
			}
		case ActionPauseSender:
			// Held for the worker's SenderHold, or until the refusal says the sender can
			// send again (a monthly quota that resets), whichever is later.
			it.outcome, it.reason, it.retry = "", "", false
			it.deferUntil, it.deferReason = now.Add(max(w.cfg.SenderHold, it.wait)), "sender_paused"
		case ActionPauseCampaign, ActionPauseAccount:
			// The template (or the account) is broken: every other job would fail the same
			// way. The campaign is paused; this job waits, parked, for the resume.
			it.outcome, it.reason, it.retry, it.park = "", "", false, true
		case ActionConvertToTemplate:
			// The window is closed (the reactor forgot it): checked again, the job goes
			// out with the campaign's fallback template or is skipped outside_window.
			if int(it.job.Attempt)+1 < w.cfg.MaxAttempts {
				it.outcome, it.reason = "", ""
				it.retry, it.retryAt = true, now.Add(time.Second)
			}
		case ActionSkipCountry:
			it.outcome, it.reason = OutcomeSkipped, ReasonCountryRestricted
		case ActionDrop:
			it.outcome, it.reason = OutcomeSkipped, ReasonProviderDropped
		}
	}
	return nil
}

// judgeErrors pauses campaigns whose failure rate crosses their threshold.
func (w *Worker) judgeErrors(ctx context.Context, items []*item) error {
	seen := map[string]Campaign{}
	for _, it := range items {
		if it.outcome == OutcomeFailed && it.finished && it.cp.ID != "" && !it.judged {
			seen[it.cp.ID] = it.cp
		}
	}
	for id, cp := range seen {
		limit := cp.MaxErrorRate
		if limit == 0 {
			limit = w.cfg.MaxErrorRate
		}
		if limit < 0 {
			continue
		}
		st, err := w.cfg.Campaigns.Status(ctx, id)
		if err != nil {
			return err
		}
		tried := st.Sent + st.Failed
		if st.State != Running || tried < w.cfg.MinErrorSample || float64(st.Failed) <= limit*float64(tried) {
			continue
		}
		if _, err := w.cfg.Campaigns.PauseFor(ctx, id, "error_rate"); err != nil {
			w.log.Warn("auto-pause", "campaign", id, "err", err)
			continue
		}
		w.log.Warn("campaign paused: too many failed sends", "campaign", id, "failed", st.Failed, "tried", tried, "max_error_rate", limit)
	}
	for _, it := range items {
		if it.finished {
			it.judged = true
		}
	}
	return nil
}

func (w *Worker) event(it *item, now time.Time) kafka.Message {
	kind := events.Kind(it.outcome)
	if kind == events.Sent && !it.startedAt.IsZero() {
		// A send is dated when it started, as its settlement by webhook is: that is when
		// it relied on its consent, and a consent change learnt from the provider's
		// answer to it comes later.
		now = it.startedAt
	}
	ev := events.New(kind, it.job.Campaign, it.job.Contact, now)
	if it.job.Stage > 0 {
		// A fallback's send: its events stand beside the first send's (failover.go).
		ev.ID = events.ID(it.job.Campaign, it.job.Contact, kind, it.cp.Channel)
	}
	ev.SenderID, ev.Channel, ev.Template, ev.Variant = it.job.Sender, it.cp.Channel, it.template(), it.rendered.Variant
	ev.Country, ev.ProviderMessageID, ev.Reason, ev.ErrorCode, ev.Retryable = it.contact.Country, it.providerID, it.reason, it.code, it.retryable
	if kind == events.Sent {
		ev.ConsentRef = it.decision.ConsentRef
		if it.rendered.FreeForm {
			ev.Reason = events.ReasonFreeForm // the audit checks these against the 24h window
		}
	}
	b, _ := ev.Marshal()
	return kafka.Message{Key: kafkax.ContactKey(it.job.Contact), Value: b}
}

func (w *Worker) finish(ctx context.Context, items []*item) error {
	var todo []*item
	var keys []Key
	var outcomes []string
	for _, it := range items {
		if it.outcome != "" && it.published && !it.finished {
			todo = append(todo, it)
			keys = append(keys, it.key())
			outcomes = append(outcomes, it.outcome)
		}
	}
	// A message the provider refused does not count against the contact's frequency caps.
	var refused []*item
	for _, it := range todo {
		if it.outcome == OutcomeFailed {
			refused = append(refused, it)
		}
	}
	if err := w.releaseCaps(ctx, refused); err != nil {
		return err
	}
	if _, err := w.cfg.Tracker.Finish(ctx, keys, outcomes); err != nil {
		return err
	}
	for _, it := range todo {
		it.finished = true
		w.m.jobs.WithLabelValues(it.outcome).Inc()
		if it.outcome == OutcomeSkipped {
			w.m.skips.WithLabelValues(it.reason).Inc()
		}
	}
	return nil
}

func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 8)
	d = min(d, 30*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func waitUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleepCtx(ctx, d)
}
