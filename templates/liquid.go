package templates

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	e "github.com/osteele/liquid/expressions"
	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/render"
)

// The hardened Liquid dialect. It is built on osteele/liquid's parser and renderer with
// a grammar of our own: the control-flow tags are re-registered here (same semantics as
// osteele's), everything that reads files or loops is refused at parse time, and the
// filters are ours (filters.go), each bounded in what it builds.

// allowedTags lists the tags message templates may use, for error messages.
var allowedTags = []string{"assign", "capture", "case", "comment", "if", "raw", "unless"}

// refusedTags explains the tags that are refused on purpose.
var refusedTags = map[string]string{
	"include":   "include is not allowed: templates cannot read files; put the text in this template",
	"render":    "render is not allowed: templates cannot read files; put the text in this template",
	"for":       "for loops are not allowed in message templates; pass the text you need as a variable",
	"tablerow":  "tablerow loops are not allowed in message templates",
	"cycle":     "cycle is not allowed: there are no loops in message templates",
	"break":     "break is not allowed: there are no loops in message templates",
	"continue":  "continue is not allowed: there are no loops in message templates",
	"increment": "increment is not allowed in message templates",
	"decrement": "decrement is not allowed in message templates",
}

// liquidConfig is the one immutable grammar and filter set all templates use.
var liquidConfig = sync.OnceValue(newLiquidConfig)

func newLiquidConfig() render.Config {
	cfg := render.NewConfig()
	for name, f := range filterTable {
		cfg.AddFilter(name, f.liquidFunc(name))
	}
	cfg.AddTag("assign", assignTag)
	cfg.AddBlock("capture").Compiler(captureCompiler)
	cfg.AddBlock("case").Clause("when").Clause("else").Compiler(caseCompiler)
	cfg.AddBlock("comment")
	cfg.AddBlock("raw")
	cfg.AddBlock("if").Clause("else").Clause("elsif").Compiler(ifCompiler(true))
	cfg.AddBlock("unless").Clause("else").Compiler(ifCompiler(false))
	for name, why := range refusedTags {
		msg := why
		switch name {
		case "for", "tablerow":
			cfg.AddBlock(name).Clause("else").Compiler(func(render.BlockNode) (func(io.Writer, render.Context) error, error) {
				return nil, errors.New(msg)
			})
		default:
			cfg.AddTag(name, func(string) (func(io.Writer, render.Context) error, error) {
				return nil, errors.New(msg)
			})
		}
	}
	return cfg
}

var (
	identRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*\??$`)
	assignRE = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_-]*\??)\s*=`)
)

func assignTag(args string) (func(io.Writer, render.Context) error, error) {
	stmt, err := e.ParseStatement(e.AssignStatementSelector, args)
	if err != nil {
		return nil, err
	}
	name, expr := stmt.Assignment.Variable, stmt.Assignment.ValueFn
	return func(_ io.Writer, ctx render.Context) error {
		v, err := ctx.Evaluate(expr)
		if err != nil {
			return err
		}
		if err := checkValue(v); err != nil {
			return err
		}
		if f, ok := v.(float64); ok {
			v = liquidFloat(f) // {% assign x = 3.0 %}{{ x }} prints 3.0
		}
		ctx.Set(name, v)
		return nil
	}, nil
}

func captureCompiler(node render.BlockNode) (func(io.Writer, render.Context) error, error) {
	name := strings.TrimSpace(node.Args)
	if !identRE.MatchString(name) {
		return nil, fmt.Errorf("capture needs a variable name, like {%% capture greeting %%}")
	}
	return func(_ io.Writer, ctx render.Context) error {
		b := boundedBuffer{max: MaxValueBytes}
		if err := ctx.RenderChildren(&b); err != nil {
			return err
		}
		if b.over {
			return errValueTooLong
		}
		ctx.Set(name, string(b.buf))
		return nil
	}, nil
}

