package templates

import (
	"strconv"
	"strings"
	"testing"
)

// Where the expected outputs come from. Shopify's Liquid turns a float into
// BigDecimal(float.to_s) before arithmetic and the result back into a Float
// (lib/liquid/utils.rb to_number, standardfilters.rb apply_operation), integers stay
// Ruby Integers (floor division and modulo), and a Float prints as Ruby's Float#to_s.
const (
	docs      = "shopify.github.io/liquid/filters/"                              // + filter name: the page's own example
	stdTest   = "Shopify/liquid test/integration/standard_filter_test.rb "       // + test name
	golden    = "jg-rp/golden-liquid tests/filters/"                             // + file and case, a suite checked against Shopify's Liquid
	stdSource = "Shopify/liquid lib/liquid/standardfilters.rb "                  // + what it says
	rubyDocs  = "docs.ruby-lang.org "                                            // + method
	brief     = "Herald's brief (Shopify Liquid 5 behaviour marketers expect): " // + note
)

type shopifyCase struct {
	in     string // the input as a Liquid literal, as the docs write it: 7, 7.0, "3.5"
	filter string // what follows the input: "divided_by: 2 | round"
	want   string
	ref    string
}

var shopifyCases = []shopifyCase{
	// divided_by
	{`16`, `divided_by: 4`, `4`, docs + "divided_by"},
	{`5`, `divided_by: 3`, `1`, docs + "divided_by"},
	{`20`, `divided_by: 7`, `2`, docs + "divided_by"},
	{`20`, `divided_by: 7.0`, `2.857142857142857`, docs + "divided_by"},
	{`7`, `divided_by: 2`, `3`, brief + "integer division"},
	{`-7`, `divided_by: 2`, `-4`, brief + "floor division as Ruby's Integer#/"},
	{`13`, `divided_by: -4`, `-4`, rubyDocs + "Numeric#divmod table: 13 / -4 = -4"},
	{`14`, `divided_by: 3`, `4`, stdTest + "test_divided_by"},
	{`2.0`, `divided_by: 4`, `0.5`, stdTest + "test_divided_by"},
	{`10`, `divided_by: 2.0`, `5.0`, golden + "divided_by.json: integer value and float arg"},
	{`9.0`, `divided_by: 2`, `4.5`, golden + "divided_by.json: float value and integer arg"},
	{`"10"`, `divided_by: "2"`, `5`, golden + "divided_by.json: string value and argument"},
	{`0`, `divided_by: 1.1`, `0.0`, golden + "divided_by.json: zero divided by float"},
	{`0.3`, `divided_by: 0.1`, `3.0`, stdSource + "apply_operation: BigDecimal(\"0.3\") / BigDecimal(\"0.1\") = 3, to_f"},

	// times
	{`3`, `times: 2`, `6`, docs + "times"},
	{`24`, `times: 7`, `168`, docs + "times"},
	{`183.357`, `times: 12`, `2200.284`, docs + "times"},
	{`0.0725`, `times: 100`, `7.25`, stdTest + "test_times"},
	{`"-0.0725"`, `times: 100`, `-7.25`, stdTest + "test_times"},
	{`"-0.0725"`, `times: -100`, `7.25`, stdTest + "test_times"},
	{`5`, `times: 2.1`, `10.5`, golden + "times.json: int times float"},
	{`"5.0"`, `times: "2.1"`, `10.5`, golden + "times.json: string times string"},
	{`500`, `times: 0.97`, `485.0`, brief + "a float stays a float"},
	{`500`, `times: 0.97 | round: 2`, `485.0`, brief + "round with digits keeps a float"},

	// plus
	{`4`, `plus: 2`, `6`, docs + "plus"},
	{`16`, `plus: 4`, `20`, docs + "plus"},
	{`183.357`, `plus: 12`, `195.357`, docs + "plus"},
	{`'1'`, `plus: '1.0'`, `2.0`, stdTest + "test_plus"},
	{`10`, `plus: 2.0`, `12.0`, golden + "plus.json: integer value and float arg"},
	{`10.1`, `plus: 2.2`, `12.3`, golden + "plus.json: float value and float arg"},
	{`"10.1"`, `plus: "2.2"`, `12.3`, golden + "plus.json: string value and string arg"},
	{`10`, `plus: -2`, `8`, golden + "plus.json: integer value and negative integer arg"},
	{`4.5`, `plus: 2`, `6.5`, brief + "float operand"},
	{`"3.5"`, `plus: 1`, `4.5`, brief + "strings that look like numbers"},
	{`0.1`, `plus: 0.2`, `0.3`, stdSource + "apply_operation: BigDecimal(\"0.1\") + BigDecimal(\"0.2\"), to_f"},

	// minus
	{`4`, `minus: 2`, `2`, docs + "minus"},
	{`16`, `minus: 4`, `12`, docs + "minus"},
	{`183.357`, `minus: 12`, `171.357`, docs + "minus"},
	{`5`, `minus: 1`, `4`, stdTest + "test_minus"},
	{`'4.3'`, `minus: '2'`, `2.3`, stdTest + "test_minus"},

	// modulo
	{`3`, `modulo: 2`, `1`, docs + "modulo"},
	{`24`, `modulo: 7`, `3`, docs + "modulo"},
	{`183.357`, `modulo: 12`, `3.357`, docs + "modulo"},
	{`10`, `modulo: 2.0`, `0.0`, golden + "modulo.json: integer value and float arg"},
	{`10.1`, `modulo: 7.0`, `3.1`, golden + "modulo.json: float value and float arg"},
	{`"10"`, `modulo: "2.0"`, `0.0`, golden + "modulo.json: string value and argument"},
	{`-13`, `modulo: 4`, `3`, rubyDocs + "Integer#%: -13 % 4 = 3"},
	{`13`, `modulo: -4`, `-3`, rubyDocs + "Integer#%: 13 % -4 = -3"},
	{`-13`, `modulo: -4`, `-1`, rubyDocs + "Integer#%: -13 % -4 = -1"},
	{`-11.5`, `modulo: 4`, `0.5`, rubyDocs + "Numeric#divmod table: -11.5 % 4 = 0.5"},
	{`11.5`, `modulo: -4`, `-0.5`, rubyDocs + "Numeric#divmod table: 11.5 % -4 = -0.5"},

	// round
	{`1.2`, `round`, `1`, docs + "round"},
	{`2.7`, `round`, `3`, docs + "round"},
	{`183.357`, `round: 2`, `183.36`, docs + "round"},
	{`4.6`, `round`, `5`, stdTest + "test_round"},
	{`'4.3'`, `round`, `4`, stdTest + "test_round"},
	{`4.5612`, `round: 2`, `4.56`, stdTest + "test_round"},
	{`"5.6"`, `round`, `6`, golden + "round.json: float as a string"},
	{`5.666`, `round: "1"`, `5.7`, golden + "round.json: string argument"},
	{`"5.666666"`, `round: 2`, `5.67`, golden + "round.json: decimal places"},
	{`5`, `round`, `5`, golden + "round.json: integer"},
	{`5.666`, `round: -2`, `0`, golden + "round.json: argument is a negative"},
	{`5.666`, `round: 1.2`, `5.7`, golden + "round.json: argument is a float"},
	{`5.666`, `round: 0`, `6`, golden + "round.json: argument is a zero"},
	{`5`, `round: 2`, `5`, stdSource + "round: an Integer input rounds to itself (Integer#round)"},
	{`1250`, `round: -2`, `1300`, rubyDocs + "Integer#round: half away from zero"},
	{`2.675`, `round: 2`, `2.68`, stdSource + "round: BigDecimal(\"2.675\").round(2), half up"},
	{`-2.5`, `round`, `-3`, stdSource + "round: BigDecimal half up (away from zero), to_i"},
	{`3.0`, `round: 1`, `3.0`, stdSource + "round: a BigDecimal with digits comes back to_f"},

	// ceil, floor
	{`1.2`, `ceil`, `2`, docs + "ceil"},
	{`2.0`, `ceil`, `2`, docs + "ceil"},
	{`183.357`, `ceil`, `184`, docs + "ceil"},
	{`"3.5"`, `ceil`, `4`, docs + "ceil"},
	{`'4.3'`, `ceil`, `5`, stdTest + "test_ceil"},
	{`-5.4`, `ceil`, `-5`, golden + "ceil.json: negative float"},
	{`"-5.1"`, `ceil`, `-5`, golden + "ceil.json: negative string float"},
	{`1.2`, `floor`, `1`, docs + "floor"},
	{`2.0`, `floor`, `2`, docs + "floor"},
	{`183.357`, `floor`, `183`, docs + "floor"},
	{`"3.5"`, `floor`, `3`, docs + "floor"},
	{`'4.3'`, `floor`, `4`, stdTest + "test_floor"},
	{`-5.4`, `floor`, `-6`, rubyDocs + "Float#floor"},

	// abs
	{`-17`, `abs`, `17`, docs + "abs"},
	{`4`, `abs`, `4`, docs + "abs"},
	{`"-19.86"`, `abs`, `19.86`, docs + "abs"},
	{`'-17'`, `abs`, `17`, stdTest + "test_abs"},
	{`17.42`, `abs`, `17.42`, stdTest + "test_abs"},
	{`-17.42`, `abs`, `17.42`, stdTest + "test_abs"},
	{`'-17.42'`, `abs`, `17.42`, stdTest + "test_abs"},
	{`0`, `abs`, `0`, stdTest + "test_abs"},
	{`-3.0`, `abs`, `3.0`, golden + "abs.json (a float stays a float)"},

	// at_least, at_most
	{`4`, `at_least: 5`, `5`, docs + "at_least"},
	{`4`, `at_least: 3`, `4`, docs + "at_least"},
	{`4.5`, `at_least: 5`, `5`, stdTest + "test_at_least"},
	{`5.4`, `at_least: 8.9`, `8.9`, golden + "at_least.json: positive float < arg"},
	{`"9"`, `at_least: 8`, `9`, golden + "at_least.json: positive string > arg"},
	{`4`, `at_most: 5`, `4`, docs + "at_most"},
	{`4`, `at_most: 3`, `3`, docs + "at_most"},
	{`5`, `at_most: 4`, `4`, stdTest + "test_at_most"},
	{`4.5`, `at_most: 5`, `4.5`, stdTest + "test_at_most"},
	{`3.0`, `at_most: 5`, `3.0`, stdSource + "at_most: a BigDecimal result comes back to_f"},

	// escape, escape_once
	{`"Have you read 'James & the Giant Peach'?"`, `escape`, `Have you read &#39;James &amp; the Giant Peach&#39;?`, docs + "escape"},
	{`"Tetsuro Takara"`, `escape`, `Tetsuro Takara`, docs + "escape"},
	{`'<strong>'`, `escape`, `&lt;strong&gt;`, stdTest + "test_escape"},
	{`1`, `escape`, `1`, stdTest + "test_escape"},
	{`'Say "hi" & <go>'`, `escape`, `Say &quot;hi&quot; &amp; &lt;go&gt;`, stdSource + "HTML_ESCAPE (CGI.escapeHTML)"},
	{`"1 < 2 & 3"`, `escape_once`, `1 &lt; 2 &amp; 3`, docs + "escape_once"},
	{`"1 &lt; 2 &amp; 3"`, `escape_once`, `1 &lt; 2 &amp; 3`, docs + "escape_once"},
	{`'&lt;strong&gt;Hulk</strong>'`, `escape_once`, `&lt;strong&gt;Hulk&lt;/strong&gt;`, stdTest + "test_escape_once"},
	{`"&lt;p&gt;test&lt;/p&gt;<p>test</p>"`, `escape_once`, `&lt;p&gt;test&lt;/p&gt;&lt;p&gt;test&lt;/p&gt;`, golden + "escape_once.json: mixed safe and markup"},
	{`'It&#39;s "5" &copy; & &#x27;'`, `escape_once`, `It&#39;s &quot;5&quot; &copy; &amp; &amp;#x27;`, stdSource + "HTML_ESCAPE_ONCE_REGEXP: &name; and &#digits; are kept"},
}

