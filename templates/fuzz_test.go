package templates

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

var fuzzSeeds = []string{
	`Hi {{ a | default: "there" | capitalize }}!`,
	`{% if b %}{{ n | plus: 1 | times: 2.5 | round: 1 }}{% else %}{{ a | truncate: 5 }}{% endif %}`,
	`{% assign x = a | split: "," | first %}{{ x | upcase | append: x }}`,
	`{% capture c %}{{ a }}{{ a }}{% endcapture %}{{ c | replace: "a", c | size }}`,
	`{% case n %}{% when 1, 2 %}low{% else %}{{ n | format_number: 2 }}{% endcase %}`,
	`{{ n | date: "%Y-%m-%d %H:%M", "Asia/Bangkok" }} {{ a | slice: -3, 2 }}`,
	`{{ a | url_encode }} {{ a | truncatewords: 2, "…" }} {{ a | remove_first: "x" }}`,
	`{% for i in (1..3) %}{{ i }}{% endfor %}`,
	`{% include "x" %}`,
	`{{ a[0] }} {{ a.size }} {% raw %}{{ a }}{% endraw %} {%- comment -%}x{%- endcomment -%}`,
	`{{ a | split: "" | join: a }}`,
	`{{ n | divided_by: 0 }} {{ n | modulo: -1 }} {{ n | abs }}`,
	`{{ a | plus: 1 }} {{ n | divided_by: 2.0 | round: 1 }} {{ n | modulo: -3 }} {{ a | times: n | at_most: 2.5 | ceil }} {{ a | escape_once }}`,
}

// FuzzRender compiles random Liquid as a text body and as a template parameter, and
// renders it with random values: no panic, no internal error, output within limits.
// Loops do not exist in the dialect, so every render is bounded by the source size.
func FuzzRender(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, "Ana, Bo", int64(3), true)
		f.Add(s, "", int64(-1), false)
	}
	vars := []Variable{
		{Name: "a", Type: TypeString, Example: "x y"},
		{Name: "n", Type: TypeNumber, Example: int64(2)},
		{Name: "b", Type: TypeBool, Default: false},
	}
	f.Fuzz(func(t *testing.T, src, a string, n int64, b bool) {
		if !utf8.ValidString(src) {
			return
		}
		values := map[string]any{"a": a, "n": n, "b": b}
		for _, kind := range []Kind{KindText, KindWhatsAppTemplate} {
			tpl := &Template{Name: "fuzz", Channel: ChannelWhatsApp, Locale: "en_US", Kind: kind, Variables: vars}
			v := Variant{Name: "default", Weight: 1, Body: src}
			if kind == KindWhatsAppTemplate {
				v = Variant{Name: "default", Weight: 1, WhatsApp: &WhatsApp{Name: "fuzz", Category: CategoryMarketing,
					Params: []Param{{Name: "p", Text: src}}}}
			}
			tpl.Variants = []Variant{v}
			c, err := Compile(tpl)
			if err != nil {
				if strings.Contains(err.Error(), ErrInternal.Error()) {
					t.Fatalf("compile %q: %v", src, err)
				}
				continue
			}
			r, err := c.Render("fuzz", 1, values)
			var re *RenderError
			switch {
			case err != nil && !errors.As(err, &re):
				t.Fatalf("render %q: %T %v", src, err, err)
			case err != nil && re.Reason() == "internal":
				t.Fatalf("render %q with %v: %v", src, values, err)
			case err != nil:
			case kind == KindText && utf8.RuneCountInString(r.Text) > MaxTextBody:
				t.Fatalf("render %q: %d characters", src, utf8.RuneCountInString(r.Text))
			case kind == KindWhatsAppTemplate && utf8.RuneCountInString(r.WhatsApp.Components[0].Parameters[0].Text) > MaxParamText:
				t.Fatalf("render %q: parameter too long", src)
			}
		}
	})
}

// FuzzParseFile parses random files: no panic; what parses compiles and renders (or
// fails with a RenderError that is not internal).
func FuzzParseFile(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tpl, err := ParseFile(data, "fuzz.yaml")
		if err != nil {
			if strings.Contains(err.Error(), ErrInternal.Error()) {
				t.Fatalf("parse: %v", err)
			}
			return
		}
		c, err := Compile(tpl)
		if err != nil {
			t.Fatalf("ParseFile accepted what Compile refuses: %v", err)
		}
		_, err = c.Render("fuzz", 7, map[string]any{})
		var re *RenderError
		if err != nil && (!errors.As(err, &re) || re.Reason() == "internal") {
			t.Fatalf("render: %v", err)
		}
	})
}
