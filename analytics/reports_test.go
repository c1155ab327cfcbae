package analytics

import (
	"context"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

// reportsFixture stores, with duplicates and in shuffled order:
//
//   - campaign "spring" (campaignStream: 500 contacts, variants A for even and B for odd
//     contacts, sender s1, sent Monday 2025-03-10 09:00 UTC), plus clicks from the A
//     contacts 22…100 (40) and the B contacts 21…59 (20), replies from contacts 21…70 eight
//     days later, and opt-outs of contacts 21…23;
//   - campaign "summer" from sender s2 to contacts 1…10 (never sent to before) on Monday
//     2025-03-24, read by contacts 1…5;
//   - contacts: even ids in Asia/Bangkok, odd ids without a row (UTC);
//   - campaign "daily": sent on 2025-05-01 … 2025-05-10 to 100, 102, 98, 101, 99, 100,
//     103, 99, 100 and then 200 contacts.
func reportsFixture(t *testing.T) driver.Conn {
	t.Helper()
	conn := migrated(t)
	evs, _ := campaignStream("spring", 11)
	tag := func(e events.Event, sender, variant string) events.Event {
		e.SenderID, e.Channel, e.Variant = sender, "whatsapp", variant
		return e
	}
	variant := func(c uint32) string { return []string{"A", "B"}[c%2] }
	for c := uint32(21); c <= 100; c++ {
		if (c%2 == 0) || c <= 59 {
			evs = append(evs, tag(events.New(events.Clicked, "spring", c, baseTime.Add(time.Minute)), "", variant(c)))
		}
	}
	for c := uint32(21); c <= 70; c++ {
		evs = append(evs, events.New(events.Replied, "spring", c, baseTime.Add(8*24*time.Hour)))
	}
	for c := uint32(21); c <= 23; c++ {
		evs = append(evs, tag(events.New(events.OptedOut, "spring", c, baseTime.Add(2*time.Hour)), "s1", ""))
	}
	summer := baseTime.Add(14 * 24 * time.Hour)
	for c := uint32(1); c <= 10; c++ {
		evs = append(evs, tag(events.New(events.Sent, "summer", c, summer), "s2", "A"))
		if c <= 5 {
			evs = append(evs, events.New(events.Read, "summer", c, summer.Add(time.Hour)))
		}
	}
	daily := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	for d, n := range []int{100, 102, 98, 101, 99, 100, 103, 99, 100, 200} {
		for i := range n {
			evs = append(evs, tag(events.New(events.Sent, "daily", uint32(100000+d*1000+i), daily.AddDate(0, 0, d)), "s3", ""))
		}
	}
	insertEvents(t, conn, evs)
	insertEvents(t, conn, evs[:len(evs)/4])

	var cs []Contact
	for c := uint32(2); c <= 500; c += 2 {
		cs = append(cs, Contact{ID: c, TZ: "Asia/Bangkok", Country: "TH", UpdatedAt: baseTime})
	}
	if err := WriteContacts(context.Background(), conn, cs); err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestReports(t *testing.T) {
	conn := reportsFixture(t)
	ctx := context.Background()

	t.Run("funnel by variant", func(t *testing.T) {
		rep, err := FunnelBy(ctx, conn, "spring", "variant")
		if err != nil {
			t.Fatal(err)
		}
		// The groups add up to the campaign's funnel.
		whole, err := Funnel(ctx, conn, "spring")
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range whole.Steps {
			var sum uint64
			for _, g := range rep.Groups {
				sum += g.Steps[i].Contacts
			}
			if sum != s.Contacts {
				t.Errorf("%s: groups add up to %d, the funnel says %d", s.Name, sum, s.Contacts)
			}
		}
		if len(rep.Groups) != 2 || rep.Groups[0].Steps[4].Contacts != 40 || rep.Groups[1].Steps[4].Contacts != 20 ||
			rep.Groups[0].Steps[5].Contacts+rep.Groups[1].Steps[5].Contacts != 50 {
			t.Fatalf("clicks or replies by variant: %+v", rep.Groups)
		}
		goldenJSON(t, "funnel_by_variant.json", rep)
	})
	t.Run("funnel by sender", func(t *testing.T) {
		rep, err := FunnelBy(ctx, conn, "spring", "sender")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Groups) != 1 || rep.Groups[0].Key != "s1" || rep.Groups[0].Steps[1].Contacts != 480 {
			t.Fatalf("by sender: %+v", rep.Groups)
		}
		byChannel, err := FunnelBy(ctx, conn, "spring", "channel")
		if err != nil || len(byChannel.Groups) != 1 || byChannel.Groups[0].Key != "whatsapp" || byChannel.Groups[0].Steps[1].Contacts != 480 {
			t.Fatalf("by channel: %+v, %v", byChannel.Groups, err)
		}
		if _, err := FunnelBy(ctx, conn, "spring", "colour"); err == nil {
			t.Fatal("funnel by an unknown dimension: no error")
		}
	})
	t.Run("a/b", func(t *testing.T) {
		rep, err := ABTest(ctx, conn, "spring", "clicked", "")
		if err != nil {
			t.Fatal(err)
		}
		// A: 40 of 240, B: 20 of 240; pooled z = -2.7603, two-sided p = 0.00577.
		if rep.Control != "A" || len(rep.Variants) != 2 {
			t.Fatalf("%+v", rep)
		}
		a, b := rep.Variants[0], rep.Variants[1]
		if a.Sent != 240 || a.Converted != 40 || b.Sent != 240 || b.Converted != 20 {
			t.Fatalf("counts: %+v", rep.Variants)
		}
		if math.Abs(b.Z+2.7603) > 1e-3 || math.Abs(b.PValue-0.00577) > 1e-4 {
			t.Fatalf("z %.4f p %.5f, want -2.7603 and 0.00577", b.Z, b.PValue)
		}
		goldenJSON(t, "ab_clicked.json", rep)
	})
	t.Run("retention", func(t *testing.T) {
		rep, err := Retention(ctx, conn, baseTime.AddDate(0, 0, -7), baseTime.AddDate(0, 0, 28), 3)
		if err != nil {
			t.Fatal(err)
		}
		want := []Cohort{
			{Week: "2025-03-10", Contacts: 480, Active: []uint64{300, 50, 0}, Retained: []float64{300.0 / 480, 50.0 / 480, 0}},
			{Week: "2025-03-24", Contacts: 10, Active: []uint64{5, 0, 0}, Retained: []float64{0.5, 0, 0}},
		}
		if !reflect.DeepEqual(rep.Cohorts, want) {
			t.Fatalf("cohorts\n got %+v\nwant %+v", rep.Cohorts, want)
		}
		goldenJSON(t, "retention.json", rep)
	})
	t.Run("heatmap", func(t *testing.T) {
		rep, err := Heatmap(ctx, conn, "spring")
		if err != nil {
			t.Fatal(err)
		}
		want := []HeatmapCell{
			{Weekday: "Mon", Hour: 9, Sent: 240, Read: 150, Rate: 150.0 / 240},
			{Weekday: "Mon", Hour: 16, Sent: 240, Read: 150, Rate: 150.0 / 240},
		}
		if !reflect.DeepEqual(rep.Cells, want) || rep.UTCMessages != 240 {
			t.Fatalf("heatmap %+v (utc %d)", rep.Cells, rep.UTCMessages)
		}
		goldenJSON(t, "heatmap.json", rep)
	})
	t.Run("sender health", func(t *testing.T) {
		rep, err := SenderHealthReport(ctx, conn, baseTime.AddDate(0, 0, -1), baseTime.AddDate(0, 0, 30))
		if err != nil {
			t.Fatal(err)
		}
		if len(rep) != 2 {
			t.Fatalf("%+v", rep)
		}
		s1, s2 := rep[0], rep[1]
		if s1.Sent != 480 || s1.Delivered != 450 || s1.Read != 300 || s1.Failed != 10 || s1.OptedOut != 3 ||
			!reflect.DeepEqual(s1.Errors, []CodeCount{{131026, 6}, {131049, 4}}) {
			t.Fatalf("s1 %+v", s1)
		}
		if s2.Sent != 10 || s2.Delivered != 5 || s2.Read != 5 || s2.Failed != 0 {
			t.Fatalf("s2 %+v", s2)
		}
		goldenJSON(t, "sender_health.json", rep)
	})
	t.Run("anomalies", func(t *testing.T) {
		from := time.Date(2025, 5, 8, 0, 0, 0, 0, time.UTC)
		rep, err := Anomalies(ctx, conn, from, from.AddDate(0, 0, 3), 7)
		if err != nil {
			t.Fatal(err)
		}
		var flagged []string
		for _, d := range rep.Days {
			if d.Anomaly {
				flagged = append(flagged, d.Kind+" "+d.Day)
			}
		}
		if !reflect.DeepEqual(flagged, []string{"sent 2025-05-10"}) {
			t.Fatalf("flagged %v; days %+v", flagged, rep.Days)
		}
		goldenJSON(t, "anomalies.json", rep)
	})
}

// The analyst views give the reports' figures.
func TestViews(t *testing.T) {
	conn := reportsFixture(t)
	ctx := context.Background()
	var q, s, d, r, cl, rep, conv, sk, f, oo uint64
	err := conn.QueryRow(ctx, `SELECT queued, sent, delivered, read, clicked, replied, converted, skipped, failed, opted_out
		FROM v_funnel WHERE campaign_id = 'spring'`).Scan(&q, &s, &d, &r, &cl, &rep, &conv, &sk, &f, &oo)
	if err != nil {
		t.Fatal(err)
	}
	got := []uint64{q, s, d, r, cl, rep, conv, sk, f, oo}
	if want := []uint64{500, 480, 450, 300, 60, 50, 0, 20, 10, 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("v_funnel spring %v, want %v", got, want)
	}
	by, err := FunnelBy(ctx, conn, "spring", "variant")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT variant, sent, read, clicked FROM v_funnel_by_variant WHERE campaign_id = 'spring' ORDER BY variant`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var (
			v             string
			sent, rd, clk uint64
		)
		if err := rows.Scan(&v, &sent, &rd, &clk); err != nil {
			t.Fatal(err)
		}
		g := by.Groups[i]
		if v != g.Key || sent != g.Steps[1].Contacts || rd != g.Steps[3].Contacts || clk != g.Steps[4].Contacts {
			t.Fatalf("v_funnel_by_variant %s: sent %d read %d clicked %d; report %+v", v, sent, rd, clk, g)
		}
	}
	if i != 2 {
		t.Fatalf("v_funnel_by_variant: %d rows, want 2", i)
	}
	var n, proved uint64
	if err := conn.QueryRow(ctx, `SELECT count(), countIf(consent_action = 'grant') FROM v_sent_consent WHERE campaign_id = 'summer'`).Scan(&n, &proved); err != nil {
		t.Fatal(err)
	}
	if n != 10 || proved != 0 {
		t.Fatalf("v_sent_consent summer: %d rows, %d with a grant; want 10 and 0", n, proved)
	}
}

func TestTwoProportionZ(t *testing.T) {
	for _, tc := range []struct {
		x1, n1, x2, n2 uint64
		z, p           float64
	}{
		{40, 240, 20, 240, 2.7603, 0.00577},
		{50, 100, 50, 100, 0, 1},
		{0, 0, 5, 10, 0, 1},
		{0, 10, 0, 10, 0, 1},
	} {
		z, p := twoProportionZ(tc.x1, tc.n1, tc.x2, tc.n2)
		if math.Abs(z-tc.z) > 1e-3 || math.Abs(p-tc.p) > 1e-4 {
			t.Errorf("z-test %d/%d vs %d/%d = %.4f, %.5f; want %.4f, %.5f", tc.x1, tc.n1, tc.x2, tc.n2, z, p, tc.z, tc.p)
		}
	}
}
