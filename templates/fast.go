package templates

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	e "github.com/osteele/liquid/expressions"
	"github.com/osteele/liquid/parser"
)

// The fast path. Most marketing fields are literal text with outputs like {{ name }} or
// {{ name | default: "there" | capitalize }}: a declared variable and a chain of
// filters whose arguments are literals. Compile turns such a field into a program of
// literal strings and outputs that Render runs without osteele's machinery (no
// bindings map per field, no reflection per filter call). The filters are the same Go
// functions with the same argument values osteele would pass them (its lexer makes
// integer literals int, decimals float64), and outputs are written as osteele writes
// them, so the two paths produce the same text and the same errors; FuzzFastPath checks
// it. Anything else (tags, whitespace control, properties, variables as arguments, a
// value a filter returns that is not a plain scalar) takes the osteele path.

// fastProg is a field compiled for the fast path.
type fastProg struct {
	ops []fastOp
}

// fastOp is literal text (out < 0) or an output of variable c.vars[out].
type fastOp struct {
	lit     string
	out     int
	filters []fastFilter
}

type fastFilter struct {
	name    string
	spec    filterSpec
	args    []any
	argVars []int // per argument: the index in c.vars of a variable argument, or -1
	hasVars bool
}

// errNotFast makes Render redo a field through osteele.
var errNotFast = errors.New("not on the fast path")

// compileFast returns the fast program of a field's source, or nil when the source is
// not one of the shapes the fast path runs. The source has already been compiled by
// osteele and analyzed, so it is valid Liquid.
func (c *Compiled) compileFast(src string) *fastProg {
	prog := &fastProg{}
	for _, tok := range parser.Scan(src, parser.SourceLoc{}, nil) {
		switch tok.Type {
		case parser.TextTokenType:
			prog.ops = append(prog.ops, fastOp{lit: tok.Source, out: -1})
		case parser.ObjTokenType:
			op, ok := c.parseFastOutput(tok.Args)
			if !ok {
				return nil
			}
			prog.ops = append(prog.ops, op)
		default: // tags, trim markers
			return nil
		}
	}
	return prog
}

// parseFastOutput parses: variable ( "|" filter ( ":" literal ( "," literal )* )? )*
func (c *Compiled) parseFastOutput(src string) (fastOp, bool) {
	s := fastScanner{src: src}
	name, ok := s.ident()
	if !ok {
		return fastOp{}, false
	}
	op := fastOp{out: c.varIndex(name)}
	if op.out < 0 {
		return fastOp{}, false
	}
	for {
		s.space()
		if s.eof() {
			return op, true
		}
		if !s.byte('|') {
			return fastOp{}, false
		}
		s.space()
		fname, ok := s.ident()
		if !ok || fname == "split" { // split builds lists: the osteele path writes those
			return fastOp{}, false
		}
		spec, ok := filterTable[fname]
		if !ok {
			return fastOp{}, false
		}
		f := fastFilter{name: fname, spec: spec}
		if s.byte(':') {
			for {
				s.space()
				arg := -1
				lit, ok := s.literal()
				if !ok {
					name, isIdent := s.ident()
					if !isIdent || s.i < len(s.src) && !strings.ContainsRune(" \t\n\r,|", rune(s.src[s.i])) {
						return fastOp{}, false
					}
					if arg = c.varIndex(name); arg < 0 {
						return fastOp{}, false
					}
					f.hasVars = true
				}
				f.args = append(f.args, lit)
				f.argVars = append(f.argVars, arg)
				s.space()
				if !s.byte(',') {
					break
				}
			}
		}
		if len(f.args) < spec.min || len(f.args) > spec.max {
			return fastOp{}, false
		}
		op.filters = append(op.filters, f)
	}
}

func (c *Compiled) varIndex(name string) int {
	for i := range c.vars {
		if c.vars[i].name == name {
			return i
		}
	}
	return -1
}

type fastScanner struct {
	src string
	i   int
}

func (s *fastScanner) eof() bool { return s.i >= len(s.src) }

func (s *fastScanner) space() {
	for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t' || s.src[s.i] == '\n' || s.src[s.i] == '\r') {
		s.i++
	}
}

func (s *fastScanner) byte(b byte) bool {
	if s.i < len(s.src) && s.src[s.i] == b {
		s.i++
		return true
	}
	return false
}

