package segments

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// Limits on segment expressions, so a pasted or generated expression cannot exhaust
// the parser.
const (
	maxExprLen   = 64 << 10 // bytes
	maxExprDepth = 100      // nesting of parentheses and "not"
	maxNameLen   = 64       // tag and attribute value length
)

// Indexed fields a term can test. Tags are the default field: a bare name is a tag.
const (
	FieldTag     = "tag"
	FieldCountry = "country"
	FieldLocale  = "locale"
)

// Expr is a parsed segment expression: a *Term, *Not, *And or *Or. String returns the
// canonical form, which parses back to the same expression.
type Expr interface {
	String() string
	isExpr()
}

// Term matches contacts having any of Values in Field: a tag (FieldTag), a country
// (ISO 3166 region, upper case) or a locale language (lower case). Pos is the 1-based
// column where the term starts.
type Term struct {
	Field  string
	Values []string
	Pos    int
}

// Not matches live contacts that X does not match.
type Not struct {
	X   Expr
	Pos int
}

// And matches contacts that every one of Xs matches (len(Xs) >= 2).
type And struct{ Xs []Expr }

// Or matches contacts that any of Xs matches (len(Xs) >= 2).
type Or struct{ Xs []Expr }

func (*Term) isExpr() {}
func (*Not) isExpr()  {}
func (*And) isExpr()  {}
func (*Or) isExpr()   {}

func (t *Term) String() string {
	if len(t.Values) == 1 {
		v := t.Values[0]
		if t.Field == FieldTag && !reservedWord(v) {
			return v
		}
		return t.Field + ":" + v
	}
	return t.Field + " in (" + strings.Join(t.Values, ", ") + ")"
}

func (n *Not) String() string { return "not " + operand(n.X) }

func (a *And) String() string { return join(a.Xs, " and ") }

func (o *Or) String() string { return join(o.Xs, " or ") }

func join(xs []Expr, sep string) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(operand(x))
	}
	return b.String()
}

// operand parenthesizes a composite child so the canonical form keeps the tree's shape.
func operand(x Expr) string {
	switch x.(type) {
	case *And, *Or:
		return "(" + x.String() + ")"
	}
	return x.String()
}

// reservedWord reports whether a bare name would not parse as a tag: a keyword or the
// name of a field (which the canonical form writes as tag:NAME instead).
func reservedWord(s string) bool {
	switch s {
	case "and", "or", "not", "in", FieldTag, FieldCountry, FieldLocale:
		return true
	}
	return false
}

// ParseError is a syntax or validation error in a segment expression. Pos is the
// 1-based column (in characters) where the problem is.
type ParseError struct {
	Pos int
	Msg string
}

func (e *ParseError) Error() string { return fmt.Sprintf("segment: column %d: %s", e.Pos, e.Msg) }

type tokKind int

const (
	tEOF tokKind = iota
	tName
	tLParen
	tRParen
	tComma
	tColon
)

type token struct {
	kind tokKind
	text string // names as written; lower-cased copy in low
	low  string
	pos  int // 1-based column
}

func (t token) describe() string {
	if t.kind == tEOF {
		return "end of expression"
	}
	return fmt.Sprintf("%q", t.text)
}

func isNameByte(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func lex(s string) ([]token, error) {
	var toks []token
	col := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		col++
		switch {
		case r == utf8.RuneError && size <= 1:
			return nil, &ParseError{col, "invalid UTF-8 in the expression"}
		case unicode.IsSpace(r):
			i += size
		case r == '(' || r == ')' || r == ',' || r == ':':
			k := tLParen
			switch r {
			case ')':
				k = tRParen
			case ',':
				k = tComma
			case ':':
				k = tColon
			}
			toks = append(toks, token{kind: k, text: string(r), pos: col})
			i += size
		case isNameByte(r):
			j := i
			for j < len(s) && isNameByte(rune(s[j])) {
				j++
			}
			toks = append(toks, token{kind: tName, text: s[i:j], low: strings.ToLower(s[i:j]), pos: col})
			col += j - i - 1
			i = j
		default:
			msg := fmt.Sprintf("unexpected character %q", r)
			switch r {
			case '&', '|', '!':
				msg += `; combine terms with "and", "or" and "not"`
			case '"', '\'', '`':
				msg += "; tags and values need no quotes"
			case '=':
				msg += `; test an attribute with ":", as in country:TH`
			default:
				msg += `; tags use letters a-z, digits, "_" and "-"`
			}
			return nil, &ParseError{col, msg}
		}
	}
	toks = append(toks, token{kind: tEOF, pos: col + 1})
	return toks, nil
}

type parser struct {
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) keyword(t token, kw string) bool { return t.kind == tName && t.low == kw }

// Parse parses a segment expression; see the package documentation for the grammar.
// Errors are *ParseError values carrying the column of the problem.
func Parse(expr string) (Expr, error) {
	if len(expr) > maxExprLen {
		return nil, &ParseError{1, fmt.Sprintf("expression is longer than %d bytes; use tags to name large groups", maxExprLen)}
	}
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	x, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		msg := fmt.Sprintf(`expected "and", "or" or end of expression but found %s`, t.describe())
		if t.kind == tRParen {
			msg = `unmatched ")"`
		} else if t.kind == tName {
			msg += ` (join terms with "and" or "or")`
		}
		return nil, &ParseError{t.pos, msg}
	}
	return x, nil
}

