package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
)

// DemoTelegramSender is the demo's Telegram bot.
const DemoTelegramSender = "demo-telegram"

const demoTelegramTemplate = `name: spring_sale_telegram
channel: telegram
locale: en_US
kind: text
variables:
  name: {type: string, default: "there"}
telegram:
  parse_mode: MarkdownV2
  buttons:
    - {text: "Shop the sale", url: "https://shop.example.com/spring"}
body: "*Spring sale* \u2014 hi {{ name }}, 20% off today\\. Send /stop to opt out\\."
`

// demoTelegramChat is the demo's chat id of a contact who opened the bot's deep link.
func demoTelegramChat(contact uint32) int64 { return 700_000_000 + int64(contact) }

// demoTelegram runs the same segment on Telegram the way Telegram works: one contact in
// ten opens the bot's deep link (herald telegram link), so the sandbox sends serve
// "/start <payload>", which links the chat to the contact and grants Telegram marketing;
// then a campaign reaches those chats through the Bot API sandbox at the bot's 30/s.
// Telegram has no delivery receipts: the funnel is sent, which the sandbox's record of
// accepted messages must equal.
func demoTelegram(ctx context.Context, dev *Dev, segment string, say func(string, ...any)) (*ChannelResult, error) {
	d := dev.Deps
	comp, err := d.Components()
	if err != nil {
		return nil, err
	}
	bm, err := comp.Contacts.Evaluate(ctx, segment)
	if err != nil {
		return nil, err
	}
	sender := dispatcher.Sender{ID: DemoTelegramSender, Channel: telegram.ChannelName, Token: DevTelegramToken, Rate: telegram.DefaultRate,
		Name: "Demo Shop bot", Settings: map[string]string{"username": DevTelegramBot}}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		return nil, err
	}
	started := 0
	for _, id := range bm.ToArray() {
		if id%10 != 3 {
			continue
		}
		link, err := TelegramLink(ctx, d, sender.ID, id)
		if err != nil {
			return nil, err
		}
		if _, err := dev.TelegramSandbox.Push(ctx, DevTelegramToken, demoTelegramChat(id), "/start "+link.Payload); err != nil {
			return nil, fmt.Errorf("telegram /start of contact %d: %w", id, err)
		}
		started++
	}
	t, err := templates.ParseFile([]byte(demoTelegramTemplate), "spring_sale_telegram.yaml")
	if err != nil {
		return nil, err
	}
	if _, err := comp.Templates.Save(ctx, t, []byte(demoTelegramTemplate)); err != nil {
		return nil, err
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Name: "Spring sale (Telegram)", Segment: segment, Template: "spring_sale_telegram",
		Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		return nil, err
	}
	before := len(dev.TelegramSandbox.Messages())
	say("Telegram campaign %s: the same segment on Telegram (%d contacts opened the bot's deep link: /start linked their chats), bot at %v msg/s",
		cp.ID, started, sender.Rate)
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
	truth := Truth{Accepted: uint64(len(dev.TelegramSandbox.Messages()) - before)}
	return &ChannelResult{CampaignID: cp.ID, Funnel: f, Sandbox: truth}, nil
}