// TestShopifyFilters renders every case three ways and wants Shopify's output from
// each: the input bound to a variable on the fast path, the same template through
// osteele, and the literal as the docs write it (osteele: the fast path starts from a
// variable).
func TestShopifyFilters(t *testing.T) {
	for _, tc := range shopifyCases {
		t.Run(tc.in+"|"+tc.filter, func(t *testing.T) {
			val, typ := literalValue(t, tc.in)
			c := mustText(t, `{{ x | `+tc.filter+` }}`, Variable{Name: "x", Type: typ, Example: val})
			if c.variants[0].text.fast == nil {
				t.Fatalf("{{ x | %s }} is not on the fast path", tc.filter)
			}
			slow := *c
			slow.slowOnly = true
			lit := mustText(t, `{{ `+tc.in+` | `+tc.filter+` }}`)
			for _, p := range []struct {
				name string
				c    *Compiled
			}{{"fast", c}, {"osteele", &slow}, {"osteele literal", lit}} {
				r, err := p.c.Render("c", 1, map[string]any{"x": val})
				if err != nil {
					t.Errorf("%s: %v (want %q, from %s)", p.name, err, tc.want, tc.ref)
					continue
				}
				if r.Text != tc.want {
					t.Errorf("%s: {{ %s | %s }} = %q, want %q (from %s)", p.name, tc.in, tc.filter, r.Text, tc.want, tc.ref)
				}
			}
		})
	}
}

