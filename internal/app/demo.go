package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

	"github.com/herald-dev/herald/analytics"
	smssandbox "github.com/herald-dev/herald/channels/sms/sandbox"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/jsonx"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// DemoOptions configure `herald demo`.
type DemoOptions struct {
	DataDir  string
	Contacts int
	Rate     float64 // the demo sender's msg/s; the sandbox allows 80 per number, as Meta does by default
	Out, Err io.Writer
	JSON     bool
	// Outage is how long the WhatsApp sandbox is down during the demo's failover
	// campaign (WhatsApp, then SMS); 0 skips that campaign.
	Outage time.Duration
}

// DemoPhoneNumberID is the demo sender's WhatsApp phone-number id.
const DemoPhoneNumberID = "106540352242922"

const demoTemplate = `name: spring_sale
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: spring_sale
  language: en_US
  category: MARKETING
  body:
    first_name: "{{ name | default: 'there' }}"
preview: "Hi {{first_name}}, our spring sale starts today: 20% off everything."
variables:
  name: {type: string, default: ""}
`

// Demo runs a real campaign end to end on a local stack and prints its funnel.
func Demo(ctx context.Context, cfg Config, o DemoOptions) error {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	say := func(format string, a ...any) { fmt.Fprintf(o.Err, "==> "+format+"\n", a...) }
	say("starting the local stack (Redis, ClickHouse, embedded Kafka, WhatsApp sandbox) under %s", o.DataDir)
	dev, err := StartDev(ctx, cfg, DevOptions{DataDir: o.DataDir, Sandbox: sandbox.Config{
		Throughput: 80, DelayScale: 0.05, ReadRate: 0.6, UndeliverableRate: 0.03, DuplicateRate: 0.05, Seed: 42,
		Templates: []sandbox.ApprovedTemplate{{Name: "spring_sale", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}},
	}})
	if err != nil {
		return err
	}
	defer dev.Close()
	if cfg.API != nil && cfg.Console != nil {
		say("web console at %s/console/ while the demo runs (log in with HERALD_API_KEY from %s)", dev.ServeURL, dev.EnvFile)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dev.Run(gctx) })
	err = demoScenario(gctx, dev, o, say)
	cancel()
	if werr := g.Wait(); err == nil && werr != nil {
		err = werr
	}
	if err == nil {
		say("done in %s", time.Since(start).Round(100*time.Millisecond))
	}
	return err
}

