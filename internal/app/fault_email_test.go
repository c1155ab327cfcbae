package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
)

// Email workers killed with SIGKILL at random moments, five times, while three of them
// run an email campaign: no address got two messages, and every contact ends sent or,
// when its worker died mid-send (SMTP gives no acceptance callback to settle it), failed
// as send_in_doubt once HERALD_STALE_SEND_AFTER has passed, never sent again.
func TestKilledEmailWorkersNeitherDuplicateNorLose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	const n = 1500
	s, ctx := testStackWith(t, sandbox.Config{DelayScale: 0.01, Seed: 6},
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
	channelAudience(t, ctx, s.Deps, comp, n, "email", func(i int) string { return fmt.Sprintf("reader%d@example.com", i+1) }, "email", emailTemplate)
	st := campaignUnderKills(t, ctx, s, comp, dispatcher.Sender{ID: "news", Channel: "email", Rate: n / 6,
		Settings: map[string]string{"smtp_addr": s.EmailSandboxAddr, "from": "news@shop.example", "tls": "none"}}, "spring_mail", 5)
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
	if dups > 0 || st.Sent+st.Failed != n || int64(len(per)) < st.Sent || len(per) > n {
		t.Fatalf("%d addresses got mail, %d more than once; status %+v (want sent + failed in doubt = %d, each sent one at the sandbox)", len(per), dups, st, n)
	}
	t.Logf("%d sent, %d failed in doubt, %d at the sandbox", st.Sent, st.Failed, len(per))
}
