package templates

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
)

// Where Herald departs from Shopify on purpose (numbers.go), and the values the new
// integer and float results meet downstream: Herald's own filters, tags, comparisons.
// Each case runs on both paths.
func TestHeraldNumbers(t *testing.T) {
	vars := []Variable{
		{Name: "x", Type: TypeNumber, Example: int64(1)},
		{Name: "y", Type: TypeNumber, Example: int64(1)},
		{Name: "s", Type: TypeString, Example: "1"},
	}
	for _, tc := range []struct {
		name string
		src  string
		vals map[string]any
		want string // or the error's text
	}{
		{"not a number", `{{ s | plus: 1 }}`, map[string]any{"s": "abc"}, `filter "plus": "abc" is not a number`},
		{"exponent string", `{{ s | plus: 1 }}`, map[string]any{"s": "1e3"}, `"1e3" is not a number`},
		{"signed decimal string", `{{ s | times: 2 }}`, map[string]any{"s": "+1.5"}, `"+1.5" is not a number`},
		{"digits past any float", `{{ s | plus: 1 }}`, map[string]any{"s": strings.Repeat("9", 400)}, `"99999`},
		{"empty string", `{{ s | minus: 1 }}`, map[string]any{"s": ""}, `"" is not a number`},
		{"spaces and sign", `{{ s | plus: 1 }}`, map[string]any{"s": " +41 "}, `42`},
		{"float division by zero", `{{ x | divided_by: y }}`, map[string]any{"x": 1.5, "y": 0.0}, `filter "divided_by": division by zero`},
		{"float modulo by zero", `{{ x | modulo: y }}`, map[string]any{"x": 1, "y": 0.0}, `filter "modulo": division by zero`},
		{"float out of range", `{{ x | times: y }}`, map[string]any{"x": 1e200, "y": 1e200}, `filter "times": the result is out of range`},
		{"integer past int64", `{{ x | plus: y }}`, map[string]any{"x": math.MaxInt64, "y": 1}, `9.223372036854776e+18`},
		{"integer product past int64", `{{ x | times: y }}`, map[string]any{"x": math.MinInt64, "y": -1}, `9.223372036854776e+18`},
		{"huge float keeps its exact decimal", `{{ x | modulo: 7 }}`, map[string]any{"x": 1e300}, `1.0`},
		{"number locale", `{{ x | times: 1.5 | number: "de_DE" }}`, map[string]any{"x": 823045}, `1.234.567,50`},
		{"number integer", `{{ x | divided_by: 2 | number: "de_DE" }}`, map[string]any{"x": 2469135}, `1.234.567`},
		{"currency", `{{ x | times: 0.97 | currency: "EUR", "de_DE" }}`, map[string]any{"x": 100}, `97,00 €`},
		{"format_number", `{{ x | divided_by: 3.0 | format_number: 2 }}`, map[string]any{"x": 10}, `3.33`},
		{"number_with_delimiter", `{{ x | plus: 0.5 | number_with_delimiter }}`, map[string]any{"x": 1234}, `1,234.5`},
		{"date from a float", `{{ x | plus: 0.5 | date: "%Y-%m-%d" }}`, map[string]any{"x": 86400}, `1970-01-02`},
		{"default float literal", `{{ s | default: 3.0 }}`, map[string]any{"s": ""}, `3.0`},
		{"assign float literal", `{% assign z = 2.0 %}{{ z }} {{ x | plus: z }}`, map[string]any{"x": 1}, `2.0 3.0`},
		{"compare a float", `[{% if x == 3 %}eq{% endif %}{% if x > 2.5 %} gt{% endif %}{% case x %}{% when 3 %} three{% endcase %}]`, map[string]any{"x": 3.0}, `[eq gt three]`},
		{"append a float", `{{ s | append: x }}`, map[string]any{"s": "v", "x": 2.0}, `v2.0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustText(t, tc.src, vars...)
			slow := *c
			slow.slowOnly = true
			for name, p := range map[string]*Compiled{"fast": c, "osteele": &slow} {
				r, err := p.Render("c", 1, tc.vals)
				got := r.Text
				if err != nil {
					got = err.Error()
				}
				if got != tc.want && (err == nil || !strings.Contains(got, tc.want)) {
					t.Errorf("%s: %s = %q, want %q", name, tc.src, got, tc.want)
				}
			}
		})
	}
}

// FuzzDecimal holds the int64 decimal arithmetic to exact rational arithmetic rounded
// once (math/big), and appendRubyFloat to reading back the same float.
func FuzzDecimal(f *testing.F) {
	for _, p := range [][2]float64{
		{0.1, 0.2}, {183.357, 12}, {0.0725, 100}, {-11.5, 4}, {1e300, 7}, {1e-300, 0.7},
		{2.675, 0.01}, {9007199254740993, 3}, {math.Copysign(0, -1), 5e-324}, {1.7976931348623157e308, 0.5},
	} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b float64) {
		if math.IsInf(a, 0) || math.IsNaN(a) || math.IsInf(b, 0) || math.IsNaN(b) {
			return
		}
		for _, v := range []float64{a, b} {
			s := appendRubyFloat(nil, v)
			if back, err := strconv.ParseFloat(string(s), 64); err != nil || back != v {
				t.Fatalf("%v prints as %s, which reads back as %v (%v)", v, s, back, err)
			}
			if d := decimalOf(v); d.float() != v || d.rat().Cmp(shortestDecimal(v).rat()) != 0 {
				t.Fatalf("decimalOf(%v) = %v (back %v), shortest %v", v, d, d.float(), shortestDecimal(v))
			}
		}
		x, y := decimalOf(a), decimalOf(b)
		exact := func(op func(z, a, b *big.Rat) *big.Rat) float64 { return ratOp(x, y, op) }
		check := func(name string, got, want float64) {
			if got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
				t.Fatalf("%v %s %v = %v, exact %v", a, name, b, got, want)
			}
		}
		check("+", addDec(x, y), exact((*big.Rat).Add))
		check("-", subDec(x, y), exact((*big.Rat).Sub))
		check("*", mulDec(x, y), exact((*big.Rat).Mul))
		if b != 0 {
			check("/", divDec(x, y), exact((*big.Rat).Quo))
			xr, yr := x.rat(), y.rat()
			q := new(big.Rat).Quo(xr, yr)
			fl := new(big.Int).Div(q.Num(), q.Denom())
			r, _ := new(big.Rat).Sub(xr, new(big.Rat).Mul(yr, new(big.Rat).SetInt(fl))).Float64()
			check("%", modDec(x, y), r)
		}
	})
}

// decimalOf's shortcut for short decimals (prices, rates) gives the shortest decimal's
// value.
func TestDecimalOfShortDecimals(t *testing.T) {
	for n := int64(-300000); n <= 300000; n += 997 {
		for k := range 12 {
			for _, v := range []float64{float64(n) / exactPow10[k], float64(n) * 1.1 / exactPow10[k], float64(n) * 3 / 7} {
				if d, s := decimalOf(v), shortestDecimal(v); d.rat().Cmp(s.rat()) != 0 {
					t.Fatalf("decimalOf(%v) = %v, shortest %v", v, d, s)
				}
			}
		}
	}
}
