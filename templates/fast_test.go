package templates

import (
	"errors"
	"math"
	"testing"
	"unicode/utf8"
)

var fastSeeds = []string{
	`Hi {{ name | capitalize }}, {{ city }} has {{ deals }} new deals for you.`,
	`{{ name | default: "there" | upcase }}!`,
	`{{name|truncate:5,"…"}} {{ deals | plus: 1.5 }} {{ deals | times: 2 | divided_by: 3 }}`,
	`{{ deals | format_number: 2, ".", "," }} {{ price | number_with_delimiter }}`,
	`{{ when | date: "%Y-%m-%d %H:%M", "Asia/Bangkok" }}`,
	`{{ name | slice: -3, 2 }} {{ name | size }} {{ ok }} {{ ok | default: "no" }}`,
	`{{ name | append: " x" | prepend: 'y ' | replace: "a", "b" | remove_first: "y" }}`,
	`{{ deals | minus: -1 }} {{ deals | modulo: 0 }} {{ price | round: 1 }} {{ price | ceil }}`,
	`{{ name | default: nil }} {{ name | default: true }} {{ name | default: false }} {{ nope | default: 3 }}`,
	`{{ name }}{{ name | url_encode }}{{ name | escape }}{{ name | strip | first }}{{ name | last }}`,
	`{{ name | split: " " | first }} {{- name -}} {% if ok %}y{% endif %}`,
	`{{ deals | abs }} {{ price | at_least: 5 }} {{ price | at_most: 2.5 }} {{ price | floor }}`,
	`{{ name | truncatewords: 2 }} {{ name | join: "," }} {{ name | strip_newlines }}`,
	`{{ deals | number: "de_DE" }} {{ price | number: zone, 3 }} {{ price | currency: "", "th_TH" }} {{ deals | currency: "IDR", name }}`,
	`{{ when | date: "%d %b %H:%M", zone }} {{ name | append: city | prepend: nope }} {{ name | default: city }}`,
	// numbers as Shopify computes them: integers, floats, number-like strings
	`{{ deals | divided_by: 2 }} {{ deals | modulo: -3 }} {{ deals | divided_by: -4 }} {{ deals | times: 3 | minus: 7 }}`,
	`{{ price | divided_by: 0.1 }} {{ price | modulo: 7 }} {{ price | times: 0.97 | round: 2 }} {{ price | plus: 0.2 }}`,
	`{{ price | round }} {{ price | round: -1 }} {{ deals | round: -2 }} {{ price | round: 3 }} {{ deals | round: 1 }}`,
	`{{ name | plus: 1 }} {{ name | times: 2.5 }} {{ price | minus: name }} {{ name | divided_by: deals }} {{ name | round: 1 }}`,
	`{{ deals | at_most: price }} {{ price | at_least: deals }} {{ price | minus: deals | abs | ceil }} {{ deals | times: price | floor }}`,
	`{{ deals | divided_by: price }} {{ price | modulo: deals }} {{ price | times: price }} {{ deals | plus: deals }} {{ price }}`,
	`{{ name | escape }} {{ name | escape_once }} {{ price | append: "" }} {{ nope | default: 2.0 }} {{ price | at_most: 1.5 }}`,
}

