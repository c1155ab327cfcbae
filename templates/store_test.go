package templates

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
)

func TestStoreVersions(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	s := NewStore(rdb, prefix)

	v1src, err := os.ReadFile("testdata/golden/spring_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := ParseFile(v1src, "spring_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "spring_sale"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Save: %v, want ErrNotFound", err)
	}
	v, err := s.Save(ctx, tpl, v1src)
	if err != nil || v != 1 || tpl.Version != 1 {
		t.Fatalf("first Save: v%d (t.Version %d), %v", v, tpl.Version, err)
	}
	if v, err := s.Save(ctx, tpl, v1src); err != nil || v != 1 {
		t.Fatalf("Save unchanged: v%d, %v; want v1 again", v, err)
	}

	v2src := []byte(strings.Replace(string(v1src), `default: "20%"}`, `default: "25%"}`, 1))
	tpl2, err := ParseFile(v2src, "spring_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Save(ctx, tpl2, v2src); err != nil || v != 2 {
		t.Fatalf("Save changed: v%d, %v; want v2", v, err)
	}

	// bad input changes nothing
	if _, err := s.Save(ctx, tpl2, []byte("name: spring_sale\nkind: nope\n")); err == nil {
		t.Fatal("Save of an invalid source succeeded")
	}
	other, _ := ParseFile([]byte(strings.Replace(string(v2src), "name: spring_sale\n", "name: autumn_sale\n", 1)), "x.yaml")
	if _, err := s.Save(ctx, other, v2src); err == nil || !strings.Contains(err.Error(), `the source is template "spring_sale"`) {
		t.Fatalf("Save under another name: %v", err)
	}
	if vs, err := s.Versions(ctx, "spring_sale"); err != nil || len(vs) != 2 || vs[0] != 1 || vs[1] != 2 {
		t.Fatalf("Versions = %v, %v; want [1 2]", vs, err)
	}

	latest, err := s.Get(ctx, "spring_sale")
	if err != nil || latest.Version != 2 {
		t.Fatalf("Get: %+v, %v", latest, err)
	}
	old, err := s.GetVersion(ctx, "spring_sale", 1)
	if err != nil || old.Version != 1 {
		t.Fatalf("GetVersion 1: %v", err)
	}
	for ver, want := range map[*Template]string{latest: "25%", old: "20%"} {
		c, err := Compile(ver)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Render("c", 1, map[string]any{"coupon": "X"})
		if err != nil || r.Version != ver.Version || r.WhatsApp.Components[0].Parameters[1].Text != want {
			t.Fatalf("v%d renders %+v, %v; want discount %s", ver.Version, r, err, want)
		}
	}
	for _, tc := range []struct {
		name string
		v    int
	}{{"spring_sale", 3}, {"spring_sale", 0}, {"nope", 1}, {"../evil", 1}} {
		if _, err := s.GetVersion(ctx, tc.name, tc.v); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetVersion(%s, %d): %v, want ErrNotFound", tc.name, tc.v, err)
		}
	}

	// the documented key layout
	if n, err := rdb.HLen(ctx, prefix+"tpl:{spring_sale}").Result(); err != nil || n != 2 {
		t.Fatalf("HLEN P tpl:{spring_sale} = %d, %v", n, err)
	}
	if l, err := rdb.Get(ctx, prefix+"tpl:{spring_sale}:latest").Result(); err != nil || l != "2" {
		t.Fatalf("GET P tpl:{spring_sale}:latest = %q, %v", l, err)
	}

	welcome, err := os.ReadFile("testdata/golden/welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wt, err := ParseFile(welcome, "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, wt, welcome); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List: %+v, %v", list, err)
	}
	if l := list[0]; l.Name != "spring_sale" || l.Version != 2 || l.Kind != KindWhatsAppTemplate || len(l.WhatsAppTemplates) != 1 || l.SHA256 == "" || l.SavedAt.IsZero() {
		t.Errorf("List[0] = %+v", l)
	}
	if l := list[1]; l.Name != "welcome" || l.Version != 1 || l.Kind != KindText || l.Variants[0] != "default" {
		t.Errorf("List[1] = %+v", l)
	}
}

func TestCacheCompilesOncePerVersion(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	s := NewStore(rdb, prefix)
	save := func(discount string) {
		t.Helper()
		src := []byte(strings.Replace(abSource, `default: "you"`, `default: "`+discount+`"`, 1))
		tpl, err := ParseFile(src, "ab.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Save(ctx, tpl, src); err != nil {
			t.Fatal(err)
		}
	}

	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cache := NewCache(s, CacheConfig{LatestTTL: time.Minute, Now: func() time.Time { return now }})
	if _, err := cache.Get(ctx, "ab"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Save: %v", err)
	}
	save("one") // a miss is not cached
	c1, err := cache.Get(ctx, "ab")
	if err != nil || c1.Template().Version != 1 {
		t.Fatalf("Get: %v", err)
	}

	// concurrent Gets share one compiled template
	var wg sync.WaitGroup
	got := make([]*Compiled, 16)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = cache.Get(ctx, "ab")
		}()
	}
	wg.Wait()
	for i, c := range got {
		if c != c1 {
			t.Fatalf("Get #%d returned another *Compiled", i)
		}
	}

	save("two")
	if c, _ := cache.Get(ctx, "ab"); c != c1 {
		t.Fatal("Get re-read the latest version before LatestTTL passed")
	}
	now = now.Add(time.Minute)
	c2, err := cache.Get(ctx, "ab")
	if err != nil || c2 == c1 || c2.Template().Version != 2 {
		t.Fatalf("after LatestTTL: v%d, %v; want v2", c2.Template().Version, err)
	}
	if r, _ := c2.Render("c", 1, nil); !strings.HasSuffix(r.Text, " two") {
		t.Fatalf("v2 renders %q", r.Text)
	}
	// a campaign pinned to v1 keeps rendering v1, from the same compiled template
	if c, err := cache.GetVersion(ctx, "ab", 1); err != nil || c != c1 {
		t.Fatalf("GetVersion 1: %v", err)
	}

	// LatestTTL 0: every Get sees the latest save
	fresh := NewCache(s, CacheConfig{})
	save("three")
	if c, err := fresh.Get(ctx, "ab"); err != nil || c.Template().Version != 3 {
		t.Fatalf("fresh cache: %v", err)
	}
}

func TestStoreSource(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	s := NewStore(rdb, prefix)
	src, err := os.ReadFile("testdata/golden/spring_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := ParseFile(src, "spring_sale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Source(ctx, "spring_sale", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Source before Save: %v, want ErrNotFound", err)
	}
	if _, err := s.Save(ctx, tpl, src); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int{0, 1} {
		sum, got, err := s.Source(ctx, "spring_sale", v)
		if err != nil || string(got) != string(src) || sum.Version != 1 || sum.Name != "spring_sale" {
			t.Fatalf("Source v%d: %+v, %d bytes, %v", v, sum, len(got), err)
		}
	}
	if _, _, err := s.Source(ctx, "spring_sale", 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Source v2: %v, want ErrNotFound", err)
	}
}