// ident reads an identifier as osteele's lexer does; keywords are not identifiers.
func (s *fastScanner) ident() (string, bool) {
	start := s.i
	if s.eof() || !(isAlpha(s.src[s.i]) || s.src[s.i] == '_') {
		return "", false
	}
	s.i++
	for s.i < len(s.src) && (isAlpha(s.src[s.i]) || isDigitByte(s.src[s.i]) || s.src[s.i] == '_' || s.src[s.i] == '-') {
		s.i++
	}
	s.byte('?')
	w := s.src[start:s.i]
	if reserved[w] || w == "empty" || w == "blank" {
		return "", false
	}
	return w, true
}

// literal reads a string, integer or decimal literal, or true, false or nil, followed
// by a separator.
func (s *fastScanner) literal() (any, bool) {
	start := s.i
	v, ok := s.scanLiteral()
	if !ok {
		s.i = start
	}
	return v, ok
}

func (s *fastScanner) scanLiteral() (any, bool) {
	if s.eof() {
		return nil, false
	}
	start := s.i
	var v any
	switch c := s.src[s.i]; {
	case c == '"' || c == '\'':
		j := strings.IndexByte(s.src[s.i+1:], c)
		if j < 0 {
			return nil, false
		}
		v = s.src[s.i+1 : s.i+1+j]
		s.i += j + 2
	case isDigitByte(c) || c == '-':
		s.i++
		for !s.eof() && isDigitByte(s.src[s.i]) {
			s.i++
		}
		float := false
		if s.i+1 < len(s.src) && s.src[s.i] == '.' && isDigitByte(s.src[s.i+1]) {
			float = true
			s.i++
			for !s.eof() && isDigitByte(s.src[s.i]) {
				s.i++
			}
		}
		tok := s.src[start:s.i]
		if float {
			f, err := strconv.ParseFloat(tok, 64)
			if err != nil {
				return nil, false
			}
			v = f
		} else {
			n, err := strconv.ParseInt(tok, 10, 64)
			if err != nil {
				return nil, false
			}
			v = int(n)
		}
	case isAlpha(c):
		for !s.eof() && (isAlpha(s.src[s.i]) || isDigitByte(s.src[s.i]) || s.src[s.i] == '_' || s.src[s.i] == '-' || s.src[s.i] == '?') {
			s.i++
		}
		switch s.src[start:s.i] {
		case "true":
			v = true
		case "false":
			v = false
		case "nil":
			v = nil
		default:
			return nil, false // a variable
		}
	default:
		return nil, false
	}
	if !s.eof() {
		switch s.src[s.i] {
		case ' ', '\t', '\n', '\r', ',', '|':
		default:
			return nil, false
		}
	}
	return v, true
}

func isAlpha(c byte) bool     { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigitByte(c byte) bool { return c >= '0' && c <= '9' }

// run renders the program into b with the variables' bound values.
func (p *fastProg) run(b *boundedBuffer, vals []any) error {
	for i := range p.ops {
		op := &p.ops[i]
		if op.out < 0 {
			b.WriteString(op.lit)
			continue
		}
		v := vals[op.out]
		for j := range op.filters {
			f := &op.filters[j]
			args := f.args
			if f.hasVars {
				args = make([]any, len(f.args))
				for k, a := range f.args {
					if f.argVars[k] >= 0 {
						a = vals[f.argVars[k]]
					}
					args[k] = a
				}
			}
			out, err := f.spec.apply(f.name, v, args)
			if err != nil {
				return liquidError(e.FilterError{FilterName: f.name, Err: err})
			}
			v = out
		}
		if err := writeFast(b, v); err != nil {
			return err
		}
	}
	return nil
}

// writeFast writes a value as osteele's writeObject does (fmt.Sprint for scalars, which
// calls liquidFloat's String).
func writeFast(b *boundedBuffer, v any) error {
	switch v := v.(type) {
	case nil:
	case string:
		b.WriteString(v)
	case int64:
		var buf [24]byte
		b.Write(strconv.AppendInt(buf[:0], v, 10))
	case int:
		var buf [24]byte
		b.Write(strconv.AppendInt(buf[:0], int64(v), 10))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case liquidFloat:
		var buf [32]byte
		b.Write(appendRubyFloat(buf[:0], float64(v)))
	case float64:
		var buf [32]byte
		b.Write(fmt.Append(buf[:0], v))
	default:
		return errNotFast
	}
	return nil
}
