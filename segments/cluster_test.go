package segments

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/testenv"
)

// hashTag is the part of a key Redis Cluster hashes: the first {…} with something
// inside, else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// The keys one transaction or script uses share a slot whatever the prefix, and two
// stores' identity keys do not pile onto one slot.
func TestIdentityKeysShareASlot(t *testing.T) {
	tags := map[string]bool{}
	for _, prefix := range []string{"herald:", "", "t-1:", "{tenant}:", "a{b:", "a}b:", "{x}{}:"} {
		s := NewStore(nil, prefix)
		tag := hashTag(s.kSeq())
		for _, k := range []string{s.kIdentPhone("+66812345678"), s.kIdentEmail("a@example.com"), s.kIdentPhoneBucket(identBuckets - 1), s.kIdentPhoneOld(), s.kIdentEmailOld()} {
			if hashTag(k) != tag {
				t.Errorf("prefix %q: %s and %s hash %q and %q", prefix, s.kSeq(), k, tag, hashTag(k))
			}
		}
		tags[tag] = true
	}
	if len(tags) != 7 {
		t.Errorf("7 prefixes give %d hash tags", len(tags))
	}
}

// startCluster starts a Redis Cluster of three masters on free ports, or skips.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	return testenv.RedisClusterClient(t)
}

// The store on a real three-node Redis Cluster: imports (transaction and script
// linking), emails, evaluation, tagging, erasure.
func TestStoreOnRedisCluster(t *testing.T) {
	rdb := startCluster(t)
	ctx := context.Background()
	s := NewStore(rdb, "herald:")
	var b strings.Builder
	b.WriteString("phone,email,tags,locale\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "+66 81 55%d %04d,u%d@example.com,t%d;%s,th\n", i/10000, i%10000, i, i%3, map[bool]string{true: "vip", false: "basic"}[i%10 == 0])
	}
	rep, err := s.ImportCSV(ctx, strings.NewReader(b.String()), ImportOptions{BatchSize: 500})
	if err != nil || rep.Created != 3000 {
		t.Fatalf("import: %+v, %v", rep, err)
	}
	// Again, changing nothing (the lookup path), and new people by email (the
	// linking transaction), and the script directly.
	if rep, err = s.ImportCSV(ctx, strings.NewReader(b.String()), ImportOptions{BatchSize: 500}); err != nil || rep.Unchanged != 3000 {
		t.Fatalf("re-import: %+v, %v", rep, err)
	}
	if rep, err = s.ImportCSV(ctx, strings.NewReader("email,tags\nnew@example.com,vip\n"), ImportOptions{}); err != nil || rep.Created != 1 {
		t.Fatalf("import by email: %+v, %v", rep, err)
	}
	if out, err := s.linkScript(ctx, []identity{{phone: "+66815509999"}, {email: "u1@example.com"}}); err != nil || out[0] != -3002 || out[1] <= 0 {
		t.Fatalf("linkScript on the cluster = %v, %v", out, err)
	}
	if n, err := s.Count(ctx, "vip and locale:th and not t0"); err != nil || n != 200 {
		t.Fatalf("count = %d, %v", n, err)
	}
	ids, rejects, err := s.PhoneIDs(ctx, []string{"u1@example.com", "+66815500002"}, "")
	if err != nil || ids.GetCardinality() != 2 || len(rejects) != 0 {
		t.Fatalf("PhoneIDs = %v, %v, %v", ids, rejects, err)
	}
	if ch, err := s.TagContacts(ctx, "gold", ids, true); err != nil || ch.Changed != 2 {
		t.Fatalf("TagContacts = %+v, %v", ch, err)
	}
	if _, err := s.EraseContact(ctx, "u1@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if got := members(t, s, "gold"); len(got) != 1 {
		t.Fatalf("gold after erasure = %v", got)
	}
	p, err := s.Preview(ctx, "gold", 5)
	if err != nil || len(p.Sample) != 1 || p.Sample[0].Phone != "+66815500002" || !slices.Contains(p.Sample[0].Tags, "gold") {
		t.Fatalf("Preview = %+v, %v", p, err)
	}
}
