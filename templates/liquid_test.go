package templates

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// textTemplate compiles a hand-built text template with one body.
func textTemplate(t testing.TB, body string, vars ...Variable) (*Compiled, error) {
	t.Helper()
	return Compile(&Template{
		Name: "t", Channel: ChannelWhatsApp, Locale: "en_US", Kind: KindText,
		Variables: vars,
		Variants:  []Variant{{Name: "default", Weight: 1, Body: body}},
	})
}

func mustText(t testing.TB, body string, vars ...Variable) *Compiled {
	t.Helper()
	c, err := textTemplate(t, body, vars...)
	if err != nil {
		t.Fatalf("compile %q: %v", body, err)
	}
	return c
}

func str(name string) Variable { return Variable{Name: name, Type: TypeString, Example: "x"} }

func TestRefusedAtParse(t *testing.T) {
	// A file the include would read if it were allowed: the test proves it is not read
	// by refusing at parse time, before any render.
	secret := t.TempDir() + "/secret.liquid"
	if err := os.WriteFile(secret, []byte("TOP SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"include", `{% include "` + secret + `" %}`, "include is not allowed: templates cannot read files"},
		{"include variable", `{% include {{ name }} %}`, "include is not allowed"},
		{"render", `{% render "footer", name: name %}`, "render is not allowed: templates cannot read files"},
		{"for", `{% for c in name %}{{ c }}{% endfor %}`, "for loops are not allowed"},
		{"for else", `{% for c in name %}x{% else %}y{% endfor %}`, "for loops are not allowed"},
		{"tablerow", `{% tablerow c in name %}{{ c }}{% endtablerow %}`, "tablerow loops are not allowed"},
		{"cycle", `{% cycle "a", "b" %}`, "cycle is not allowed"},
		{"break", `{% break %}`, "break is not allowed"},
		{"increment", `{% increment n %}`, "increment is not allowed"},
		{"range in object", `{{ (1..100000000) | join }}`, "ranges (a..b) are not allowed"},
		{"range in assign", `{% assign r = (1..5) %}{{ name }}`, "ranges (a..b) are not allowed"},
		{"range in if", `{% if (1..5) contains 3 %}x{% endif %}`, "ranges (a..b) are not allowed"},
		{"unknown tag", `{% echo name %}`, `unknown tag "echo" (allowed: assign, capture, case, comment, if, raw, unless)`},
		{"unknown block", `{% liquid %}x{% endliquid %}`, `unknown tag "liquid"`},
		{"unknown variable", `Hi {{ nam }}`, `unknown variable "nam" (declared: name); did you mean "name"?`},
		{"unknown in if", `{% if vip %}x{% endif %}{{ name }}`, `unknown variable "vip"`},
		{"unknown in filter arg", `{{ name | default: fallback }}`, `unknown variable "fallback"`},
		{"unknown in index", `{{ name[idx] }}`, `unknown variable "idx"`},
		{"unknown filter", `{{ name | shout }}`, `unknown filter "shout"`},
		{"refused filter", `{{ name | inspect }}`, `filter "inspect" is not allowed`},
		{"arity", `{{ name | replace: "a" }}`, `filter "replace" takes 2 argument(s), got 1`},
		{"arity none", `{{ name | upcase: 1 }}`, `filter "upcase" takes 0 argument(s), got 1`},
		{"date zone", `{{ name | date: "%Y", "Nowhere/City" }}`, `unknown time zone "Nowhere/City"`},
		{"date zone path", `{{ name | date: "%Y", "../../../etc/passwd" }}`, `unknown time zone`},
		{"date width", `{{ name | date: "%1000Y" }}`, `date format width 1000 is too large`},
		{"unterminated object", `Hi {{ name`, `unterminated "{{"`},
		{"unterminated tag", `Hi {% if name`, `unterminated "{%"`},
		{"unterminated block", `{% if name %}x`, `unterminated "if" block`},
		{"else not last", `{% if name %}a{% else %}b{% elsif name %}c{% endif %}`, `else must be the last branch`},
		{"syntax", `{{ name | }}`, `syntax error`},
		{"int overflow", `{% if name == "x" %}{{ 99999999999999999999 }}{% endif %}`, `number 99999999999999999999 is out of range`},
		{"float overflow", `{{ 1` + strings.Repeat("9", 400) + `.5 }}`, `is out of range`},
		{"capture name", `{% capture "x" %}a{% endcapture %}{{ name }}`, `capture needs a variable name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := textTemplate(t, tc.body, str("name"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("compile %q: got %v, want an error containing %q", tc.body, err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "body" {
				t.Fatalf("error %v: want a *FieldError on field body", err)
			}
		})
	}
}

func TestAllowedLiquid(t *testing.T) {
	vars := []Variable{
		str("name"),
		{Name: "points", Type: TypeNumber, Example: int64(5)},
		{Name: "vip", Type: TypeBool, Default: false},
		{Name: "when", Type: TypeDate, Example: "2025-01-01T00:00:00Z"},
		{Name: "full_name", Type: TypeString, Example: "a b"},
	}
	for _, tc := range []struct {
		body string
		vars map[string]any
		want string
	}{
		{`Hi {{ name | default: "there" }}`, nil, "Hi there"},
		{`Hi {{ name | default: "there" }}`, map[string]any{"name": ""}, "Hi there"},
		{`Hi {{ name | capitalize }}`, map[string]any{"name": "éMILE dupont"}, "Hi Émile dupont"},
		{`{{ name | upcase }} {{ name | downcase }}`, map[string]any{"name": "Ana"}, "ANA ana"},
		{`{{ name | truncate: 8 }}`, map[string]any{"name": "Wonderful day"}, "Wonde..."},
		{`{{ name | truncate: 8, "…" }}`, map[string]any{"name": "Wonderful day"}, "Wonderf…"},
		{`{{ name | truncate: 100 }}`, map[string]any{"name": "short"}, "short"},
		{`{{ name | truncatewords: 2 }}`, map[string]any{"name": "one two three"}, "one two..."},
		{`[{{ name | strip }}]`, map[string]any{"name": "  x  "}, "[x]"},
		{`{{ name | replace: "a", "o" | replace_first: "o", "u" }}`, map[string]any{"name": "banana"}, "bunono"},
		{`{{ name | remove: "-" }}`, map[string]any{"name": "a-b-c"}, "abc"},
		{`{{ name | append: "!" | prepend: "¡" }}`, map[string]any{"name": "hola"}, "¡hola!"},
		{`{{ name | slice: 1, 3 }}|{{ name | slice: -2 }}|{{ name | slice: 99 }}.`, map[string]any{"name": "Zoë Li"}, "oë |L|."},
		{`{{ full_name | split: " " | first }}.{{ full_name | split: " " | last | first }}.`, map[string]any{"full_name": "Ana Maria Silva"}, "Ana.S."},
		{`{{ full_name | split: " " | join: "-" }} {{ full_name | size }}`, map[string]any{"full_name": "a b c"}, "a-b-c 5"},
		{`{{ name | url_encode }}`, map[string]any{"name": "a b/c"}, "a+b%2Fc"},
		{`{{ points | plus: 1 }} {{ points | minus: 10 }} {{ points | times: 3 }} {{ points | divided_by: 2 }} {{ points | modulo: 3 }}`, map[string]any{"points": 7}, "8 -3 21 3 1"},
		{`{{ points | divided_by: 2.0 }} {{ points | times: 1.5 }}`, map[string]any{"points": 7}, "3.5 10.5"},
		{`{{ points | round: 2 }} {{ points | ceil }} {{ points | floor }} {{ points | abs }}`, map[string]any{"points": -2.345}, "-2.35 -2 -3 2.345"},
		{`{{ points | at_least: 10 }} {{ points | at_most: 3 }}`, map[string]any{"points": 5}, "10 3"},
		{`{{ points | format_number: 2 }} {{ points | number_with_delimiter }}`, map[string]any{"points": 1234567.891}, "1,234,567.89 1,234,567.891"},
		{`{{ points | format_number: 0, ".", "," }}`, map[string]any{"points": "9999999"}, "9.999.999"},
		{`{{ when | date: "%Y-%m-%d %H:%M %Z", "Asia/Bangkok" }}`, map[string]any{"when": "2025-03-01T20:30:00Z"}, "2025-03-02 03:30 +07"},
		{`{{ when | date: "%b %e, %l:%M %p", "America/New_York" }}`, map[string]any{"when": "2025-07-04 18:00"}, "Jul  4,  6:00 PM"},
		{`{{ when | date: "%d/%m/%Y" }}`, map[string]any{"when": int64(0)}, "01/01/1970"},
		{`{{ when | date: "%H:%M" }}`, map[string]any{"when": time.Date(2025, 1, 2, 3, 4, 0, 0, time.UTC)}, "03:04"},
		{`{% if vip %}VIP{% elsif points > 3 %}many{% else %}few{% endif %}`, map[string]any{"points": 4}, "many"},
		{`{% unless vip %}regular{% endunless %}`, map[string]any{"vip": "false"}, "regular"},
		{`{% case name %}{% when "a", "b" %}AB{% when "c" %}C{% else %}other{% endcase %}`, map[string]any{"name": "b"}, "AB"},
		{`{% assign greeting = "Hello " | append: name %}{{ greeting }}`, map[string]any{"name": "Ana"}, "Hello Ana"},
		{`{% capture g %}Hi {{ name }}{% endcapture %}{{ g | upcase }}`, map[string]any{"name": "Ana"}, "HI ANA"},
		{`{% comment %}{% include "x" %}{{ nope }}{% endcomment %}ok`, nil, "ok"},
		{`{% raw %}{{ name }}{% endraw %}`, nil, "{{ name }}"},
		{`{{ name.size }} {% if name contains "n" %}has n{% endif %}`, map[string]any{"name": "Ana"}, "3 has n"},
		{"  {{- name -}}  !", map[string]any{"name": "x"}, "x!"},
		{`{{ points }} {{ vip }}`, map[string]any{"points": uint32(7), "vip": true}, "7 true"},
		{`{{ name }}`, map[string]any{"name": 42}, "42"},
	} {
		c := mustText(t, tc.body, vars...)
		r, err := c.Render("c", 1, tc.vars)
		if err != nil {
			t.Errorf("render %q with %v: %v", tc.body, tc.vars, err)
			continue
		}
		if r.Text != tc.want {
			t.Errorf("render %q with %v = %q, want %q", tc.body, tc.vars, r.Text, tc.want)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	vars := []Variable{
		str("name"),
		{Name: "points", Type: TypeNumber, Example: int64(5)},
		{Name: "when", Type: TypeDate, Example: "2025-01-01T00:00:00Z"},
		{Name: "boom", Type: TypeBool, Default: false},
	}
	// Doubling a string with assign or capture, or a replace that inserts at every
	// character, must stop at MaxValueBytes instead of eating the worker's memory.
	double := `{% assign s = name %}` + strings.Repeat(`{% assign s = s | append: s %}`, 40) + `{{ s | size }}`
	capture := `{% assign s = name %}` + strings.Repeat(`{% capture s %}{{ s }}{{ s }}{% endcapture %}`, 40) + `{{ s | size }}`
	for _, tc := range []struct {
		name string
		body string
		vars map[string]any
		want error
		msg  string
	}{
		{"append doubling", `{% if boom %}` + double + `{% endif %}x`, map[string]any{"boom": true, "name": "ab"}, ErrTooLong, "value longer than"},
		{"capture doubling", `{% if boom %}` + capture + `{% endif %}x`, map[string]any{"boom": true, "name": "ab"}, ErrTooLong, "value longer than"},
		{"replace blowup", `{{ name | replace: "", name }}`, map[string]any{"name": strings.Repeat("a", 1000)}, ErrTooLong, ""},
		{"output bound", `{% if boom %}{% assign s = name | append: name %}{{ s }}{{ s }}{{ s }}{{ s }}{% endif %}x`, map[string]any{"boom": true, "name": strings.Repeat("é", 16000)}, ErrTooLong, "output passed"},
		{"text limit", `{{ name }}`, map[string]any{"name": strings.Repeat("a", MaxTextBody+1)}, ErrTooLong, "4097 characters; WhatsApp allows 4096"},
		{"empty", `{{ name }}`, map[string]any{"name": "  "}, ErrEmpty, "variables: name"},
		// (behind "boom": with the example values these fail at parse time, see TestExamplesCheckedAtParse)
		{"division by zero", `{% if boom %}{{ points | divided_by: 0 }}{% endif %}x`, map[string]any{"boom": true, "points": 1}, ErrLiquid, `filter "divided_by": division by zero`},
		{"not a number", `{% if boom %}{{ name | plus: 1 }}{% endif %}x`, map[string]any{"boom": true, "name": "abc"}, ErrLiquid, `"abc" is not a number`},
		{"date now", `{% if boom %}{{ name | date: "%Y" }}{% endif %}x`, map[string]any{"boom": true, "name": "now"}, ErrLiquid, "renders must be reproducible"},
		{"bad zone at render", `{% if boom %}{{ when | date: "%Y", name }}{% endif %}x`, map[string]any{"boom": true, "name": "Local", "when": 0}, ErrLiquid, "unknown time zone"},
		{"struct refused", `{{ name }}`, map[string]any{"name": struct{ X string }{"secret"}}, ErrBadVariable, "unsupported type"},
		{"map refused", `{{ name }}`, map[string]any{"name": map[string]any{"a": 1}}, ErrBadVariable, "unsupported type"},
		{"pointer refused", `{{ name }}`, map[string]any{"name": new(string)}, ErrBadVariable, "unsupported type"},
		{"huge value", `{{ name }}`, map[string]any{"name": strings.Repeat("a", MaxValueBytes+1)}, ErrBadVariable, ""},
		{"bad utf8", `{{ name }}`, map[string]any{"name": "\xff"}, ErrBadVariable, "UTF-8"},
		{"number type", `{{ points }}`, map[string]any{"points": "12abc"}, ErrBadVariable, `"points"`},
		{"nan", `{{ points }}`, map[string]any{"points": 0.0 / zero()}, ErrBadVariable, "not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustText(t, tc.body, vars...)
			_, err := c.Render("c", 1, tc.vars)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.msg)
			}
			var re *RenderError
			if !errors.As(err, &re) || re.Reason() == "internal" {
				t.Fatalf("got %#v, want a *RenderError with a reason", err)
			}
		})
	}
}

func zero() float64 { return 0 }

func TestVariablesOnlyDeclaredAreVisible(t *testing.T) {
	// an undeclared value passed in cannot be reached, even through assign tricks
	c := mustText(t, `{% assign x = name %}{{ x }}`, str("name"))
	r, err := c.Render("c", 1, map[string]any{"name": "ok", "secret": "leak"})
	if err != nil || r.Text != "ok" {
		t.Fatalf("got %q, %v", r.Text, err)
	}
	if _, err := textTemplate(t, `{{ secret }}`, str("name")); err == nil || !strings.Contains(err.Error(), `unknown variable "secret"`) {
		t.Fatalf("undeclared variable compiled: %v", err)
	}
	// assign never writes back into the caller's map
	vars := map[string]any{"name": "mine"}
	c = mustText(t, `{% assign name = "theirs" %}{{ name }}`, str("name"))
	if r, err := c.Render("c", 1, vars); err != nil || r.Text != "theirs" || vars["name"] != "mine" {
		t.Fatalf("got %q, %v, vars %v", r.Text, err, vars)
	}
}

func TestDefaultsAndRequired(t *testing.T) {
	c := mustText(t, `{{ greeting }} {{ name }}`,
		Variable{Name: "greeting", Type: TypeString, Default: "Hello"},
		Variable{Name: "name", Type: TypeString, Required: true, Example: "Ana"})
	r, err := c.Render("c", 1, map[string]any{"name": "Bo"})
	if err != nil || r.Text != "Hello Bo" {
		t.Fatalf("got %q, %v", r.Text, err)
	}
	for _, vars := range []map[string]any{nil, {"name": nil}, {"name": ""}} {
		_, err := c.Render("c", 1, vars)
		var re *RenderError
		if !errors.As(err, &re) || !errors.Is(err, ErrMissingVariable) || re.Field != "variables.name" || re.Reason() != "missing_variable" {
			t.Fatalf("vars %v: got %v", vars, err)
		}
	}
}

func TestExamplesCheckedAtParse(t *testing.T) {
	vars := []Variable{
		{Name: "name", Type: TypeString, Example: "Ana"},
		{Name: "points", Type: TypeNumber, Default: int64(0)},
		{Name: "zone", Type: TypeString},
	}
	for _, tc := range []struct{ body, want string }{
		{`{{ points | divided_by: 0 }}`, `body: with the example values (points=0): liquid error: filter "divided_by": division by zero`},
		{`{{ name | plus: 1 }}`, `body: with the example values (name="Ana"): liquid error: filter "plus": "Ana" is not a number`},
		{`{{ points | date: "%Y", zone }}`, `unknown time zone "zone"`},
		{`{% if points > 0 %}{{ name }}{% endif %}`, `body: with the example values (points=0, name="Ana"): renders empty (variables: points, name): WhatsApp rejects an empty message`},
	} {
		_, err := textTemplate(t, tc.body, vars...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("compile %q: got %v, want %q", tc.body, err, tc.want)
		}
	}
}
