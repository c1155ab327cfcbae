package sandbox

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// Remote reads a sandbox over HTTP as a benchmark reads one in its own process: the
// template it registers is accepted for sends, and records (over several pages), stats
// and idleness agree with the sandbox's own.
func TestRemote(t *testing.T) {
	e := newEnv(t, Config{Throughput: 1e6, PairInterval: -1, DelayScale: -1})
	r := &Remote{URL: e.api.URL, Token: testToken, PageSize: 7}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTemplate(ctx, "100000000000001", "order_confirmation", "en_US", "UTILITY", orderConfirmation.Body); err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTemplate(ctx, "100000000000001", "Bad Name", "en_US", "UTILITY", "x"); err == nil {
		t.Error("a template with an invalid name was registered")
	}
	const n = 3*7 + 2 // several pages
	for i := range n {
		if rep := e.send(t, templateBody(fmt.Sprintf("+6681%07d", i), fmt.Sprintf("c:%d", i))); rep.status != 200 {
			t.Fatalf("send %d: HTTP %d %s", i, rep.status, rep.raw)
		}
	}
	recs, err := r.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	local := e.sb.Records()
	if len(recs) != n || len(local) != n {
		t.Fatalf("%d records over HTTP, %d in the sandbox, want %d", len(recs), len(local), n)
	}
	for i := range recs {
		if recs[i].MessageID != local[i].MessageID || recs[i].CallbackData != local[i].CallbackData || !recs[i].AcceptedAt.Equal(local[i].AcceptedAt) {
			t.Fatalf("record %d: %+v over HTTP, %+v in the sandbox", i, recs[i], local[i])
		}
	}
	st, err := r.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.sb.Stats(); !reflect.DeepEqual(st, want) || st.Accepted != n || st.Pending == 0 {
		t.Fatalf("stats %+v over HTTP, %+v in the sandbox", st, want)
	}
	// Idle only once the webhooks are delivered.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := r.WaitIdle(short); err == nil {
		t.Fatal("idle with statuses pending and no Run")
	}
	e.run(t)
	if err := r.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Stats(ctx); st.Pending != 0 || st.WebhookPosts == 0 {
		t.Errorf("after WaitIdle: %+v", st)
	}
}
