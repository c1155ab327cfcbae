package app

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// A WhatsApp outage in the middle of a campaign with a WhatsApp-then-SMS channel policy,
// with worker processes killed (SIGKILL) while it lasts: the sandbox answers every send
// with 503 for a while, the sender's circuit breaker opens, and new sends go to SMS for the
// contacts who consented to it (reason circuit_open); when WhatsApp is back the probes
// close the breaker. Every contact with a consented channel is reached exactly once,
// over both sandboxes; contacts with no consent are skipped with no_consent; the
// fallback events in ClickHouse match the SMS sandbox's record.
//
// HERALD_FAILOVER_CONTACTS sets the audience (default 2,000; the scenario is
// 50,000) and HERALD_FAILOVER_OUTAGE the outage (default 3s; the is 1m), counted
// from the first contact moved to SMS.
func TestWhatsAppOutageFailsOverToSMSOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("HERALD_FAILOVER_CONTACTS")); err == nil && v > 0 {
		n = v
	}
	outage := 3 * time.Second
	if v, err := time.ParseDuration(os.Getenv("HERALD_FAILOVER_OUTAGE")); err == nil && v > 0 {
		outage = v
	}
	var down atomic.Int64 // unix ns until which WhatsApp is down; 0: up
	fault := func() (int, int) {
		if until := down.Load(); until != 0 && time.Now().UnixNano() < until {
			return 503, 0
		}
		return 0, 0
	}
	breaker := dispatcher.BreakerConfig{Window: 2 * time.Second, MinRequests: 20, ErrorRate: 0.5, OpenFor: time.Second, Probes: 3}
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Fault: fault, Templates: welcomeSandbox},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter, c.Breaker = 3*time.Second, faultStaleAfter, breaker
			if st != nil {
				st.NoWorker = true
			}
		})
	d := s.Deps
	comp, err := d.Components()
	if err != nil {
		t.Fatal(err)
	}
	// Contact i: i%10 == 9 has no consent, i%10 == 8 SMS only, other even ones WhatsApp
	// and SMS, odd ones WhatsApp only.
	phone := func(i int) string { return fmt.Sprintf("+6682%07d", i+1) }
	wa := func(i int) bool { return i%10 < 8 }
	sms := func(i int) bool { return i%2 == 0 }
	var csv strings.Builder
	csv.WriteString("phone,name,tags\n")
	for i := range n {
		fmt.Fprintf(&csv, "%s,N%d,customer\n", phone(i), i)
	}
	if _, err := ImportContacts(ctx, d, strings.NewReader(csv.String()), ImportOptions{Source: "failover.csv"}); err != nil {
		t.Fatal(err)
	}
	// One Apply per channel: a contact's two grants never share a batch.
	for _, ch := range []struct {
		name string
		ok   func(int) bool
	}{{"whatsapp", wa}, {"sms", sms}} {
		var changes []throttle.Change
		for i := range n {
			if !ch.ok(i) {
				continue
			}
			id, err := comp.Contacts.Lookup(ctx, phone(i))
			if err != nil {
				t.Fatal(err)
			}
			changes = append(changes, throttle.Change{ContactID: id, Channel: ch.name, Purpose: "marketing", Action: events.Grant, Source: "web_form"})
		}
		if _, err := comp.Ledger.Apply(ctx, changes, false); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{"welcome": e2eTemplate, "sms_sale": smsTemplate} {
		saveTemplate(t, ctx, comp, name, text)
	}
	waSender := dispatcher.Sender{ID: "106540352240031", Channel: "whatsapp", PhoneNumberID: "106540352240031", Token: DevSandboxToken, Rate: float64(min(n/8, 5000))}
	smsSender := dispatcher.Sender{ID: "sc-fo", Channel: "sms", Token: DevSMSToken, Rate: float64(min(n, 5000)),
		Settings: map[string]string{"account_sid": DevSMSAccount, "from": "12345"}}
	for _, snd := range []dispatcher.Sender{waSender, smsSender} {
		if err := comp.Senders.Put(ctx, snd); err != nil {
			t.Fatal(err)
		}
	}

	cc, _ := json.Marshal(childConfig{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		WhatsAppURL: d.Cfg.WhatsAppURL, SMSAPIURL: d.Cfg.SMSAPIURL, PublicURL: d.Cfg.publicURL(), ClickKey: d.Cfg.ClickKey,
		ClickBaseURL: d.Cfg.ClickBaseURL, ClaimLease: d.Cfg.ClaimLease, Breaker: breaker})
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=worker", childConfigEnv+"="+string(cc))}
	defer procs.stopAll()
	defer func() {
		if t.Failed() {
			procs.logs()
		}
	}()
	live := []*exec.Cmd{procs.start(), procs.start(), procs.start()}

	cp, err := CreateCampaign(ctx, d, comp, dispatcher.Campaign{Segment: "customer", Template: "welcome", Senders: []string{waSender.ID},
		Fallback:   []dispatcher.ChannelSenders{{Channel: "sms", Senders: []string{smsSender.ID}, Template: "sms_sale"}},
		FallbackOn: []string{dispatcher.FallbackCircuitOpen}, MaxErrorRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	// The outage starts once a fifth of the audience has its first send.
	pollWithin(t, "a fifth of the campaign sent", time.Minute, func() bool {
		st, err := comp.Campaigns.Status(ctx, cp.ID)
		return err == nil && st.Sent >= int64(n/5)
	})
	// WhatsApp is down until the breaker has moved a contact to SMS (under a loaded suite
	// the workers may not send at all for seconds), then for the outage; workers die
	// during that fallback phase.
	waPhones := map[string]bool{}
	for i := range n {
		if wa(i) {
			waPhones[phone(i)] = true
		}
	}
	down.Store(math.MaxInt64)
	pollWithin(t, "a contact with WhatsApp consent moved to SMS", time.Minute, func() bool {
		for _, r := range s.SMSSandbox.Records() {
			if strings.HasPrefix(r.CallbackData, cp.ID+":") && waPhones[r.To] {
				return true
			}
		}
		return false
	})
	down.Store(time.Now().Add(outage).UnixNano())
	rng := rand.New(rand.NewPCG(20, 21))
	for range 3 {
		time.Sleep(time.Duration(int64(outage) / 4 * int64(1+rng.IntN(2)) / 2))
		i := rng.IntN(len(live))
		_ = live[i].Process.Kill()
		_ = live[i].Wait()
		live[i] = procs.start()
	}

	// Everyone with a consented channel is reached; wait for it (and for the campaign).
	perWA, perSMS := map[string]int{}, map[string]int{}
	count := func() {
		clear(perWA)
		clear(perSMS)
		for _, r := range s.Sandbox.Records() {
			if strings.HasPrefix(r.CallbackData, cp.ID+":") {
				perWA["+"+r.WaID]++
			}
		}
		for _, r := range s.SMSSandbox.Records() {
			if strings.HasPrefix(r.CallbackData, cp.ID+":") {
				perSMS[r.To]++
			}
		}
	}
	reachable := 0
	for i := range n {
		if wa(i) || sms(i) {
			reachable++
		}
	}
	st := waitCompletedWithin(t, ctx, comp.Campaigns, cp.ID, 4*time.Minute)
	pollWithin(t, "every consented contact reached", 3*time.Minute, func() bool {
		count()
		reached := map[string]bool{}
		for p := range perWA {
			reached[p] = true
		}
		for p := range perSMS {
			reached[p] = true
		}
		return len(reached) >= reachable
	})
	count()
	var twice, wrong, viaSMS, fellBack int
	for i := range n {
		p := phone(i)
		w, m := perWA[p], perSMS[p]
		switch {
		case w+m > 1:
			twice++
		case !wa(i) && !sms(i) && w+m != 0, !sms(i) && m != 0, !wa(i) && w != 0:
			wrong++ // a message on a channel without consent
		}
		if m == 1 {
			viaSMS++
			if wa(i) {
				fellBack++
			}
		}
	}
	if twice > 0 || wrong > 0 {
		t.Fatalf("%d contacts messaged twice, %d on a channel without consent", twice, wrong)
	}
	if fellBack == 0 {
		t.Fatalf("no contact fell back to SMS during a %v outage (WhatsApp %d, SMS %d)", outage, len(perWA), len(perSMS))
	}
	noConsent := int64(n / 10)
	if n%10 == 0 && st.Skipped != noConsent {
		t.Errorf("skipped %d, want %d (no consent on any channel); status %+v", st.Skipped, noConsent, st)
	}

	// ClickHouse: one fallback event (circuit_open, whatsapp → sms) per contact that fell
	// back, and the SMS sends' events on sms with their consent record.
	if err := s.SMSSandbox.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitSink(ctx, d); err != nil {
		t.Fatal(err)
	}
	conn, err := d.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var fallbacks, wrongFallbacks, smsSent, smsNoConsent uint64
	row := conn.QueryRow(ctx, `SELECT
		uniqExactIf(contact_id, kind = 'fallback'),
		countIf(kind = 'fallback' AND NOT (reason = 'circuit_open' AND from_channel = 'whatsapp' AND channel = 'sms')),
		uniqExactIf(contact_id, kind = 'sent' AND channel = 'sms'),
		uniqExactIf(contact_id, kind = 'sent' AND channel = 'sms' AND consent_ref = '')
		FROM events FINAL WHERE campaign_id = ?`, cp.ID)
	if err := row.Scan(&fallbacks, &wrongFallbacks, &smsSent, &smsNoConsent); err != nil {
		t.Fatal(err)
	}
	if int(fallbacks) != fellBack || wrongFallbacks != 0 || int(smsSent) != viaSMS || smsNoConsent != 0 {
		t.Fatalf("ClickHouse: %d contacts with a fallback event (%d malformed), %d SMS sends (%d without consent); sandboxes: %d fell back, %d by SMS",
			fallbacks, wrongFallbacks, smsSent, smsNoConsent, fellBack, viaSMS)
	}
	t.Logf("%d contacts, %v outage: %d reached on WhatsApp, %d on SMS (%d through a circuit_open fallback), %d skipped",
		n, outage, len(perWA), len(perSMS), fellBack, st.Skipped)
}

// saveTemplate parses and stores a template.
func saveTemplate(t *testing.T, ctx context.Context, comp *Components, name, text string) {
	t.Helper()
	tpl, err := templates.ParseFile([]byte(text), name+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(text)); err != nil {
		t.Fatal(err)
	}
}

// pollWithin polls cond until it holds, failing after within (a guard against hangs, not
// a timing assertion).
func pollWithin(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