func ifCompiler(polarity bool) render.BlockCompiler {
	return func(node render.BlockNode) (func(io.Writer, render.Context) error, error) {
		type branch struct {
			test e.Expression
			body *render.BlockNode
		}
		expr, err := e.Parse(node.Args)
		if err != nil {
			return nil, err
		}
		if !polarity {
			expr = e.Not(expr)
		}
		branches := []branch{{expr, &node}}
		for i, c := range node.Clauses {
			test := e.Constant(true)
			switch c.Name {
			case "else":
				if i != len(node.Clauses)-1 {
					return nil, fmt.Errorf("else must be the last branch of %s", node.Name)
				}
			case "elsif":
				if test, err = e.Parse(c.Args); err != nil {
					return nil, err
				}
			}
			branches = append(branches, branch{test, c})
		}
		return func(w io.Writer, ctx render.Context) error {
			for _, b := range branches {
				v, err := ctx.Evaluate(b.test)
				if err != nil {
					return err
				}
				if v != nil && v != false {
					return ctx.RenderBlock(w, b.body)
				}
			}
			return nil
		}, nil
	}
}

func caseCompiler(node render.BlockNode) (func(io.Writer, render.Context) error, error) {
	type branch struct {
		exprs []e.Expression // nil: else
		body  *render.BlockNode
	}
	expr, err := e.Parse(node.Args)
	if err != nil {
		return nil, err
	}
	var branches []branch
	for i, c := range node.Clauses {
		switch c.Name {
		case "when":
			stmt, err := e.ParseStatement(e.WhenStatementSelector, c.Args)
			if err != nil {
				return nil, err
			}
			branches = append(branches, branch{stmt.When.Exprs, c})
		default:
			if i != len(node.Clauses)-1 {
				return nil, errors.New("else must be the last branch of case")
			}
			branches = append(branches, branch{nil, c})
		}
	}
	return func(w io.Writer, ctx render.Context) error {
		sel, err := ctx.Evaluate(expr)
		if err != nil {
			return err
		}
		for _, b := range branches {
			if b.exprs == nil {
				return ctx.RenderBlock(w, b.body)
			}
			for _, x := range b.exprs {
				v, err := ctx.Evaluate(x)
				if err != nil {
					return err
				}
				if liquidEqual(sel, v) {
					return ctx.RenderBlock(w, b.body)
				}
			}
		}
		return nil
	}, nil
}

