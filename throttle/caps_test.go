package throttle

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestParseCaps(t *testing.T) {
	caps, err := ParseCaps(" marketing:1/72h, marketing:3/168h ,utility:10/24h")
	if err != nil || len(caps) != 3 || caps[1] != (Cap{"marketing", 3, 168 * time.Hour}) {
		t.Fatalf("%v, %v", caps, err)
	}
	for _, bad := range []string{"marketing", "marketing:0/1h", "marketing:x/1h", ":1/1h", "marketing:1/soon", "marketing:1/-1h"} {
		if _, err := ParseCaps(bad); err == nil {
			t.Errorf("ParseCaps(%q) accepted", bad)
		}
	}
}

func TestFrequencyCaps(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	l := NewLedger(rdb, prefix, &memPublisher{})
	for _, purpose := range []string{"marketing", "utility"} {
		if _, err := l.Apply(ctx, []Change{{ContactID: 1, Channel: "whatsapp", Purpose: purpose, Action: events.Grant, Source: "api"}}, false); err != nil {
			t.Fatal(err)
		}
	}
	caps, _ := ParseCaps("marketing:1/72h,marketing:2/168h")
	// Caps only: the pair rate (its own tests) would defer the second message at the same instant.
	p := NewPolicy(rdb, prefix, func() time.Time { return now }).WithCaps(caps).WithPairInterval(0)
	job := func(campaign, purpose string) Job {
		return Job{Campaign: campaign, ContactID: 1, Channel: "whatsapp", Purpose: purpose}
	}
	check := func(j Job, want Verdict, reason string) {
		t.Helper()
		d, err := p.Check(ctx, []Job{j})
		if err != nil {
			t.Fatal(err)
		}
		if d[0].Verdict != want || d[0].Reason != reason {
			t.Fatalf("%s/%s at %v: %v %q, want %v %q", j.Campaign, j.Purpose, now, d[0].Verdict, d[0].Reason, want, reason)
		}
	}
	check(job("A", "marketing"), Allow, "")
	check(job("A", "marketing"), Allow, "") // the same message decided again (a retry) does not count twice
	check(job("B", "marketing"), Skip, ReasonFrequencyCap)
	check(job("B", "utility"), Allow, "") // another category is not capped
	if err := p.ReleaseCaps(ctx, []Job{job("A", "marketing")}); err != nil {
		t.Fatal(err)
	}
	check(job("B", "marketing"), Allow, "") // A was never sent: its slot went back
	now = now.Add(71 * time.Hour)
	check(job("C", "marketing"), Skip, ReasonFrequencyCap)
	now = now.Add(2 * time.Hour) // 73h after B
	check(job("C", "marketing"), Allow, "")
	now = now.Add(80 * time.Hour) // 153h after B: the weekly cap (2 in 168h) still holds B and C
	check(job("D", "marketing"), Skip, ReasonFrequencyCap)
	now = now.Add(20 * time.Hour) // B left the week
	check(job("D", "marketing"), Allow, "")
}

// Eight workers decide eight campaigns for one contact at once: a cap of one lets
// exactly one through.
func TestFrequencyCapIsExactAcrossWorkers(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	if _, err := NewLedger(rdb, prefix, &memPublisher{}).Apply(ctx, []Change{{ContactID: 5, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"}}, false); err != nil {
		t.Fatal(err)
	}
	caps, _ := ParseCaps("marketing:1/72h")
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := NewPolicy(rdb, prefix, nil).WithCaps(caps)
			d, err := p.Check(ctx, []Job{{Campaign: fmt.Sprint("c", i), ContactID: 5, Channel: "whatsapp", Purpose: "marketing"}})
			if err != nil {
				t.Error(err)
				return
			}
			if d[0].Verdict == Allow {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if allowed != 1 {
		t.Fatalf("%d of 8 concurrent campaigns allowed under a cap of 1", allowed)
	}
}
