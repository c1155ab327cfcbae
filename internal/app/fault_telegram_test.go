package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

const telegramTemplate = "name: tg_sale\nchannel: telegram\nlocale: en_US\nkind: text\nvariables:\n  name: {type: string, default: \"there\"}\n" +
	"telegram:\n  parse_mode: MarkdownV2\nbody: \"*Sale* \u2014 hi {{ name }}, 20% off today\\\\.\"\n"

// Telegram workers killed with SIGKILL at random moments, five times, while three of
// them run a Telegram campaign (paid broadcast, each contact a chat of its own): no chat
// got two messages. The Bot API has no receipts, so a send a dead worker left in doubt
// is failed send_in_doubt rather than sent again: sent and failed add up to the
// audience, and every sent message is at the sandbox.
func TestKilledTelegramWorkersNeitherDuplicateNorLose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	const n = 1500
	s, ctx := testStackWith(t, sandbox.Config{DelayScale: 0.01, Seed: 7},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter = 3*time.Second, 6*time.Second
			if st != nil {
				st.NoWorker = true
			}
		})
	comp, err := s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	// The audience: n contacts known by their chat ids, who started the bot.
	var csv strings.Builder
	csv.WriteString("telegram_chat_id,tags\n")
	for i := range n {
		fmt.Fprintf(&csv, "%d,customer\n", 810_000_000+i)
	}
	if _, err := ImportContacts(ctx, s.Deps, strings.NewReader(csv.String()), ImportOptions{Source: "telegram.csv"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(telegramTemplate), "tg_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(telegramTemplate)); err != nil {
		t.Fatal(err)
	}
	var changes []throttle.Change
	for i := range n {
		id, err := comp.Contacts.LookupIdentity(ctx, "telegram", fmt.Sprint(810_000_000+i))
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, throttle.Change{ContactID: id, Channel: "telegram", Purpose: "marketing", Action: events.Grant, Source: "telegram_start"})
	}
	if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	st := campaignUnderKills(t, ctx, s, comp, dispatcher.Sender{ID: "tg-bot", Channel: "telegram", Token: DevTelegramToken, Rate: n / 6,
		Settings: map[string]string{"paid_broadcast": "true"}}, "tg_sale", 7)
	per := map[int64]int{}
	for _, m := range s.TelegramSandbox.Messages() {
		per[m.ChatID]++
	}
	dups := 0
	for _, c := range per {
		if c > 1 {
			dups++
		}
	}
	if dups > 0 || st.Sent+st.Failed != n || int64(len(per)) < st.Sent || len(per) > n || len(s.TelegramSandbox.Limited()) > 0 {
		t.Fatalf("%d chats got a message, %d more than once; %d 429s; status %+v (want sent + failed in doubt = %d, each sent one at the sandbox)",
			len(per), dups, len(s.TelegramSandbox.Limited()), st, n)
	}
	t.Logf("%d sent, %d failed in doubt, %d at the sandbox", st.Sent, st.Failed, len(per))
}