// boundedBuffer keeps at most max bytes and remembers that more were offered. It never
// returns an error: osteele's renderer panics when a final flush fails.
type boundedBuffer struct {
	buf  []byte
	max  int
	over bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if b.over {
		return len(p), nil
	}
	if len(b.buf)+len(p) > b.max {
		b.over = true
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *boundedBuffer) WriteString(s string) (int, error) {
	if b.over {
		return len(s), nil
	}
	if len(b.buf)+len(s) > b.max {
		b.over = true
		return len(s), nil
	}
	b.buf = append(b.buf, s...)
	return len(s), nil
}

// ---- static analysis ----

// problem is a Liquid error at a line of the field's source (0: unknown).
type problem struct {
	line int
	msg  string
}

// analysis is what a field's Liquid uses.
type analysis struct {
	vars     []string // declared variables referenced, in first-use order
	problems []problem
}

var reserved = map[string]bool{
	"and": true, "or": true, "contains": true, "in": true,
	"true": true, "false": true, "nil": true,
}

// analyze walks a parsed field and reports what the compiler does not: unknown
// variables (with a suggestion), unknown filters and their arity, ranges, refused or
// unknown tags, and "{{" left open.
func analyze(root parser.ASTNode, declared []string) analysis {
	a := &analyzer{declared: declared, locals: map[string]bool{}}
	a.collectLocals(root)
	a.walk(root)
	return analysis{vars: a.used, problems: a.problems}
}

type analyzer struct {
	declared []string
	locals   map[string]bool
	used     []string
	problems []problem
}

func (a *analyzer) errorf(line int, format string, args ...any) {
	a.problems = append(a.problems, problem{line, fmt.Sprintf(format, args...)})
}

func (a *analyzer) collectLocals(n parser.ASTNode) {
	switch n := n.(type) {
	case *parser.ASTSeq:
		for _, c := range n.Children {
			a.collectLocals(c)
		}
	case *parser.ASTTag:
		if n.Name == "assign" {
			if m := assignRE.FindStringSubmatch(n.Args); m != nil {
				a.locals[m[1]] = true
			}
		}
	case *parser.ASTBlock:
		if n.Name == "capture" {
			a.locals[strings.TrimSpace(n.Args)] = true
		}
		for _, c := range n.Body {
			a.collectLocals(c)
		}
		for _, c := range n.Clauses {
			a.collectLocals(c)
		}
	}
}

func (a *analyzer) walk(n parser.ASTNode) {
	switch n := n.(type) {
	case *parser.ASTSeq:
		for _, c := range n.Children {
			a.walk(c)
		}
	case *parser.ASTText:
		for _, d := range []string{"{{", "{%"} {
			if i := strings.Index(n.Source, d); i >= 0 {
				line := n.SourceLoc.LineNo + strings.Count(n.Source[:i], "\n")
				closer := map[string]string{"{{": "}}", "{%": "%}"}[d]
				a.errorf(line, "unterminated %q: close it with %q", d, closer)
				break
			}
		}
	case *parser.ASTObject:
		a.expr(n.Args, n.SourceLoc.LineNo)
	case *parser.ASTTag:
		line := n.SourceLoc.LineNo
		switch {
		case n.Name == "assign":
			m := assignRE.FindStringSubmatchIndex(n.Args)
			if m == nil {
				a.errorf(line, "assign needs a name and a value, like {%% assign greeting = \"Hi\" %%}")
				return
			}
			a.expr(n.Args[m[1]:], line)
		case refusedTags[n.Name] != "":
			a.errorf(line, "%s", refusedTags[n.Name])
		default:
			a.errorf(line, "unknown tag %q (allowed: %s)", n.Name, strings.Join(allowedTags, ", "))
		}
	case *parser.ASTBlock:
		a.block(n)
	}
}

func (a *analyzer) block(n *parser.ASTBlock) {
	line := n.SourceLoc.LineNo
	switch n.Name {
	case "if", "unless", "elsif", "case", "when":
		a.expr(n.Args, line)
	case "capture":
		if !identRE.MatchString(strings.TrimSpace(n.Args)) {
			a.errorf(line, "capture needs a variable name, like {%% capture greeting %%}")
		}
	case "else":
	default:
		if why := refusedTags[n.Name]; why != "" {
			a.errorf(line, "%s", why)
		} else {
			a.errorf(line, "unknown tag %q (allowed: %s)", n.Name, strings.Join(allowedTags, ", "))
		}
		return
	}
	for _, c := range n.Body {
		a.walk(c)
	}
	for _, c := range n.Clauses {
		a.block(c)
	}
}

// expr scans a Liquid expression the way osteele's lexer does (identifiers may contain
// '-' and end in '?'; "name:" is a filter with parameters) and checks the names in it.
// Syntax errors are left to the parser.
func (a *analyzer) expr(src string, line int) {
	const (
		tOp = iota
		tValue
		tPipe
	)
	prev := tOp
	type openFilter struct {
		name  string
		args  int
		depth int
		lits  map[int]string // argument index -> string literal
	}
	var cur *openFilter
	depth := 0
	closeFilter := func() {
		if cur != nil {
			a.checkFilter(cur.name, cur.args, cur.lits, line)
			cur = nil
		}
	}
	isIdentStart := func(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c == '-' || c >= '0' && c <= '9' }
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			j := strings.IndexByte(src[i+1:], c)
			if j < 0 {
				return // the parser reports it
			}
			if cur != nil && depth == cur.depth {
				if cur.lits == nil {
					cur.lits = map[int]string{}
				}
				cur.lits[cur.args-1] = src[i+1 : i+1+j]
			}
			i += j + 2
			prev = tValue
		case isDigit(c) || c == '-' && i+1 < len(src) && isDigit(src[i+1]):
			i++
			for i < len(src) && isDigit(src[i]) {
				i++
			}
			if i+1 < len(src) && src[i] == '.' && isDigit(src[i+1]) {
				i++
				for i < len(src) && isDigit(src[i]) {
					i++
				}
			}
			prev = tValue
		case c == '.':
			if i+1 < len(src) && src[i+1] == '.' {
				a.errorf(line, "ranges (a..b) are not allowed in message templates")
				return
			}
			i++
			for i < len(src) && isIdent(src[i]) {
				i++
			}
			if i < len(src) && src[i] == '?' {
				i++
			}
			prev = tValue
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdent(src[j]) {
				j++
			}
			if j < len(src) && src[j] == '?' {
				j++
			}
			word := src[i:j]
			withParams := j < len(src) && src[j] == ':'
			if withParams {
				j++
			}
			switch {
			case prev == tPipe:
				if withParams {
					cur = &openFilter{name: word, args: 1, depth: depth}
				} else {
					a.checkFilter(word, 0, nil, line)
				}
				prev = tOp
				i = j
				continue
			case withParams:
				// "x:" outside a filter is a syntax error the parser reports
			case word == "and" || word == "or":
				if depth == 0 {
					closeFilter()
				}
			case reserved[word]:
			default:
				a.variable(word, line)
			}
			i = j
			prev = tValue
		case c == '|':
			if depth == 0 || cur != nil && depth == cur.depth {
				closeFilter()
			}
			i++
			prev = tPipe
		case c == ',':
			if cur != nil && depth == cur.depth {
				cur.args++
			}
			i++
			prev = tOp
		case c == '(' || c == '[':
			depth++
			i++
			prev = tOp
		case c == ')' || c == ']':
			depth--
			i++
			prev = tValue
		default:
			i++
			prev = tOp
		}
	}
	closeFilter()
}

