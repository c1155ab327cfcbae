package throttle

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/testenv"
)

// rulesCluster, when set, is the Redis Cluster (its nodes) the rules tests run on:
// TestRulesOnRedisCluster runs them again there, where the daily tier is split.
var rulesCluster []string

// rulesRedis is the rules tests' Redis and a key prefix of the test's own: the test
// redis-server, or the cluster of TestRulesOnRedisCluster.
func rulesRedis(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	if rulesCluster == nil {
		return testenv.Redis(t)
	}
	rdb := rulesClient(t)
	t.Cleanup(func() { rdb.Close() })
	return rdb, "t" + testenv.Unique() + ":"
}

// rulesClient is a client of its own (a worker's connection) to the rules tests' Redis.
func rulesClient(t testing.TB) redis.UniversalClient {
	if rulesCluster == nil {
		return redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: rulesCluster})
}

// The per-recipient rules' tests, again on a real three-node Redis Cluster: there the
// daily tier is reserved on the sender's slot before the rules run on the contact's
// (tiersplit.go), and every test must decide and leave state exactly as on one Redis.
func TestRulesOnRedisCluster(t *testing.T) {
	addrs, _ := testenv.RedisCluster(t)
	rulesCluster = addrs
	defer func() { rulesCluster = nil }()
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"PairRate", TestPairRate},
		{"DailyTierIsExactAcrossWorkers", TestDailyTierIsExactAcrossWorkers},
		{"DailyTierSparesWindowMessages", TestDailyTierSparesWindowMessages},
		{"PushbackBacksOffTheRecipient", TestPushbackBacksOffTheRecipient},
		{"MarketingHold", TestMarketingHold},
		{"ReleaseCapsGivesEverythingBack", TestReleaseCapsGivesEverythingBack},
		{"DeferredJobKeepsNothing", TestDeferredJobKeepsNothing},
		{"QuietHoursInCheck", TestQuietHoursInCheck},
		{"PreviewReservesNothing", TestPreviewReservesNothing},
		{"CheckpointerListsTheHeadsThatMoved", TestCheckpointerListsTheHeadsThatMoved},
		{"RebuildRestoresStateFromTheLedger", TestRebuildRestoresStateFromTheLedger},
		{"RebuildCountsChainsForCheckpoints", TestRebuildCountsChainsForCheckpoints},
		{"SplitTierConcurrentPair", testSplitTierConcurrentPair},
		{"SplitTierLeakIsBounded", testSplitTierLeakIsBounded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := rulesClient(t)
			defer rdb.Close()
			if !NewPolicy(rdb, "", nil).splitTier {
				t.Fatal("the policy on a cluster client does not split the tier")
			}
			tc.run(t)
		})
	}
}

// Jobs of several campaigns for one (sender, contact), and retries of each, decided at
// once by many workers in the same millisecond, with the pair rate off: the contact
// takes one place in the tier whatever happens; every job is allowed once its turn
// comes; releasing the last of them leaves the contact counted (the others were sent).
func testSplitTierConcurrentPair(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 3)
	e.p.WithPairInterval(0)
	tiered := func(campaign string, contact uint32) Job {
		j := rulesJob(campaign, contact, "s1")
		j.SenderTier = 2
		return j
	}
	e.expect(tiered("first", 2), Allow, "", time.Time{})
	campaigns := []string{"A", "B", "C", "D", "E", "F"}
	var wg sync.WaitGroup
	for w := range 12 { // each campaign's job decided twice (a retry), concurrently
		wg.Add(1)
		go func() {
			defer wg.Done()
			rdb := rulesClient(t)
			defer rdb.Close()
			p := NewPolicy(rdb, e.prefix, func() time.Time { return rulesT0 }).WithPairInterval(0)
			d, err := p.Check(ctx, []Job{tiered(campaigns[w%len(campaigns)], 1)})
			if err != nil || d[0].Verdict != Allow {
				t.Errorf("worker %d: %+v, %v", w, d, err)
			}
		}()
	}
	wg.Wait()
	if n, _ := e.rdb.ZCard(ctx, e.p.tierKey("s1")).Result(); n != 2 {
		t.Fatalf("tier set holds %d contacts, want 2", n)
	}
	// The tier (2) is full: contact 3 waits.
	e.expect(tiered("G", 3), Defer, ReasonDailyTier, rulesT0.Add(TierWindow))
	// Release the job whose record is the contact's last (the others stay sent): the
	// contact is still counted, at a time no earlier than the first of them.
	rec, _ := e.rdb.HGet(ctx, e.p.rulesKey(1), "s:s1").Result()
	last := rec[strings.LastIndexByte(rec, ':')+1:]
	if err := e.p.ReleaseCaps(ctx, []Job{tiered(last, 1)}); err != nil {
		t.Fatal(err)
	}
	if s, err := e.rdb.ZScore(ctx, e.p.tierKey("s1"), "1").Result(); err != nil || int64(s) < rulesT0.UnixMilli() {
		t.Fatalf("after releasing %s, contact 1's score %v (%v): want it counted from %d on", last, s, err, rulesT0.UnixMilli())
	}
	e.expect(tiered("G", 3), Defer, ReasonDailyTier, rulesT0.Add(TierWindow))
}

// A worker that dies between the tier script and the rules script leaks a place: the
// sender is held back (never over) by that one contact, the job's retry reuses the
// place, and the place leaves the window after TierWindow like any other.
func testSplitTierLeakIsBounded(t *testing.T) {
	ctx := context.Background()
	e := newRulesEnv(t, 3)
	j := rulesJob("A", 1, "s1")
	j.SenderTier = 1
	// The crash: the tier place is taken, the rules never run.
	if _, err := e.p.reserveTier(ctx, []Job{j}, []int{0}, rulesT0.UnixMilli(), "1"); err != nil {
		t.Fatal(err)
	}
	other := rulesJob("B", 2, "s1")
	other.SenderTier = 1
	e.expect(other, Defer, ReasonDailyTier, rulesT0.Add(TierWindow)) // held back by the leak
	e.now = rulesT0.Add(time.Minute)
	e.expect(j, Allow, "", time.Time{}) // the retry reuses the contact's place
	e.expect(other, Defer, ReasonDailyTier, rulesT0.Add(time.Minute+TierWindow))
	if n, _ := e.rdb.ZCard(ctx, e.p.tierKey("s1")).Result(); n != 1 {
		t.Fatalf("tier set holds %d contacts after the retry, want 1", n)
	}
	// A leak whose job never comes back frees itself when it leaves the window.
	lost := rulesJob("C", 3, "s2")
	lost.SenderTier = 1
	if _, err := e.p.reserveTier(ctx, []Job{lost}, []int{0}, e.now.UnixMilli(), "1"); err != nil {
		t.Fatal(err)
	}
	other.SenderID = "s2"
	e.expect(other, Defer, ReasonDailyTier, e.now.Add(TierWindow))
	e.now = e.now.Add(TierWindow)
	e.expect(other, Allow, "", time.Time{})
}
