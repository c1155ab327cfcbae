package segments

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string // want: canonical String()
	}{
		{"vip", "vip"},
		{"  VIP  ", "vip"},
		{"tag:vip", "vip"},
		{"vip and gold", "vip and gold"},
		{"vip AND gold Or silver", "(vip and gold) or silver"},
		{"vip or gold and silver", "vip or (gold and silver)"},
		{"not vip and gold", "not vip and gold"},
		{"not (vip and gold)", "not (vip and gold)"},
		{"NOT not vip", "not not vip"},
		{"vip and (country:TH or country:ID) and not churned", "vip and (country:TH or country:ID) and not churned"},
		{"country:th", "country:TH"},
		{"country in (TH, id)", "country in (TH, ID)"},
		{"country:(TH,ID)", "country in (TH, ID)"},
		{"country IN (TH)", "country:TH"},
		{"tag in (a, b-c, d_e)", "tag in (a, b-c, d_e)"},
		{"locale:TH", "locale:th"},
		{"locale in (th, pt)", "locale in (th, pt)"},
		{"tag:and or tag:country", "tag:and or tag:country"},
		{"country", "tag:country"}, // a bare field name is a tag
		{"(((vip)))", "vip"},
		{"a and (b and c)", "a and (b and c)"},
		{"(a or b) or c", "(a or b) or c"},
		{"2024-buyers", "2024-buyers"},
		{"a\tand\nb", "a and b"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			x, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := x.String(); got != tt.want {
				t.Fatalf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
			}
			y, err := Parse(x.String())
			if err != nil || y.String() != tt.want {
				t.Fatalf("canonical form %q does not re-parse to itself: %v, %v", tt.want, y, err)
			}
		})
	}
}

func TestParseStructure(t *testing.T) {
	x, err := Parse("vip and (country:TH or locale:th) and not churned")
	if err != nil {
		t.Fatal(err)
	}
	and, ok := x.(*And)
	if !ok || len(and.Xs) != 3 {
		t.Fatalf("top = %#v, want And of 3", x)
	}
	if tm, ok := and.Xs[0].(*Term); !ok || tm.Field != FieldTag || tm.Values[0] != "vip" || tm.Pos != 1 {
		t.Fatalf("first = %#v", and.Xs[0])
	}
	or, ok := and.Xs[1].(*Or)
	if !ok || len(or.Xs) != 2 || or.Xs[1].(*Term).Field != FieldLocale || or.Xs[1].(*Term).Pos != 24 {
		t.Fatalf("second = %#v", and.Xs[1])
	}
	if n, ok := and.Xs[2].(*Not); !ok || n.Pos != 39 || n.X.(*Term).Pos != 43 {
		t.Fatalf("third = %#v", and.Xs[2])
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		pos  int
		want string // substring of the message
	}{
		{"", 1, `expected tag, attribute or "(" but found end of expression`},
		{"   ", 4, `expected tag, attribute or "(" but found end of expression`},
		{"vip and (gold or )", 18, `expected tag, attribute or "(" but found ")"`},
		{"vip and", 8, "but found end of expression"},
		{"and vip", 1, `expected tag, attribute or "(" but found "and"`},
		{"vip gold", 5, `expected "and", "or" or end of expression but found "gold"`},
		{"vip)", 4, `unmatched ")"`},
		{"(vip or gold", 13, `expected ")" to close "(" at column 1 but found end of expression`},
		{"vip && gold", 5, `unexpected character '&'; combine terms with "and", "or" and "not"`},
		{`"vip"`, 1, "need no quotes"},
		{"country=TH", 8, `test an attribute with ":"`},
		{"city:Bangkok", 1, `unknown attribute "city"`},
		{"vip in (a)", 1, `unknown attribute "vip"`},
		{"country:Thailand", 9, `country "Thailand" is not a two-letter ISO 3166 code`},
		{"country:UK", 9, `unknown country code "UK" (the United Kingdom is GB)`},
		{"country:", 9, "expected a country code"},
		{"country in TH", 12, `expected "(" after "in"`},
		{"country in (TH ID)", 16, `expected "," or ")" to close "(" at column 12 but found "ID"`},
		{"country in (TH,)", 16, `expected a country code but found ")"`},
		{"country in ()", 13, "expected a country code"},
		{"locale:pt-BR", 8, "locales are indexed by language"},
		{"tag:", 5, "expected a tag"},
		{"not", 4, "but found end of expression"},
		{"vip and ลูกค้า", 9, "unexpected character 'ล'"},
		{"vip and \xff", 9, "invalid UTF-8"},
		{strings.Repeat("(", 101) + "a" + strings.Repeat(")", 101), 101, "nests deeper than 100"},
		{strings.Repeat("a", 65), 1, "longer than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := Parse(tt.in)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) = %v, want a *ParseError", tt.in, err)
			}
			if pe.Pos != tt.pos || !strings.Contains(pe.Msg, tt.want) {
				t.Fatalf("Parse(%q) = column %d %q, want column %d containing %q", tt.in, pe.Pos, pe.Msg, tt.pos, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "segment: column ") {
				t.Fatalf("Error() = %q", err.Error())
			}
		})
	}
}

func TestParseErrorFormat(t *testing.T) {
	_, err := Parse("vip and (gold or)")
	if got, want := err.Error(), `segment: column 17: expected tag, attribute or "(" but found ")"`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"vip", "vip and (country:TH or country:ID) and not churned", "country in (TH, ID)",
		"tag:and or not (a or b) and c", "locale:(th, en)", "((a))", "a and", "country:UK", "x\xff", "not not not a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		x, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Pos < 1 || pe.Msg == "" {
				t.Fatalf("Parse(%q) error %v is not a positioned *ParseError", s, err)
			}
			return
		}
		canon := x.String()
		y, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) ok as %q, which does not parse: %v", s, canon, err)
		}
		if y.String() != canon {
			t.Fatalf("Parse(%q) = %q, re-parsed as %q", s, canon, y.String())
		}
	})
}