func (p *parser) or() (Expr, error) {
	x, err := p.and()
	if err != nil {
		return nil, err
	}
	xs := []Expr{x}
	for p.keyword(p.peek(), "or") {
		p.next()
		y, err := p.and()
		if err != nil {
			return nil, err
		}
		xs = append(xs, y)
	}
	if len(xs) == 1 {
		return x, nil
	}
	return &Or{xs}, nil
}

func (p *parser) and() (Expr, error) {
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	xs := []Expr{x}
	for p.keyword(p.peek(), "and") {
		p.next()
		y, err := p.unary()
		if err != nil {
			return nil, err
		}
		xs = append(xs, y)
	}
	if len(xs) == 1 {
		return x, nil
	}
	return &And{xs}, nil
}

func (p *parser) enter(pos int) error {
	p.depth++
	if p.depth > maxExprDepth {
		return &ParseError{pos, fmt.Sprintf("expression nests deeper than %d levels", maxExprDepth)}
	}
	return nil
}

func (p *parser) unary() (Expr, error) {
	t := p.peek()
	switch {
	case p.keyword(t, "not"):
		p.next()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		x, err := p.unary()
		p.depth--
		if err != nil {
			return nil, err
		}
		return &Not{X: x, Pos: t.pos}, nil
	case t.kind == tLParen:
		p.next()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		x, err := p.or()
		p.depth--
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, &ParseError{c.pos, fmt.Sprintf(`expected ")" to close "(" at column %d but found %s`, t.pos, c.describe())}
		}
		return x, nil
	case t.kind == tName && !p.keyword(t, "and") && !p.keyword(t, "or") && !p.keyword(t, "in"):
		return p.term()
	}
	return nil, &ParseError{t.pos, fmt.Sprintf(`expected tag, attribute or "(" but found %s`, t.describe())}
}

func (p *parser) term() (Expr, error) {
	name := p.next()
	after := p.peek()
	if after.kind != tColon && !p.keyword(after, "in") {
		v, err := checkValue(FieldTag, name)
		if err != nil {
			return nil, err
		}
		return &Term{Field: FieldTag, Values: []string{v}, Pos: name.pos}, nil
	}
	field := name.low
	switch field {
	case FieldTag, FieldCountry, FieldLocale:
	default:
		return nil, &ParseError{name.pos, fmt.Sprintf(`unknown attribute %q; indexed attributes are country and locale, and tags are written bare (vip) or as tag:vip`, name.text)}
	}
	p.next() // ':' or 'in'
	list := after.kind != tColon
	if p.peek().kind == tLParen {
		list = true
	}
	if !list {
		vt := p.next()
		if vt.kind != tName {
			return nil, &ParseError{vt.pos, fmt.Sprintf("expected a %s after %q but found %s", valueNoun(field), name.text+":", vt.describe())}
		}
		v, err := checkValue(field, vt)
		if err != nil {
			return nil, err
		}
		return &Term{Field: field, Values: []string{v}, Pos: name.pos}, nil
	}
	open := p.next()
	if open.kind != tLParen {
		return nil, &ParseError{open.pos, fmt.Sprintf(`expected "(" after "in" but found %s, as in %s in (a, b)`, open.describe(), field)}
	}
	var vals []string
	for {
		vt := p.next()
		if vt.kind != tName {
			return nil, &ParseError{vt.pos, fmt.Sprintf("expected a %s but found %s", valueNoun(field), vt.describe())}
		}
		v, err := checkValue(field, vt)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		sep := p.next()
		if sep.kind == tRParen {
			break
		}
		if sep.kind != tComma {
			return nil, &ParseError{sep.pos, fmt.Sprintf(`expected "," or ")" to close "(" at column %d but found %s`, open.pos, sep.describe())}
		}
	}
	return &Term{Field: field, Values: vals, Pos: name.pos}, nil
}

func valueNoun(field string) string {
	switch field {
	case FieldCountry:
		return "country code"
	case FieldLocale:
		return "language code"
	}
	return "tag"
}

// checkValue validates and normalizes one value of a term.
func checkValue(field string, t token) (string, error) {
	switch field {
	case FieldCountry:
		v := strings.ToUpper(t.text)
		if len(v) != 2 || !isAlpha(v) {
			return "", &ParseError{t.pos, fmt.Sprintf("country %q is not a two-letter ISO 3166 code such as TH", t.text)}
		}
		if !knownRegion(v) {
			hint := ""
			if v == "UK" {
				hint = " (the United Kingdom is GB)"
			}
			return "", &ParseError{t.pos, fmt.Sprintf("unknown country code %q%s", t.text, hint)}
		}
		return v, nil
	case FieldLocale:
		v := t.low
		if len(v) < 2 || len(v) > 3 || !isAlpha(v) {
			return "", &ParseError{t.pos, fmt.Sprintf("locale %q: locales are indexed by language, so use a two- or three-letter code such as th or pt", t.text)}
		}
		return v, nil
	}
	if len(t.low) > maxNameLen {
		return "", &ParseError{t.pos, fmt.Sprintf("tag is longer than %d characters", maxNameLen)}
	}
	return t.low, nil
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// knownRegion reports whether cc (upper case) is a region with phone numbers.
func knownRegion(cc string) bool { return phonenumbers.GetSupportedRegions()[cc] }