// literalValue is the value a Liquid literal binds to as a variable: a string, an
// integer or a float.
func literalValue(t *testing.T, lit string) (any, string) {
	t.Helper()
	if lit[0] == '"' || lit[0] == '\'' {
		return lit[1 : len(lit)-1], TypeString
	}
	if strings.Contains(lit, ".") {
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			t.Fatal(err)
		}
		return f, TypeNumber
	}
	i, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return i, TypeNumber
}

// A float prints as Ruby's Float#to_s prints it, on both paths, whether it comes from a
// variable or a filter.
func TestFloatPrinting(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
		ref  string
	}{
		{0.30000000000000004, "0.30000000000000004", brief + "0.1 + 0.2 (a float holding that sum)"},
		{3, "3.0", golden + "divided_by.json: render ({{ 5.0 }} is 5.0)"},
		{3.14, "3.14", rubyDocs + "Float#to_s"},
		{0.00001, "1.0e-05", rubyDocs + "Float#to_s"},
		{1e14, "100000000000000.0", rubyDocs + "Float#to_s"},
		{1e19, "1.0e+19", rubyDocs + "Float#to_s"},
		{1.644631821843879e+50, "1.644631821843879e+50", rubyDocs + "Float#to_s: (10.1**50).to_s"},
		{1e20, "1.0e+20", brief + "1e20"},
		{1e15, "1.0e+15", rubyDocs + "Float#to_s (flo_to_s: fixed up to DBL_DIG = 15 integer digits)"},
		{123456789.125, "123456789.125", rubyDocs + "Float#to_s (flo_to_s: digits past the point print fixed)"},
		{0.0001, "0.0001", rubyDocs + "Float#to_s (flo_to_s: fixed down to 0.0001)"},
		{-0.5, "-0.5", rubyDocs + "Float#to_s"},
		{-2.5e-7, "-2.5e-07", rubyDocs + "Float#to_s (flo_to_s: two-digit exponent)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for _, src := range []string{`{{ x }}`, `{{ x | plus: 0 }}`, `{{ x | append: "" }}`} {
				c := mustText(t, src, Variable{Name: "x", Type: TypeNumber, Example: tc.f})
				slow := *c
				slow.slowOnly = true
				for name, p := range map[string]*Compiled{"fast": c, "osteele": &slow} {
					r, err := p.Render("c", 1, map[string]any{"x": tc.f})
					if err != nil || r.Text != tc.want {
						t.Errorf("%s %s with x=%v: %q, %v; want %q (from %s)", name, src, tc.f, r.Text, err, tc.want, tc.ref)
					}
				}
			}
		})
	}
}
