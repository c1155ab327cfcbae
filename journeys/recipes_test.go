package journeys

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/herald-dev/herald/segments"
)

// recipe loads an example into a rig (its templates taken as existing).
func recipe(t *testing.T, name string) *rig {
	t.Helper()
	src, err := os.ReadFile("examples/" + name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return newRig(t, string(src))
}

// sent lists "step@contact" for the send jobs queued so far, in order.
func (r *rig) sent(t *testing.T) []string {
	var out []string
	for _, j := range r.out.jobs(t) {
		_, _, step, _, _ := ParseCampaignID(j.Campaign)
		out = append(out, step+"@"+string(rune('0'+j.Contact)))
	}
	return out
}

func (r *rig) tickAt(t *testing.T, d time.Duration) {
	t.Helper()
	r.clk.add(d)
	if _, err := r.eng.Tick(r.ctx); err != nil {
		t.Fatal(err)
	}
}

// want compares what was sent with w, ignoring the order of sends of one instant.
func want(t *testing.T, got []string, w ...string) {
	t.Helper()
	got = slices.Sorted(slices.Values(got))
	w = slices.Sorted(slices.Values(w))
	if strings.Join(got, " ") != strings.Join(w, " ") {
		t.Fatalf("sent %v, want %v", got, w)
	}
}

// After an order is delivered: care a day later, the review invitation (the VIP one for
// gold customers) a week later; the same order delivered twice enters once, another
// order enters again.
func TestRecipeAfterOrder(t *testing.T) {
	r := recipe(t, "after-order")
	deliver := func(c uint32, id, order, tier string) {
		if err := r.eng.Handle(r.ctx, Event{ID: id, Kind: OnCustom, Name: "order_delivered", Contact: c, Props: map[string]string{"order_id": order, "tier": tier}}); err != nil {
			t.Fatal(err)
		}
	}
	deliver(1, "e1", "A-1", "gold")
	deliver(2, "e2", "B-1", "silver")
	deliver(2, "e3", "B-1", "silver") // the same order, posted again with another event id
	r.tickAt(t, 23*time.Hour)
	want(t, r.sent(t))
	r.tickAt(t, time.Hour)
	want(t, r.sent(t), "care@1", "care@2")
	r.tickAt(t, 6*24*time.Hour)
	want(t, r.sent(t)[2:], "review-vip@1", "review@2")
	deliver(2, "e4", "B-2", "silver") // every_time: a second order
	r.tickAt(t, 24*time.Hour)
	want(t, r.sent(t)[4:], "care@2")
}

// A first inquiry gets the welcome and the tag; a second inquiry nothing (once).
func TestRecipeFirstInquiry(t *testing.T) {
	r := recipe(t, "first-inquiry")
	store := r.eng.cfg.Segments.(*segments.Store)
	if _, err := store.ImportCSV(r.ctx, strings.NewReader("phone\n+66810000001\n"), segments.ImportOptions{Source: "t"}); err != nil {
		t.Fatal(err)
	}
	c, _ := store.Lookup(r.ctx, "+66810000001")
	for _, id := range []string{"in:1", "in:2"} {
		if err := r.eng.Handle(r.ctx, Event{ID: id, Kind: OnInbound, Contact: c, Text: "hello, do you ship to Chiang Mai?"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.out.jobs(t)); n != 1 {
		t.Fatalf("%d welcomes", n)
	}
	tagged, err := store.Evaluate(r.ctx, "inquired")
	if err != nil || !tagged.Contains(c) {
		t.Fatalf("not tagged: %v", err)
	}
}

// A price question in English or Thai gets the price list, at most once an hour.
func TestRecipePriceList(t *testing.T) {
	r := recipe(t, "price-list")
	ask := func(c uint32, id, text string) {
		if err := r.eng.Handle(r.ctx, Event{ID: id, Kind: OnInbound, Contact: c, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	ask(1, "m1", "How much is the blue one?")
	ask(2, "m2", "ราคาเท่าไหร่คะ")
	ask(3, "m3", "thanks, see you")
	ask(1, "m4", "and the price of the red?") // within the hour
	want(t, r.sent(t), "reply@1", "reply@2")
	r.clk.add(time.Hour + time.Minute)
	ask(1, "m5", "prices for 10?")
	want(t, r.sent(t), "reply@1", "reply@2", "reply@1")
}

// Tagged silent_90d after the journey started: the offer goes at 10:00 in the contact's
// zone on the next weekday (90 % of them; 10 % held out), a reminder three days later
// unless they clicked.
func TestRecipeLongSilentOffer(t *testing.T) {
	r := recipe(t, "long-silent-offer")
	store := r.eng.cfg.Segments.(*segments.Store)
	var csv strings.Builder
	csv.WriteString("phone,timezone\n")
	for i := 1; i <= 40; i++ {
		csv.WriteString("+668100000" + string(rune('0'+i/10)) + string(rune('0'+i%10)) + ",Asia/Bangkok\n")
	}
	if _, err := store.ImportCSV(r.ctx, strings.NewReader(csv.String()), segments.ImportOptions{Source: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := r.eng.PollSegments(r.ctx); err != nil {
		t.Fatal(err)
	}
	all, _ := store.Evaluate(r.ctx, "not silent_90d")
	// Saturday 2026-12-12 12:00 Bangkok: the tag arrives.
	r.clk.ns.Store(time.Date(2026, 12, 12, 5, 0, 0, 0, time.UTC).UnixNano())
	if _, err := store.TagContacts(r.ctx, "silent_90d", all, true); err != nil {
		t.Fatal(err)
	}
	if err := r.eng.PollSegments(r.ctx); err != nil {
		t.Fatal(err)
	}
	// Sunday 10:00 Bangkok: nothing (weekdays only).
	r.tickAt(t, 22*time.Hour)
	if n := len(r.out.jobs(t)); n != 0 {
		t.Fatalf("%d sent on Sunday", n)
	}
	// Monday 10:00 Bangkok (03:00 UTC).
	r.tickAt(t, 24*time.Hour)
	offers := r.out.jobs(t)
	if len(offers) < 28 || len(offers) == 40 {
		t.Fatalf("%d offers of 40 (10 %% holdout)", len(offers))
	}
	at := r.clk.now().In(time.FixedZone("ICT", 7*3600))
	if at.Weekday() != time.Monday || at.Hour() != 10 {
		t.Fatalf("offers at %v", at)
	}
	clicked := roaring.New()
	clicked.Add(offers[0].Contact)
	if err := r.eng.Handle(r.ctx, Event{ID: "c1", Kind: OnClicked, Contact: offers[0].Contact, Campaign: offers[0].Campaign}); err != nil {
		t.Fatal(err)
	}
	r.tickAt(t, 3*24*time.Hour)
	reminders := r.out.jobs(t)[len(offers):]
	if len(reminders) != len(offers)-1 {
		t.Fatalf("%d reminders for %d offers and one click", len(reminders), len(offers))
	}
	for _, j := range reminders {
		if clicked.Contains(j.Contact) {
			t.Fatal("a reminder to the contact who clicked")
		}
	}
}
