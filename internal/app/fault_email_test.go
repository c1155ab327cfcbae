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

// Email workers killed with SIGKILL at random moments, five times, while three of them
// run an email campaign: no address got two messages, and every contact ends sent or,
// when its worker died mid-send (SMTP gives no acceptance callback to settle it), failed
// as send_in_doubt once HERALD_STALE_SEND_AFTER has passed, never sent again.
func TestKilledEmailWorkersNeitherDuplicateNorLose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	n := 1500
	if v := os.Getenv("HERALD_EMAIL_N"); v != "" {
		fmt.Sscan(v, &n)
	}
	s, ctx := testStackWith(t, sandbox.Config{DelayScale: 0.01, Seed: 6},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter = 3*time.Second, 6*time.Second
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
	csv.WriteString("email,tags\n")
	for i := range n {
		fmt.Fprintf(&csv, "reader%d@example.com,customer\n", i+1)
	}
	if _, err := ImportContacts(ctx, d, strings.NewReader(csv.String()), ImportOptions{Source: "mail.csv"}); err != nil {
		t.Fatal(err)
	}
	var changes []throttle.Change
	for i := range n {
		id, err := comp.Contacts.LookupEmail(ctx, fmt.Sprintf("reader%d@example.com", i+1))
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, throttle.Change{ContactID: id, Channel: "email", Purpose: "marketing", Action: events.Grant, Source: "web_form"})
	}
	if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.ParseFile([]byte(emailTemplate), "spring_mail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(emailTemplate)); err != nil {
		t.Fatal(err)
	}
	cc, _ := json.Marshal(childConfig{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		WhatsAppURL: d.Cfg.WhatsAppURL, SMSAPIURL: d.Cfg.SMSAPIURL, PublicURL: d.Cfg.publicURL(), ClickKey: d.Cfg.ClickKey,
		ClickBaseURL: d.Cfg.ClickBaseURL, ClaimLease: d.Cfg.ClaimLease})
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=worker", childConfigEnv+"="+string(cc))}
	defer procs.stopAll()
	defer func() {
		if t.Failed() {
			procs.logs()
		}
	}()
	live := []*exec.Cmd{procs.start(), procs.start(), procs.start()}
	sender := dispatcher.Sender{ID: "news", Channel: "email", Rate: float64(n) / 6,
		Settings: map[string]string{"smtp_addr": s.EmailSandboxAddr, "from": "news@shop.example", "tls": "none"}}
	if err := comp.Senders.Put(ctx, sender); err != nil {
		t.Fatal(err)
	}
	cp, err := comp.Campaigns.Create(ctx, dispatcher.Campaign{Segment: "customer", Template: "spring_mail", Senders: []string{sender.ID}}, comp.Senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5 {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		i := rng.IntN(len(live))
		_ = live[i].Process.Kill()
		_ = live[i].Wait()
		live[i] = procs.start()
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 6*time.Minute)
	per := map[string]int{}
	for _, r := range s.EmailSandbox.Records() {
		per[r.To]++
	}
	dups := 0
	for _, c := range per {
		if c > 1 {
			dups++
		}
	}
	if dups > 0 || st.Sent+st.Failed != int64(n) || int64(len(per)) < st.Sent || len(per) > n {
		t.Fatalf("%d addresses got mail, %d more than once; status %+v (want sent + failed in doubt = %d, each sent one at the sandbox)", len(per), dups, st, n)
	}
	t.Logf("%d sent, %d failed in doubt, %d at the sandbox", st.Sent, st.Failed, len(per))
}
