package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

// FailoverResult is the demo's outage campaign: its funnel per channel, and each
// channel sandbox's record of it.
type FailoverResult struct {
	CampaignID string                   `json:"campaign_id"`
	OutageMS   int64                    `json:"outage_ms"`
	Channels   analytics.ChannelsReport `json:"channels"`
	WhatsApp   Truth                    `json:"whatsapp_sandbox"`
	SMS        Truth                    `json:"sms_sandbox"`
}

// Check compares the campaign's funnel per channel with both sandboxes' records, and
// checks that no contact got more than one message without a fallback or more than two.
func (r *FailoverResult) Check() error {
	if err := CheckChannels(r.Channels, map[string]Truth{"whatsapp": r.WhatsApp, "sms": r.SMS}); err != nil {
		return fmt.Errorf("the failover campaign's funnel does not match the sandboxes: %w", err)
	}
	if n, m := r.Channels.SentTwiceWithoutFallback, r.Channels.SentOnMoreThanTwoChannels; n+m > 0 {
		return fmt.Errorf("the failover campaign sent %d contacts two messages without a fallback and %d more than two", n, m)
	}
	return nil
}

// demoFailover runs the segment once more with a channel policy, WhatsApp then SMS,
// while the WhatsApp sandbox refuses every send (Meta's "(#2) Service temporarily
// unavailable") for outage, from a few seconds after launch. The sender's circuit
// breaker opens: contacts with SMS consent get the SMS instead, once; the others wait
// for the breaker's probes to find WhatsApp back. It runs after demoSMS, whose SMS
// sender, template and consents it uses.
func demoFailover(ctx context.Context, dev *Dev, segment string, outage time.Duration, say func(string, ...any), progress io.Writer) (*FailoverResult, error) {
	d := dev.Deps
	comp, err := d.Components()
	if err != nil {
		return nil, err
	}
	cp, err := CreateCampaign(ctx, d, comp, dispatcher.Campaign{Name: "Flash sale (failover)", Segment: segment, Template: "spring_sale",
		Senders:  []string{DemoPhoneNumberID},
		Fallback: []dispatcher.ChannelSenders{{Channel: "sms", Senders: []string{DemoSMSSender}, Template: "spring_sale_sms"}}})
	if err != nil {
		return nil, err
	}
	const outageAfter = 3 * time.Second
	say("failover campaign %s: the same segment on WhatsApp, SMS where WhatsApp fails; the WhatsApp sandbox goes down %s after launch for %s",
		cp.ID, outageAfter, outage)
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		return nil, err
	}
	if _, err := dev.Sandbox.SetOutage(sandbox.OutagePlan{Mode: sandbox.OutageRefuse, At: outageAfter, For: outage}); err != nil {
		return nil, err
	}
	if err := WatchCampaign(ctx, comp.Campaigns, cp.ID, progress); err != nil {
		return nil, err
	}
	say("failover campaign complete; waiting for the fallback sends, the status webhooks and the ClickHouse sink")
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	// Every fallback that fired (a fallback event) ends in one outcome of its send; the
	// first channel's late failed statuses can still fire some, so the sandboxes settle first.
	var rep analytics.ChannelsReport
	for {
		if err := dev.Sandbox.WaitIdle(wctx); err != nil {
			return nil, fmt.Errorf("sandbox webhooks: %w", err)
		}
		if err := dev.SMSSandbox.WaitIdle(wctx); err != nil {
			return nil, fmt.Errorf("sms sandbox callbacks: %w", err)
		}
		if err := waitSink(wctx, d); err != nil {
			return nil, err
		}
		if rep, err = ChannelsReport(ctx, conn, ReportParams{Campaign: cp.ID}); err != nil {
			return nil, err
		}
		fp, err := comp.Campaigns.FallbackProgress(ctx, cp.ID)
		if err != nil {
			return nil, err
		}
		if uint64(fp.Done) >= rep.FellBack {
			break
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("failover campaign %s: %d fallbacks fired, %d of their sends done: %w", cp.ID, rep.FellBack, fp.Done, wctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	return &FailoverResult{CampaignID: cp.ID, OutageMS: outage.Milliseconds(), Channels: rep,
		WhatsApp: SandboxTruth(dev.Sandbox.Records(), cp.ID), SMS: SMSTruth(dev.SMSSandbox.Records(), cp.ID)}, nil
}

// printFailover writes the outage campaign's funnel per channel and the sandboxes' records.
func printFailover(w io.Writer, r *FailoverResult) {
	fmt.Fprintf(w, "\nFailover campaign %s: WhatsApp down for %s mid-campaign; per channel, from ClickHouse:\n", r.CampaignID, time.Duration(r.OutageMS)*time.Millisecond)
	PrintChannelLines(w, r.Channels)
	fmt.Fprintf(w, "  time to reach %s; through a fallback %s\n", ReachTimeText(r.Channels.TimeToReach), ReachTimeText(r.Channels.TimeToReachByFallback))
	fmt.Fprintf(w, "\nSandboxes' ground truth: WhatsApp accepted %d, delivered %d, read %d; SMS accepted %d, delivered %d (refused sends are not recorded)\n",
		r.WhatsApp.Accepted, r.WhatsApp.Delivered, r.WhatsApp.Read, r.SMS.Accepted, r.SMS.Delivered)
}
