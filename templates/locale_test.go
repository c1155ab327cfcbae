package templates

import (
	"context"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

func localeSource(locale, body string) []byte {
	return []byte("name: greet\nchannel: whatsapp\nlocale: " + locale + "\nkind: text\nbody: \"" + body + "\"\n")
}

// One template name, several locales: the first saved is the default, the others are
// alternates; a contact gets its exact locale, else one of its language, else the default.
func TestLocaleAlternates(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	s := NewStore(rdb, prefix)
	save := func(locale, body string) {
		t.Helper()
		src := localeSource(locale, body)
		tpl, err := ParseFile(src, "greet.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Save(ctx, tpl, src); err != nil {
			t.Fatal(err)
		}
	}
	save("en_US", "Hello")
	save("th_TH", "Sawasdee")
	save("pt_BR", "Ola")
	save("en_US", "Hello there") // a new version of the default
	c := NewCache(s, CacheConfig{})
	for locale, want := range map[string]string{
		"":      "Hello there",
		"en_US": "Hello there",
		"th-TH": "Sawasdee", // separators and case do not matter
		"th":    "Sawasdee", // same language
		"pt_PT": "Ola",      // same language, other region
		"de_DE": "Hello there",
	} {
		comp, err := c.GetFor(ctx, "greet", locale)
		if err != nil {
			t.Fatal(err)
		}
		r, err := comp.Render("c", 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Text != want {
			t.Errorf("locale %q: %q, want %q", locale, r.Text, want)
		}
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "greet" || list[0].Locale != "en_US" || list[0].Version != 2 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	bad := []byte(strings.Replace(string(localeSource("en_US", "x")), "name: greet", "name: a__b", 1))
	if tpl, err := ParseFile(bad, "x.yaml"); err == nil {
		if _, err := s.Save(ctx, tpl, bad); err == nil {
			t.Fatal("a name with the reserved __ was saved")
		}
	}
}
