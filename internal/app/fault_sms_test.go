package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

// SMS workers killed with SIGKILL at random moments, five times, while three of them run
// an SMS campaign: every contact got exactly one SMS at the sandbox, and the campaign
// counted each sent.
func TestKilledSMSWorkersNeitherDuplicateNorLose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	const n = 2000
	s, ctx := testStackWith(t, sandbox.Config{DelayScale: 0.01, Seed: 4},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter = 3*time.Second, faultStaleAfter
			if st != nil {
				st.NoWorker = true
			}
		})
	comp, err := s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	channelAudience(t, ctx, s.Deps, comp, n, "phone", func(i int) string { return fmt.Sprintf("+1212555%04d", i+1) }, "sms", smsTemplate)
	st := campaignUnderKills(t, ctx, s, comp, dispatcher.Sender{ID: "sc-1", Channel: "sms", Token: DevSMSToken, Rate: n / 6,
		Settings: map[string]string{"account_sid": DevSMSAccount, "from": "12345"}}, "sms_sale", 3)
	per := map[string]int{}
	for _, r := range s.SMSSandbox.Records() {
		if strings.HasPrefix(r.CallbackData, st.ID+":") {
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