func demoScenario(ctx context.Context, dev *Dev, o DemoOptions, say func(string, ...any)) error {
	d := dev.Deps
	comp, err := d.Components()
	if err != nil {
		return err
	}
	// Contacts: a realistic, slightly messy file.
	csv := demoContacts(o.Contacts)
	rep, err := ImportContacts(ctx, d, bytes.NewReader(csv), ImportOptions{Source: "demo-contacts.csv"})
	if err != nil {
		return err
	}
	say("imported contacts: %d rows, %d created, %d rejected (with line numbers):", rep.Read, rep.Created, rep.Rejected)
	for i, r := range rep.Rejects {
		if i == 5 {
			fmt.Fprintf(o.Err, "      ...\n")
			break
		}
		fmt.Fprintf(o.Err, "      line %d: %s\n", r.Line, r.Reason)
	}
	// Template and sender.
	t, err := templates.ParseFile([]byte(demoTemplate), "spring_sale.yaml")
	if err != nil {
		return err
	}
	if _, err := comp.Templates.Save(ctx, t, []byte(demoTemplate)); err != nil {
		return err
	}
	sender := dispatcher.Sender{ID: DemoPhoneNumberID, Channel: "whatsapp", PhoneNumberID: DemoPhoneNumberID, Token: DevSandboxToken, Rate: o.Rate, Name: "Demo Shop"}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		return err
	}
	segment := "customer and not churned"
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Name: "Spring sale", Segment: segment, Template: "spring_sale", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		return err
	}
	n, err := comp.Contacts.Count(ctx, segment)
	if err != nil {
		return err
	}
	say("campaign %s: segment %q selects %d contacts; sender %s at %v msg/s", cp.ID, segment, n, sender.ID, sender.Rate)
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		return err
	}
	if err := WatchCampaign(ctx, comp.Campaigns, cp.ID, o.Err); err != nil {
		return err
	}
	say("campaign complete; waiting for the last status webhooks and the ClickHouse sink")
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := dev.Sandbox.WaitIdle(wctx); err != nil {
		return fmt.Errorf("sandbox webhooks: %w", err)
	}
	if err := waitSink(wctx, d); err != nil {
		return err
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		return err
	}
	f, err := analytics.Funnel(ctx, conn, cp.ID)
	if err != nil {
		return err
	}
	truth := SandboxTruth(dev.Sandbox.Records(), cp.ID)
	smsRes, err := demoSMS(ctx, dev, segment, say)
	if err != nil {
		return err
	}
	tgRes, err := demoTelegram(ctx, dev, segment, say)
	if err != nil {
		return err
	}
	lineRes, err := demoLINE(ctx, dev, segment, say)
	if err != nil {
		return err
	}
	var foRes *FailoverResult
	if o.Outage > 0 {
		if foRes, err = demoFailover(ctx, dev, segment, o.Outage, say, o.Err); err != nil {
			return err
		}
	}
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(jsonx.Output(DemoResult{CampaignID: cp.ID, Funnel: f, Sandbox: truth, SMS: smsRes, Telegram: tgRes, LINE: lineRes, Failover: foRes})); err != nil {
			return err
		}
		if err := truth.Check(f); err != nil {
			return fmt.Errorf("the funnel does not match the sandbox: %w", err)
		}
		if err := smsRes.Sandbox.Check(smsRes.Funnel); err != nil {
			return err
		}
		if err := tgRes.Sandbox.Check(tgRes.Funnel); err != nil {
			return err
		}
		if foRes != nil {
			if err := foRes.Check(); err != nil {
				return err
			}
		}
		return lineRes.Sandbox.Check(lineRes.Funnel)
	}
	fmt.Fprintf(o.Out, "\nFunnel of campaign %s (%q), from ClickHouse:\n", cp.ID, cp.Name)
	PrintFunnel(o.Out, f)
	stats := dev.Sandbox.Stats()
	fmt.Fprintf(o.Out, "\nSandbox ground truth: accepted %d, delivered %d, read %d, failed %d; requests refused %d (130429 throughput: %d); %d webhook POSTs, %d duplicate statuses\n",
		truth.Accepted, truth.Delivered, truth.Read, truth.Failed, sum(stats.Rejected), stats.Rejected[130429], stats.WebhookPosts, stats.Duplicates)
	if err := truth.Check(f); err != nil {
		return fmt.Errorf("the funnel does not match the sandbox: %w", err)
	}
	if n := stats.Rejected[130429]; n > 0 {
		return fmt.Errorf("the sandbox refused %d requests for exceeding the sender's throughput (130429)", n)
	}
	fmt.Fprintf(o.Out, "\nFunnel of SMS campaign %s (the same segment, contacts who opted in to SMS), from ClickHouse:\n", smsRes.CampaignID)
	PrintFunnel(o.Out, smsRes.Funnel)
	fmt.Fprintf(o.Out, "\nSMS sandbox ground truth: accepted %d, delivered %d, undelivered %d\n", smsRes.Sandbox.Accepted, smsRes.Sandbox.Delivered, smsRes.Sandbox.Failed)
	if err := smsRes.Sandbox.Check(smsRes.Funnel); err != nil {
		return fmt.Errorf("the SMS funnel does not match the SMS sandbox: %w", err)
	}
	fmt.Fprintf(o.Out, "\nFunnel of Telegram campaign %s (the same segment, contacts who started the bot), from ClickHouse:\n", tgRes.CampaignID)
	PrintFunnel(o.Out, tgRes.Funnel)
	tgLimited := len(dev.TelegramSandbox.Limited())
	fmt.Fprintf(o.Out, "\nTelegram sandbox ground truth: accepted %d (Telegram has no delivery or read receipts for bots: sent is the funnel); 429s %d\n",
		tgRes.Sandbox.Accepted, tgLimited)
	if err := tgRes.Sandbox.Check(tgRes.Funnel); err != nil {
		return fmt.Errorf("the Telegram funnel does not match the Telegram sandbox: %w", err)
	}
	if tgLimited > 0 {
		return fmt.Errorf("the Telegram sandbox answered %d requests with 429", tgLimited)
	}
	fmt.Fprintf(o.Out, "\nFunnel of LINE campaign %s (the same segment, friends of the LINE account), from ClickHouse:\n", lineRes.CampaignID)
	PrintFunnel(o.Out, lineRes.Funnel)
	fmt.Fprintf(o.Out, "\nLINE sandbox ground truth: accepted %d (LINE reports no delivery)\n", lineRes.Sandbox.Accepted)
	if err := lineRes.Sandbox.Check(lineRes.Funnel); err != nil {
		return fmt.Errorf("the LINE funnel does not match the LINE sandbox: %w", err)
	}
	if foRes != nil {
		printFailover(o.Out, foRes)
		if err := foRes.Check(); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "Every funnel matches its sandbox's record. Query them yourself: source %s; herald report funnel --campaign %s\n", dev.EnvFile, cp.ID)
	return nil
}

