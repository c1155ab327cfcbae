package throttle

import (
	"context"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// "3 automated messages per 24 h": jobs with CapCategory automated count against the
// automated caps, apart from the purpose's, while consent is still the purpose's.
func TestCapCategoryAutomated(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	l := NewLedger(rdb, prefix, &memPublisher{})
	if _, err := l.Apply(ctx, []Change{{ContactID: 1, Channel: "whatsapp", Purpose: "marketing", Action: events.Grant, Source: "api"}}, false); err != nil {
		t.Fatal(err)
	}
	caps, _ := ParseCaps("automated:3/24h,marketing:1/24h")
	p := NewPolicy(rdb, prefix, func() time.Time { return now }).WithCaps(caps).WithPairInterval(0)
	verdict := func(campaign, category string) (Verdict, string) {
		t.Helper()
		d, err := p.Check(ctx, []Job{{Campaign: campaign, ContactID: 1, Channel: "whatsapp", Purpose: "marketing", CapCategory: category}})
		if err != nil {
			t.Fatal(err)
		}
		return d[0].Verdict, d[0].Reason
	}
	if v, _ := verdict("campaign", ""); v != Allow {
		t.Fatalf("the campaign: %v", v)
	}
	for i := 0; i < 3; i++ {
		if v, r := verdict("j.x.1.s"+string(rune('a'+i))+".1", "automated"); v != Allow {
			t.Fatalf("automated message %d: %v %s", i+1, v, r)
		}
	}
	if v, r := verdict("j.x.1.sd.1", "automated"); v != Skip || r != ReasonFrequencyCap {
		t.Fatalf("fourth automated message: %v %s", v, r)
	}
	now = now.Add(24*time.Hour + time.Second)
	if v, _ := verdict("j.x.1.sd.1", "automated"); v != Allow {
		t.Fatalf("a day later: %v", v)
	}
}
