package analytics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
)

// API audit records land in api_audit; one inserted twice (the sink's at-least-once)
// lists once; pages go newest first with no record twice or missed; filters apply.
func TestAPICallsListedOnceNewestFirst(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	base := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	var b apiAuditBuffer
	for i := range 7 {
		c := events.APICall{ID: fmt.Sprintf("ac_%02d", i), Time: base.Add(time.Duration(i/2) * time.Second), RequestID: "req", KeyID: "k1",
			KeyName: "crm", Role: "marketer", Method: "POST", Route: "POST /v1/campaigns", ResourceID: fmt.Sprint(i % 3), Status: 201, DurationMS: 1.5}
		if i == 6 {
			c.KeyID, c.Replayed = "k2", true
		}
		v, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // twice: a redelivered batch
			if err := b.add(v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.add([]byte(`{"id":"x"}`)); err == nil {
		t.Fatal("a record without a time was accepted")
	}
	if err := b.insert(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var got []string
	var after APICallPage
	for range 10 {
		list, next, err := ListAPICalls(ctx, conn, APICallFilter{}, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			got = append(got, c.ID)
		}
		if after = next; after.ID == "" {
			break
		}
	}
	if want := "[ac_06 ac_05 ac_04 ac_03 ac_02 ac_01 ac_00]"; fmt.Sprint(got) != want {
		t.Fatalf("pages %v, want %s", got, want)
	}
	list, _, err := ListAPICalls(ctx, conn, APICallFilter{KeyID: "k2"}, APICallPage{}, 10)
	if err != nil || len(list) != 1 || !list[0].Replayed || list[0].Status != 201 || !list[0].Time.Equal(base.Add(3*time.Second)) {
		t.Fatalf("by key: %+v %v", list, err)
	}
	list, _, err = ListAPICalls(ctx, conn, APICallFilter{ResourceID: "0", From: base.Add(time.Second), To: base.Add(2 * time.Second)}, APICallPage{}, 10)
	if err != nil || len(list) != 1 || list[0].ID != "ac_03" {
		t.Fatalf("by resource and time: %+v %v", list, err)
	}
}
