package segments

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/internal/testenv"
)

func newStore(t testing.TB) (*Store, *redis.Client, string) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return NewStore(rdb, prefix), rdb, prefix
}

// snapshot renders every key under prefix and its value, to compare Redis before and
// after an operation that should change nothing.
func snapshot(t testing.TB, rdb *redis.Client, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "string":
			out[k] = rdb.Get(ctx, k).Val()
		case "hash":
			h := rdb.HGetAll(ctx, k).Val()
			var parts []string
			for f, v := range h {
				parts = append(parts, f+"="+v)
			}
			slices.Sort(parts)
			out[k] = "hash:" + strings.Join(parts, "\x00")
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			slices.Sort(m)
			out[k] = "set:" + strings.Join(m, ",")
		default:
			t.Fatalf("key %s has unexpected type %s", k, typ)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// identEntries returns every entry of a store's phone (or email) index, over all its
// buckets, checking each is in the bucket of its phone or email.
func identEntries(t testing.TB, rdb *redis.Client, s *Store, email bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for b := range uint32(identBuckets) {
		k := s.kIdentPhoneBucket(b)
		if email {
			k = s.kIdentEmailBucket(b)
		}
		for x, id := range rdb.HGetAll(context.Background(), k).Val() {
			if identBucket(x) != b {
				t.Fatalf("%s holds %s, of bucket %d", k, x, identBucket(x))
			}
			out[x] = id
		}
	}
	return out
}

func diffSnapshots(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if v != w {
			d = append(d, fmt.Sprintf("changed %s: %q -> %q", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	slices.Sort(d)
	return d
}

// consentRecorder is a ConsentSink that checks, when called, that the batch's contacts
// already exist with the phone the row names.
type consentRecorder struct {
	s    *Store
	mu   sync.Mutex
	rows []ConsentRow
	errs []string
	fail error
}

func (c *consentRecorder) ImportConsent(ctx context.Context, rows []ConsentRow) error {
	if c.fail != nil {
		return c.fail
	}
	ids := make([]uint32, len(rows))
	for i, r := range rows {
		ids[i] = r.ContactID
	}
	ps, err := c.s.Profiles(ctx, ids)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range ps {
		if p.ID != rows[i].ContactID || p.Phone != rows[i].Phone {
			c.errs = append(c.errs, fmt.Sprintf("line %d: contact %d is %+v when its consent arrives", rows[i].Line, rows[i].ContactID, p))
		}
	}
	c.rows = append(c.rows, rows...)
	return nil
}

func importString(t testing.TB, s *Store, body string, o ImportOptions) ImportReport {
	t.Helper()
	rep, err := s.ImportCSV(context.Background(), strings.NewReader(body), o)
	if err != nil {
		t.Fatalf("ImportCSV: %v", err)
	}
	if rep.Read != rep.Created+rep.Updated+rep.Unchanged+rep.Rejected {
		t.Fatalf("report does not add up: %+v", rep)
	}
	return rep
}

func mustLookup(t testing.TB, s *Store, phone string) uint32 {
	t.Helper()
	id, err := s.LookupPhone(context.Background(), phone)
	if err != nil {
		t.Fatalf("LookupPhone(%q): %v", phone, err)
	}
	return id
}

func mustProfile(t testing.TB, s *Store, id uint32) Contact {
	t.Helper()
	ps, err := s.Profiles(context.Background(), []uint32{id})
	if err != nil {
		t.Fatal(err)
	}
	return ps[0]
}

func members(t testing.TB, s *Store, expr string) []uint32 {
	t.Helper()
	bm, err := s.Evaluate(context.Background(), expr)
	if err != nil {
		t.Fatalf("Evaluate(%q): %v", expr, err)
	}
	return bm.ToArray()
}