func (a *analyzer) variable(name string, line int) {
	if a.locals[name] {
		return
	}
	if slices.Contains(a.declared, name) {
		if !slices.Contains(a.used, name) {
			a.used = append(a.used, name)
		}
		return
	}
	msg := fmt.Sprintf("unknown variable %q (declared: %s)", name, declaredList(a.declared))
	switch {
	case name == "empty" || name == "blank":
		msg += fmt.Sprintf(`; %q is not supported: compare with "" instead`, name)
	case suggest(name, a.declared) != "":
		msg += fmt.Sprintf("; did you mean %q?", suggest(name, a.declared))
	default:
		msg += "; declare it under variables:"
	}
	a.errorf(line, "%s", msg)
}

func declaredList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (a *analyzer) checkFilter(name string, args int, lits map[int]string, line int) {
	f, ok := filterTable[name]
	if !ok {
		msg := fmt.Sprintf("unknown filter %q", name)
		if s := suggest(name, filterNames()); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		if why := refusedFilters[name]; why != "" {
			msg = fmt.Sprintf("filter %q is not allowed: %s", name, why)
		}
		a.errorf(line, "%s", msg)
		return
	}
	if args < f.min || args > f.max {
		want := strconv.Itoa(f.min)
		if f.max != f.min {
			want = fmt.Sprintf("%d to %d", f.min, f.max)
		}
		a.errorf(line, "filter %q takes %s argument(s), got %d", name, want, args)
		return
	}
	if f.checkLiteral != nil {
		for i, lit := range lits {
			if err := f.checkLiteral(i, lit); err != nil {
				a.errorf(line, "filter %q: %v", name, err)
			}
		}
	}
}

// suggest returns the candidate closest to name, if it is close enough to be a typo.
func suggest(name string, candidates []string) string {
	best, bestD := "", 3
	if len(name) <= 3 {
		bestD = 2
	}
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Damerau (optimal string alignment) distance: a swap counts once.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// liquidMessage extracts the message of an osteele error, without its own location.
func liquidMessage(err error) string {
	var pe parser.Error
	if errors.As(err, &pe) && pe.Cause() != nil {
		if _, ok := pe.Cause().(parser.Error); !ok {
			return cleanLiquidMessage(pe.Cause().Error())
		}
	}
	s := err.Error()
	if strings.HasPrefix(s, "Liquid error") {
		if i := strings.Index(s, ": "); i >= 0 {
			s = s[i+2:]
		}
		if i := strings.LastIndex(s, " in "); i >= 0 {
			s = s[:i]
		}
	}
	return cleanLiquidMessage(s)
}

func cleanLiquidMessage(s string) string {
	s = strings.TrimSuffix(s, ";")
	s = strings.ReplaceAll(s, `;"`, `"`)
	return s
}
