package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	linesandbox "github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// lineTemplate renders the same text for every contact, so the LINE jobs go out in
// multicast batches.
const lineTemplate = "name: line_sale\nchannel: line\nlocale: en_US\nkind: text\nbody: \"Spring sale: 20% off today at https://shop.example/sale\"\n"

// lineAudience imports n contacts known by LINE user id only (linesandbox.UserID(i)),
// tagged customer, with LINE marketing consent, and saves lineTemplate.
func lineAudience(t *testing.T, ctx context.Context, d *Deps, comp *Components, n int) {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("line_user_id,tags\n")
	for i := range n {
		fmt.Fprintf(&csv, "%s,customer\n", linesandbox.UserID(fmt.Sprint(i)))
	}
	if _, err := ImportContacts(ctx, d, strings.NewReader(csv.String()), ImportOptions{Source: "line.csv"}); err != nil {
		t.Fatal(err)
	}
	var changes []throttle.Change
	for i := range n {
		id, err := comp.Contacts.LookupIdentity(ctx, "line", linesandbox.UserID(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, throttle.Change{ContactID: id, Channel: "line", Purpose: "marketing", Action: events.Grant, Source: "line_follow"})
	}
	if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(lineTemplate), "line_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(lineTemplate)); err != nil {
		t.Fatal(err)
	}
}

// LINE workers killed with SIGKILL at random moments, five times, while three of them
// run a LINE campaign in multicast batches: every contact got exactly one message at
// the sandbox, and the campaign counted each sent — sends in doubt were sent again as
// the same batch with the same X-Line-Retry-Key, and the sandbox's 409 settled them.
func TestKilledLINEWorkersNeitherDuplicateNorLose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	const n = 2000
	s, ctx := testStackWith(t, sandbox.Config{DelayScale: 0.01, Seed: 6},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter = 3*time.Second, 8*time.Second
			if st != nil {
				st.NoWorker = true
			}
		})
	comp, err := s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	lineAudience(t, ctx, s.Deps, comp, n)
	st := campaignUnderKills(t, ctx, s, comp, dispatcher.Sender{ID: "oa-1", Channel: "line", Token: DevLINEToken, Rate: n / 6,
		Settings: map[string]string{"channel_secret": DevLINESecret}}, "line_sale", 5)
	per := map[string]int{}
	requests := map[string]bool{}
	for _, r := range s.LINESandbox.Records() {
		per[r.To]++
		requests[r.RequestID+" "+r.Endpoint] = true
	}
	dups := 0
	for _, c := range per {
		if c > 1 {
			dups++
		}
	}
	if dups > 0 || len(per) != n || st.Sent != n {
		t.Fatalf("%d LINE users got a message (want %d), %d more than once; status %+v", len(per), n, dups, st)
	}
	sst := s.LINESandbox.Stats()
	t.Logf("%d contacts in %d requests; %d repeated requests answered 409 (settled by the retry key); refused %v", n, len(requests), sst.Duplicates, sst.Rejected)
}