// DemoSMSSender is the demo's SMS short code.
const DemoSMSSender = "demo-sms"

const demoSMSTemplate = "name: spring_sale_sms\nchannel: sms\nlocale: en_US\nkind: text\nbody: \"Hi {{ name | default: 'there' }}, our spring sale starts today: 20% off. Reply STOP to opt out.\"\nvariables:\n  name: {type: string, default: \"\"}\n"

// demoSMS runs the same segment on SMS: the contacts with SMS consent (about four in
// five of those opted in to WhatsApp, as an SMS opt-in checkbox would give) get a text
// through the SMS sandbox, whose signed status callbacks come back to serve.
func demoSMS(ctx context.Context, dev *Dev, segment string, say func(string, ...any)) (*ChannelResult, error) {
	d := dev.Deps
	comp, err := d.Components()
	if err != nil {
		return nil, err
	}
	bm, err := comp.Contacts.Evaluate(ctx, segment)
	if err != nil {
		return nil, err
	}
	ids := bm.ToArray()
	wa, err := comp.Policy.Consent(ctx, "whatsapp", "marketing", ids)
	if err != nil {
		return nil, err
	}
	var changes []throttle.Change
	for i, id := range ids {
		if wa[i].Granted && id%5 != 0 {
			changes = append(changes, throttle.Change{ContactID: id, Channel: "sms", Purpose: "marketing", Action: events.Grant,
				Source: "web_form", Wording: "Text me offers", Proof: "demo: SMS opt-in checkbox"})
		}
	}
	if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
		return nil, err
	}
	t, err := templates.ParseFile([]byte(demoSMSTemplate), "spring_sale_sms.yaml")
	if err != nil {
		return nil, err
	}
	if _, err := comp.Templates.Save(ctx, t, []byte(demoSMSTemplate)); err != nil {
		return nil, err
	}
	sender := dispatcher.Sender{ID: DemoSMSSender, Channel: "sms", Token: DevSMSToken, Rate: 200, Name: "Demo Shop SMS",
		Settings: map[string]string{"account_sid": DevSMSAccount, "from": "12345", "sender_type": "short_code"}}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		return nil, err
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Name: "Spring sale (SMS)", Segment: segment, Template: "spring_sale_sms", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		return nil, err
	}
	say("SMS campaign %s: the same segment on SMS (%d contacts opted in to SMS), short code at %v msg/s", cp.ID, len(changes), sender.Rate)
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		return nil, err
	}
	if err := WatchCampaign(ctx, comp.Campaigns, cp.ID, io.Discard); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := dev.SMSSandbox.WaitIdle(wctx); err != nil {
		return nil, fmt.Errorf("sms sandbox callbacks: %w", err)
	}
	if err := waitSink(wctx, d); err != nil {
		return nil, err
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	f, err := analytics.Funnel(ctx, conn, cp.ID)
	if err != nil {
		return nil, err
	}
	return &ChannelResult{CampaignID: cp.ID, Funnel: f, Sandbox: SMSTruth(dev.SMSSandbox.Records(), cp.ID)}, nil
}

