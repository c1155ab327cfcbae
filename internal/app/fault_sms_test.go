package app

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/sandbox"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// SMS workers killed with SIGKILL at random moments, five times, while three of them run
// an SMS campaign: every contact got exactly one SMS at the sandbox, and the funnel's
// sent equals what the sandbox accepted.
func TestKilledSMSWorkersNeitherDuplicateNorLose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	const n = 2000
	s, ctx := testStackWith(t, sandbox.Config{DelayScale: 0.01, Seed: 4},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter = 3*time.Second, 8*time.Second
			if st != nil {
				st.NoWorker = true
			}
		})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("phone,tags\n")
	for i := range n {
		fmt.Fprintf(&csv, "+1212555%04d,customer\n", i+1)
	}
	if _, err := ImportContacts(ctx, d, strings.NewReader(csv.String()), ImportOptions{Source: "sms.csv"}); err != nil {
		t.Fatal(err)
	}
	var changes []throttle.Change
	for i := range n {
		id, err := comp.Contacts.LookupPhone(ctx, fmt.Sprintf("+1212555%04d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, throttle.Change{ContactID: id, Channel: "sms", Purpose: "marketing", Action: events.Grant, Source: "web_form"})
	}
	if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(smsTemplate), "sms_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(smsTemplate)); err != nil {
		t.Fatal(err)
	}
	cc, _ := json.Marshal(childConfig{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		WhatsAppURL: d.Cfg.WhatsAppURL, SMSAPIURL: d.Cfg.SMSAPIURL, PublicURL: d.Cfg.publicURL(), ClickKey: d.Cfg.ClickKey,
		ClickBaseURL: d.Cfg.ClickBaseURL, ClaimLease: d.Cfg.ClaimLease})
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=worker", childConfigEnv+"="+string(cc))}
	defer procs.stopAll()
	live := []*exec.Cmd{procs.start(), procs.start(), procs.start()}
	sender := dispatcher.Sender{ID: "sc-1", Channel: "sms", Token: DevSMSToken, Rate: n / 6,
		Settings: map[string]string{"account_sid": DevSMSAccount, "from": "12345"}}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "sms_sale", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5 {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		i := rng.IntN(len(live))
		_ = live[i].Process.Kill()
		_ = live[i].Wait()
		live[i] = procs.start()
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 4*time.Minute)
	per := map[string]int{}
	for _, r := range s.SMSSandbox.Records() {
		if strings.HasPrefix(r.CallbackData, cp.ID+":") {
			per[r.To]++
		}
	}
	dups := 0
	for _, c := range per {
		if c > 1 {
			dups++
		}
	}
	if dups > 0 || len(per) != n || st.Sent != n {
		t.Fatalf("%d numbers got an SMS (want %d), %d more than once; status %+v", len(per), n, dups, st)
	}
}
