package app

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/journeys"
	"github.com/herald-dev/herald/templates"
)

const signupJourney = `id: signup
senders: ["106540352240001", "106540352240002"]
entry: {event: custom, name: signup}
steps:
  - id: welcome
    send: welcome
  - id: pause
    wait: 2s
  - id: second
    send: welcome2
`

// Workers — which run the journey engine — killed with SIGKILL ten times while contacts
// move through a two-send journey: every contact gets each step's message exactly once.
// HERALD_FAULT_JOURNEY_CONTACTS sets how many (default 2,000; the is 100,000).
func TestKilledWorkersJourneyExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("HERALD_FAULT_JOURNEY_CONTACTS")); err == nil && v > 0 {
		n = v
	}
	s, ctx := testStackWith(t, sandbox.Config{Throughput: 1e6, DelayScale: 0.01, PairInterval: -1, Templates: welcomeSandbox},
		func(c *Config, st *Stack) {
			c.ClaimLease, c.StaleSendAfter = 3*time.Second, faultStaleAfter
			c.NoJourneys = true // only the killable workers run journeys
			if st != nil {
				st.NoWorker = true
			}
		})
	d := s.Deps
	comp := seedAudience(t, ctx, d, n, e2eTemplate)
	second := strings.Replace(e2eTemplate, "name: welcome\n", "name: welcome2\n", 1)
	tpl, err := templates.ParseFile([]byte(second), "welcome2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(second)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"106540352240001", "106540352240002"} {
		if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: id, Channel: "whatsapp", PhoneNumberID: id, Token: DevSandboxToken, Rate: float64(n) / 8 / 2}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := AddJourney(ctx, d, []byte(signupJourney)); err != nil {
		t.Fatal(err)
	}
	cc, _ := json.Marshal(childConfig{KafkaBrokers: d.Cfg.KafkaBrokers, RedisURL: d.Cfg.RedisURL, Prefix: d.Cfg.Prefix, TopicPrefix: d.Cfg.TopicPrefix,
		WhatsAppURL: d.Cfg.WhatsAppURL, ClickKey: d.Cfg.ClickKey, ClickBaseURL: d.Cfg.ClickBaseURL, ClaimLease: d.Cfg.ClaimLease, Journeys: true})
	procs := &workerProcs{t: t, env: append(os.Environ(), childRoleEnv+"=worker", childConfigEnv+"="+string(cc))}
	defer procs.stopAll()
	live := []*exec.Cmd{procs.start(), procs.start(), procs.start()}
	members, err := comp.Contacts.Evaluate(ctx, "customer")
	if err != nil || members.GetCardinality() != uint64(n) {
		t.Fatalf("audience %d, %v", members.GetCardinality(), err)
	}
	var msgs []kafka.Message
	it := members.Iterator()
	for it.HasNext() {
		c := it.Next()
		ev := events.New(events.Custom, "", c, time.Now())
		ev.ID, ev.Name = fmt.Sprint("signup-", c), "signup"
		b, _ := ev.Marshal()
		msgs = append(msgs, kafka.Message{Key: kafkax.ContactKey(c), Value: b})
	}
	if err := d.Writer(d.Topics.Events).WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	queued := time.Now()
	rng := rand.New(rand.NewPCG(3, 4))
	for kill := 0; kill < 10; kill++ {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		i := rng.IntN(len(live))
		_ = live[i].Process.Kill() // SIGKILL: no cleanup, no release, no flush
		_ = live[i].Wait()
		live[i] = procs.start()
	}
	prefixes := []string{journeys.CampaignID("signup", 1, "welcome", 1) + ":", journeys.CampaignID("signup", 1, "second", 1) + ":"}
	count := func() (per [2]map[string]int) {
		per = [2]map[string]int{{}, {}}
		for _, r := range s.Sandbox.Records() {
			for k, p := range prefixes {
				if strings.HasPrefix(r.CallbackData, p) {
					per[k][r.WaID]++
				}
			}
		}
		return per
	}
	limit := 4*time.Minute + time.Duration(n/250)*time.Second // ~500 sends/s on a loaded 2-core machine
	deadline := time.Now().Add(limit)
	for {
		per := count()
		if len(per[0]) == n && len(per[1]) == n {
			break
		}
		if time.Now().After(deadline) {
			procs.logs()
			t.Fatalf("after %v: %d contacts got the welcome, %d the second message, of %d", limit, len(per[0]), len(per[1]), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d contacts through both steps in %v since the triggers were queued", n, time.Since(queued).Round(time.Second))
	// Late duplicates would come from a redelivery: give them the claim lease to appear.
	time.Sleep(2 * d.Cfg.ClaimLease)
	per := count()
	for k := range per {
		for wa, c := range per[k] {
			if c != 1 {
				t.Errorf("%s got step %d's message %d times", wa, k+1, c)
			}
		}
	}
}