// FuzzFastPath renders random templates through the fast path and through osteele and
// requires the same text, or the same error.
func FuzzFastPath(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add(s, "ana maria", int64(3), 12345.678, true)
		f.Add(s, "", int64(-7), -0.5, false)
		f.Add(s, "ÉLODIE  a", int64(1<<40), 1e21, true)
		f.Add(s, " -3.50 ", int64(-13), 183.357, true)
		f.Add(s, "7", int64(math.MinInt64), 0.30000000000000004, false)
		f.Add(s, `&lt;b&gt; & "q" 'a' &#39;`, int64(math.MaxInt64), -1e-7, true)
		f.Add(s, "12", int64(0), 0.0, false)
	}
	vars := []Variable{
		{Name: "name", Type: TypeString, Example: "ana"},
		{Name: "city", Type: TypeString, Default: "Lisbon"},
		{Name: "deals", Type: TypeNumber, Example: int64(3)},
		{Name: "price", Type: TypeNumber, Example: 9.5},
		{Name: "ok", Type: TypeBool, Default: false},
		{Name: "when", Type: TypeDate, Example: "2025-03-01T10:00:00Z"},
		{Name: "nope", Type: TypeString},
		{Name: "zone", Type: TypeString, Default: "Asia/Jakarta"},
	}
	fast := 0
	f.Fuzz(func(t *testing.T, src, name string, deals int64, price float64, ok bool) {
		if !utf8.ValidString(src) {
			return
		}
		tpl := &Template{Name: "fuzz", Channel: ChannelWhatsApp, Locale: "en_US", Kind: KindText, Variables: vars,
			Variants: []Variant{{Name: "default", Weight: 1, Body: src}}}
		c1, err := Compile(tpl)
		if err != nil {
			return
		}
		c2, err := Compile(tpl)
		if err != nil {
			t.Fatalf("second compile: %v", err)
		}
		c2.slowOnly = true
		if c1.variants[0].text.fast != nil {
			fast++
		}
		values := map[string]any{"name": name, "deals": deals, "price": price, "ok": ok, "when": deals}
		r1, err1 := c1.Render("fuzz", 1, values)
		r2, err2 := c2.Render("fuzz", 1, values)
		switch {
		case (err1 == nil) != (err2 == nil):
			t.Fatalf("%q: fast %q, %v; osteele %q, %v", src, r1.Text, err1, r2.Text, err2)
		case err1 != nil && err1.Error() != err2.Error():
			t.Fatalf("%q: errors differ:\nfast    %v\nosteele %v", src, err1, err2)
		case r1.Text != r2.Text:
			t.Fatalf("%q: fast %q, osteele %q", src, r1.Text, r2.Text)
		}
	})
	if fast == 0 && len(fastSeeds) > 0 {
		f.Log("no input took the fast path")
	}
}

// The common shapes compile to the fast path; tags, trim markers and lists do not.
func TestFastPathShapes(t *testing.T) {
	vars := []Variable{{Name: "name", Type: TypeString, Default: "x"}, {Name: "n", Type: TypeNumber, Default: int64(1)}}
	for _, tc := range []struct {
		src  string
		fast bool
	}{
		{`Hi {{ name }}`, true},
		{`Hi {{ name | default: "there" | capitalize }}, {{ n | plus: 1 }}`, true},
		{`{{name|truncate:5,"…"}}`, true},
		{`{{ name | split: " " | first }}`, false},
		{`{{- name }}`, false},
		{`{% if n %}{{ name }}{% endif %}`, false},
		{`{{ name | append: name }}`, true},
		{`{{ name | append: name.size }}`, false},
		{`{{ name.size }}`, false},
	} {
		tpl := &Template{Name: "shape", Channel: ChannelWhatsApp, Locale: "en_US", Kind: KindText, Variables: vars,
			Variants: []Variant{{Name: "default", Weight: 1, Body: tc.src}}}
		c, err := Compile(tpl)
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if got := c.variants[0].text.fast != nil; got != tc.fast {
			t.Errorf("%q: fast path %v, want %v", tc.src, got, tc.fast)
		}
		r, err := c.Render("c", 1, nil)
		c.slowOnly = true
		r2, err2 := c.Render("c", 1, nil)
		if r.Text != r2.Text || (err == nil) != (err2 == nil) {
			t.Errorf("%q: fast %q %v, osteele %q %v", tc.src, r.Text, err, r2.Text, err2)
		}
	}
}

// A filter error on the fast path reads like the osteele one.
func TestFastPathErrors(t *testing.T) {
	tpl := &Template{Name: "e", Channel: ChannelWhatsApp, Locale: "en_US", Kind: KindText,
		Variables: []Variable{{Name: "n", Type: TypeString, Example: "1"}},
		Variants:  []Variant{{Name: "default", Weight: 1, Body: `{{ n | divided_by: 0 }}`}}}
	c, err := Compile(tpl)
	if err == nil || c != nil {
		t.Fatalf("division by zero in the example render was accepted: %v", err)
	}
	tpl.Variants[0].Body = `{{ n | plus: 1 }}`
	c, err = Compile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Render("c", 1, map[string]any{"n": "abc"})
	c.slowOnly = true
	_, err2 := c.Render("c", 1, map[string]any{"n": "abc"})
	var re *RenderError
	if err == nil || err2 == nil || err.Error() != err2.Error() || !errors.As(err, &re) || !errors.Is(err, ErrLiquid) {
		t.Fatalf("fast %v; osteele %v", err, err2)
	}
}