// ChannelResult is a campaign's funnel on one channel and that channel's sandbox record.
type ChannelResult struct {
	CampaignID string                 `json:"campaign_id"`
	Funnel     analytics.FunnelReport `json:"funnel"`
	Sandbox    Truth                  `json:"sandbox"`
}

// SMSTruth counts the SMS sandbox's records of campaign.
func SMSTruth(recs []smssandbox.Record, campaign string) Truth {
	return countTruth(campaign, len(recs), func(i int) (string, string) { return recs[i].CallbackData, recs[i].Final })
}

// DemoResult is what `herald -o json demo` prints: the campaign's funnel from
// ClickHouse and the sandbox's own record of the same campaign.
type DemoResult struct {
	CampaignID string                 `json:"campaign_id"`
	Funnel     analytics.FunnelReport `json:"funnel"`
	Sandbox    Truth                  `json:"sandbox"`
	SMS        *ChannelResult         `json:"sms,omitempty"`      // the same segment on SMS
	Telegram   *ChannelResult         `json:"telegram,omitempty"` // the same segment on Telegram
	LINE       *ChannelResult         `json:"line,omitempty"`     // the same segment on LINE
	Failover   *FailoverResult        `json:"failover,omitempty"` // WhatsApp then SMS, through a WhatsApp outage
}

