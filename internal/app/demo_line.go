package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/herald-dev/herald/analytics"
	linesandbox "github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// DemoLINESender is the demo's LINE Official Account.
const DemoLINESender = "demo-line"

const demoLINETemplate = "name: spring_sale_line\nchannel: line\nlocale: en_US\nkind: text\nbody: \"Our spring sale starts today: 20% off everything at https://shop.example/sale\"\n"

// demoLINE runs the same segment on LINE: about a third of its contacts linked their
// LINE account and added the shop as a friend — the LINE sandbox posts their signed
// follow events to serve, which grants LINE marketing with each event as proof — and the
// identical message goes out to them in multicast batches.
func demoLINE(ctx context.Context, dev *Dev, segment string, say func(string, ...any)) (*ChannelResult, error) {
	d := dev.Deps
	comp, err := d.Components()
	if err != nil {
		return nil, err
	}
	bm, err := comp.Contacts.Evaluate(ctx, segment)
	if err != nil {
		return nil, err
	}
	sender := dispatcher.Sender{ID: DemoLINESender, Channel: "line", Token: DevLINEToken, Rate: 500, Name: "Demo Shop on LINE",
		Settings: map[string]string{"channel_secret": DevLINESecret}}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		return nil, err
	}
	followers := 0
	for _, id := range bm.ToArray() {
		if id%3 != 0 {
			continue
		}
		user := linesandbox.UserID(fmt.Sprintf("demo-%d", id))
		if err := comp.Contacts.LinkIdentity(ctx, id, "line", user); err != nil {
			return nil, err
		}
		if _, err := dev.LINESandbox.Follow(ctx, user); err != nil {
			return nil, fmt.Errorf("line sandbox follow: %w", err)
		}
		followers++
	}
	t, err := templates.ParseFile([]byte(demoLINETemplate), "spring_sale_line.yaml")
	if err != nil {
		return nil, err
	}
	if _, err := comp.Templates.Save(ctx, t, []byte(demoLINETemplate)); err != nil {
		return nil, err
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Name: "Spring sale (LINE)", Segment: segment, Template: "spring_sale_line", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		return nil, err
	}
	say("LINE campaign %s: the same segment on LINE (%d friends of the account, by their follow events), multicast at %v msg/s", cp.ID, followers, sender.Rate)
	before := len(dev.LINESandbox.Records())
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		return nil, err
	}
	if err := WatchCampaign(ctx, comp.Campaigns, cp.ID, io.Discard); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
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
	// LINE reports no delivery: the truth is what the sandbox accepted for this campaign.
	recs := dev.LINESandbox.Records()[before:]
	return &ChannelResult{CampaignID: cp.ID, Funnel: f, Sandbox: Truth{Accepted: uint64(len(recs))}}, nil
}