func sum(m map[int]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// waitSink waits until the sink has committed everything on its topics.
func waitSink(ctx context.Context, d *Deps) error {
	if err := analytics.WaitCaughtUp(ctx, d.Cfg.KafkaBrokers, analytics.DefaultSinkGroup, d.Topics.Events, d.Topics.Consent, d.Topics.Inbound); err != nil {
		return fmt.Errorf("waiting for the sink: %w", err)
	}
	return nil
}

// Truth is what the sandbox accepted and decided for one campaign.
type Truth struct {
	Accepted  uint64 `json:"accepted"`
	Delivered uint64 `json:"delivered"`
	Read      uint64 `json:"read"`
	Failed    uint64 `json:"failed"`
}

// SandboxTruth counts the sandbox's records of campaign (by callback data).
func SandboxTruth(recs []sandbox.Record, campaign string) Truth {
	return countTruth(campaign, len(recs), func(i int) (string, string) { return recs[i].CallbackData, recs[i].Final })
}

// countTruth counts n records of a sandbox, each with its callback data and final
// status, that belong to campaign: a read message was delivered too; undelivered (SMS)
// and failed both count as failed.
func countTruth(campaign string, n int, rec func(i int) (callback, final string)) Truth {
	var t Truth
	for i := range n {
		cb, final := rec(i)
		if !strings.HasPrefix(cb, campaign+":") {
			continue
		}
		t.Accepted++
		switch final {
		case "read":
			t.Read++
			t.Delivered++
		case "delivered":
			t.Delivered++
		case "failed", "undelivered":
			t.Failed++
		}
	}
	return t
}

// Check compares a funnel with the truth.
func (t Truth) Check(f analytics.FunnelReport) error {
	want := map[string]uint64{"sent": t.Accepted, "delivered": t.Delivered, "read": t.Read}
	for _, s := range f.Steps {
		if w, ok := want[s.Name]; ok && s.Contacts != w {
			return fmt.Errorf("%s: ClickHouse says %d, the sandbox %d", s.Name, s.Contacts, w)
		}
	}
	return nil
}

// PrintFunnel prints a funnel as a table.
func PrintFunnel(w io.Writer, f analytics.FunnelReport) {
	fmt.Fprintf(w, "  %-10s %10s %9s %9s\n", "STEP", "CONTACTS", "OF PREV", "OF FIRST")
	for i, s := range f.Steps {
		prev := "-"
		if i > 0 {
			prev = fmt.Sprintf("%.1f%%", 100*s.OfPrevious)
		}
		fmt.Fprintf(w, "  %-10s %10d %9s %8.1f%%\n", s.Name, s.Contacts, prev, 100*s.OfFirst)
	}
	for _, r := range f.Skipped {
		fmt.Fprintf(w, "  skipped    %10d  %s\n", r.Contacts, r.Reason)
	}
	for _, c := range f.Failed {
		fmt.Fprintf(w, "  failed     %10d  code %d\n", c.Contacts, c.Code)
	}
}

// WatchCampaign follows a campaign until it completes: a live progress bar on a
// terminal, a line every few seconds otherwise (logs, CI).
func WatchCampaign(ctx context.Context, c *dispatcher.Campaigns, id string, w io.Writer) error {
	st, err := c.Status(ctx, id)
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if IsTerminal(w) {
		bar = progressbar.NewOptions64(max(st.Audience, 1), progressbar.OptionSetWriter(w), progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("msg"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))
	}
	start, lastLine := time.Now(), time.Time{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err = c.Status(ctx, id)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("sent %6d · skipped %6d · failed %6d", st.Sent, st.Skipped, st.Failed)
		if st.State != dispatcher.Running && st.State != dispatcher.Completed {
			desc += " · " + string(st.State)
		}
		finished := st.State == dispatcher.Completed || st.State == dispatcher.Cancelled
		if bar != nil {
			bar.ChangeMax64(max(st.Audience, 1))
			bar.Describe(desc)
			_ = bar.Set64(st.Done)
			if finished {
				_ = bar.Finish()
			}
		} else if finished || time.Since(lastLine) >= 2*time.Second {
			lastLine = time.Now()
			pct := 0.0
			if st.Audience > 0 {
				pct = 100 * float64(st.Done) / float64(st.Audience)
			}
			el := time.Since(start)
			rate, eta := float64(st.Done)/el.Seconds(), ""
			if rate > 0 && !finished {
				eta = fmt.Sprintf(" ETA %s", time.Duration(float64(st.Audience-st.Done)/rate*float64(time.Second)).Round(time.Second))
			}
			fmt.Fprintf(w, "    %5.1f%%  %d/%d  %s  %.0f msg/s [%s%s]\n", pct, st.Done, st.Audience, desc, rate, el.Round(time.Second), eta)
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// IsTerminal reports whether w is a terminal (progress bars only draw on one).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// demoContacts makes a sample contact file: phones across several countries, tags,
// consent for most (not all), and a few malformed rows that the import must report.
func demoContacts(n int) []byte {
	rng := rand.New(rand.NewPCG(42, 7))
	var b bytes.Buffer
	first := []string{"Somchai", "Ayu", "Maria", "Arjun", "Lena", "Niran", "Putri", "João", "Priya", "", "Kanya", "Budi"}
	b.WriteString("phone,name,tags,opted_in,city\r\n")
	for i := 0; i < n; i++ {
		var phone string
		switch i % 5 {
		case 0, 1:
			phone = fmt.Sprintf("+66 8%d %03d %04d", 1+rng.IntN(9), i%1000, rng.IntN(10000))
		case 2:
			phone = fmt.Sprintf("+62 812-%04d-%04d", i%10000, rng.IntN(10000))
		case 3:
			phone = fmt.Sprintf("+55 11 9%04d-%04d", i%10000, rng.IntN(10000))
		default:
			phone = fmt.Sprintf("+49 151 %04d%04d", i%10000, rng.IntN(10000))
		}
		tags := []string{}
		if rng.Float64() < 0.9 {
			tags = append(tags, "customer")
		}
		if rng.Float64() < 0.2 {
			tags = append(tags, "vip")
		}
		if rng.Float64() < 0.1 {
			tags = append(tags, "churned")
		}
		opted := rng.Float64() < 0.85
		fmt.Fprintf(&b, "%s,%s,\"%s\",%v,Bangkok\r\n", phone, first[i%len(first)], strings.Join(tags, ";"), opted)
	}
	b.WriteString("12345,Broken Number,customer,true,Nowhere\r\n")
	b.WriteString(",No Phone,customer,true,Nowhere\r\n")
	b.WriteString("+66 81 234 5678,Too,Many,Fields,true,x\r\n")
	return b.Bytes()
}
