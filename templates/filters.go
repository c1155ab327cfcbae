package templates

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/osteele/liquid/values"
)

// The filters marketers expect, reimplemented so that none of them panics, reads a file,
// compiles a regexp per call or builds an unbounded string: osteele's truncate and
// truncatewords compile a regexp sized by the argument (and panic past 1000), its slice
// panics on out-of-range starts, its capitalize splits UTF-8 sequences and its date reads
// naive times in the server's zone.

var errValueTooLong = fmt.Errorf("value longer than %d bytes", MaxValueBytes)

type filterSpec struct {
	min, max     int
	fn           func(in any, args []any) (any, error)
	checkLiteral func(i int, lit string) error // validates a string-literal argument at parse time
}

func (f filterSpec) liquidFunc(name string) any {
	return func(in any, args ...any) (any, error) { return f.apply(name, in, args) }
}

// apply runs the filter and bounds its result: what osteele calls (through liquidFunc)
// and the fast path calls directly.
func (f filterSpec) apply(name string, in any, args []any) (any, error) {
	if len(args) < f.min || len(args) > f.max {
		return nil, fmt.Errorf("%s takes %d to %d arguments, got %d", name, f.min, f.max, len(args))
	}
	out, err := f.fn(in, args)
	if err != nil {
		return nil, err
	}
	if x, ok := out.(float64); ok {
		out = liquidFloat(x) // a float literal passed through (default: 3.0) prints as Ruby's
	}
	if err := checkValue(out); err != nil {
		return nil, err
	}
	return out, nil
}

// refusedFilters explains osteele filters left out on purpose.
var refusedFilters = map[string]string{
	"json":          "it exposes raw data; use the values you need",
	"inspect":       "it exposes raw data; use the values you need",
	"type":          "it exposes implementation details",
	"map":           "variables are plain values, not lists of objects",
	"sort":          "variables are plain values, not lists",
	"sort_natural":  "variables are plain values, not lists",
	"uniq":          "variables are plain values, not lists",
	"reverse":       "variables are plain values, not lists",
	"compact":       "variables are plain values, not lists",
	"concat":        "variables are plain values, not lists",
	"strip_html":    "messages are plain text",
	"newline_to_br": "messages are plain text",
}

var filterTable = map[string]filterSpec{
	// values
	"default": {1, 1, func(in any, a []any) (any, error) {
		if in == nil || in == false || values.IsEmpty(in) {
			return a[0], nil
		}
		return in, nil
	}, nil},

	// strings
	"append":  {1, 1, func(in any, a []any) (any, error) { return concat(toString(in), toString(a[0])) }, nil},
	"prepend": {1, 1, func(in any, a []any) (any, error) { return concat(toString(a[0]), toString(in)) }, nil},
	"capitalize": {0, 0, func(in any, _ []any) (any, error) {
		s := toString(in)
		r, n := utf8.DecodeRuneInString(s)
		if n == 0 {
			return s, nil
		}
		return string(unicode.ToUpper(r)) + strings.ToLower(s[n:]), nil
	}, nil},
	"upcase":   {0, 0, func(in any, _ []any) (any, error) { return strings.ToUpper(toString(in)), nil }, nil},
	"downcase": {0, 0, func(in any, _ []any) (any, error) { return strings.ToLower(toString(in)), nil }, nil},
	"strip":    {0, 0, func(in any, _ []any) (any, error) { return strings.TrimSpace(toString(in)), nil }, nil},
	"lstrip":   {0, 0, func(in any, _ []any) (any, error) { return strings.TrimLeftFunc(toString(in), unicode.IsSpace), nil }, nil},
	"rstrip":   {0, 0, func(in any, _ []any) (any, error) { return strings.TrimRightFunc(toString(in), unicode.IsSpace), nil }, nil},
	"strip_newlines": {0, 0, func(in any, _ []any) (any, error) {
		return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(toString(in)), nil
	}, nil},
	"replace": {2, 2, func(in any, a []any) (any, error) {
		return replace(toString(in), toString(a[0]), toString(a[1]), -1)
	}, nil},
	"replace_first": {2, 2, func(in any, a []any) (any, error) {
		return replace(toString(in), toString(a[0]), toString(a[1]), 1)
	}, nil},
	"remove":       {1, 1, func(in any, a []any) (any, error) { return replace(toString(in), toString(a[0]), "", -1) }, nil},
	"remove_first": {1, 1, func(in any, a []any) (any, error) { return replace(toString(in), toString(a[0]), "", 1) }, nil},
	"truncate": {0, 2, func(in any, a []any) (any, error) {
		n, err := intArg(a, 0, 50)
		if err != nil {
			return nil, err
		}
		return truncate(toString(in), n, stringArg(a, 1, "...")), nil
	}, nil},
	"truncatewords": {0, 2, func(in any, a []any) (any, error) {
		n, err := intArg(a, 0, 15)
		if err != nil {
			return nil, err
		}
		return truncateWords(toString(in), n, stringArg(a, 1, "...")), nil
	}, nil},
	"slice": {1, 2, func(in any, a []any) (any, error) {
		start, err := intArg(a, 0, 0)
		if err != nil {
			return nil, err
		}
		n, err := intArg(a, 1, 1)
		if err != nil {
			return nil, err
		}
		return sliceValue(in, start, n), nil
	}, nil},
	"split": {1, 1, func(in any, a []any) (any, error) { return split(toString(in), toString(a[0])), nil }, nil},
	"join": {0, 1, func(in any, a []any) (any, error) {
		return join(toList(in), stringArg(a, 0, " "))
	}, nil},
	"first": {0, 0, func(in any, _ []any) (any, error) {
		if s, ok := in.(string); ok {
			_, n := utf8.DecodeRuneInString(s)
			return s[:n], nil
		}
		if l := toList(in); len(l) > 0 {
			return l[0], nil
		}
		return nil, nil
	}, nil},
	"last": {0, 0, func(in any, _ []any) (any, error) {
		if s, ok := in.(string); ok {
			_, n := utf8.DecodeLastRuneInString(s)
			return s[len(s)-n:], nil
		}
		if l := toList(in); len(l) > 0 {
			return l[len(l)-1], nil
		}
		return nil, nil
	}, nil},
	"size":        {0, 0, func(in any, _ []any) (any, error) { return int64(values.Length(in)), nil }, nil},
	"url_encode":  {0, 0, func(in any, _ []any) (any, error) { return url.QueryEscape(toString(in)), nil }, nil},
	"url_decode":  {0, 0, func(in any, _ []any) (any, error) { return url.QueryUnescape(toString(in)) }, nil},
	"escape":      {0, 0, func(in any, _ []any) (any, error) { return htmlEscaper.Replace(toString(in)), nil }, nil},
	"escape_once": {0, 0, func(in any, _ []any) (any, error) { return escapeOnce(toString(in)), nil }, nil},
	// telegram (telegram.go): the escaping a telegram body's outputs get
	filterTgMarkdown:     {0, 0, func(in any, _ []any) (any, error) { return EscapeMarkdownV2(toString(in)), nil }, nil},
	filterTgMarkdownCode: {0, 0, func(in any, _ []any) (any, error) { return EscapeMarkdownV2Code(toString(in)), nil }, nil},
	filterTgMarkdownURL:  {0, 0, func(in any, _ []any) (any, error) { return EscapeMarkdownV2URL(toString(in)), nil }, nil},
	filterTgHTML:         {0, 0, func(in any, _ []any) (any, error) { return EscapeHTML(toString(in)), nil }, nil},

	// numbers (numbers.go): as Shopify's Liquid computes them
	"plus":       {1, 1, plusFilter, nil},
	"minus":      {1, 1, minusFilter, nil},
	"times":      {1, 1, timesFilter, nil},
	"divided_by": {1, 1, dividedByFilter, nil},
	"modulo":     {1, 1, moduloFilter, nil},
	"abs":        {0, 0, absFilter, nil},
	"ceil":       {0, 0, roundingFilter(math.Ceil), nil},
	"floor":      {0, 0, roundingFilter(math.Floor), nil},
	"round":      {0, 1, roundFilter, nil},
	"at_least":   {1, 1, clampFilter(1), nil},
	"at_most":    {1, 1, clampFilter(-1), nil},
	"number_with_delimiter": {0, 2, func(in any, a []any) (any, error) {
		x, err := toNumber(in)
		if err != nil {
			return nil, err
		}
		s := x.String()
		return delimit(s, stringArg(a, 0, ","), stringArg(a, 1, "."))
	}, nil},
	"format_number": {0, 3, func(in any, a []any) (any, error) {
		x, err := toNumber(in)
		if err != nil {
			return nil, err
		}
		dec, err := intArg(a, 0, 0)
		if err != nil {
			return nil, err
		}
		dec = max(0, min(dec, 10))
		f := x.f()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("cannot format %v", f)
		}
		p := math.Pow10(dec)
		if r := math.Round(f*p) / p; !math.IsInf(r, 0) && !math.IsNaN(r) {
			f = r // half away from zero, as people round
		}
		return delimit(strconv.FormatFloat(f, 'f', dec, 64), stringArg(a, 1, ","), stringArg(a, 2, "."))
	}, nil},

	// locale-aware (locale.go)
	"number":   {0, 2, numberFilter, nil},
	"currency": {0, 2, currencyFilter, checkCurrencyLiteral},

	// dates
	"date": {0, 3, func(in any, a []any) (any, error) {
		prog, err := compileStrftime(stringArg(a, 0, "%a, %b %d, %y"))
		if err != nil {
			return nil, err
		}
		var loc *time.Location
		if z := stringArg(a, 1, ""); z != "" {
			var err error
			if loc, err = loadZone(z); err != nil {
				return nil, err
			}
		}
		t, err := toTime(in, loc)
		if err != nil {
			return nil, err
		}
		if t.IsZero() && in == nil {
			return "", nil
		}
		if loc != nil {
			t = t.In(loc)
		}
		return prog.format(t, namesFor(stringArg(a, 2, ""))), nil
	}, func(i int, lit string) error {
		switch i {
		case 0:
			return checkStrftime(lit)
		case 1:
			if lit == "" {
				return nil
			}
			_, err := loadZone(lit)
			return err
		}
		return nil
	}},
}

func filterNames() []string {
	names := make([]string, 0, len(filterTable))
	for n := range filterTable {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkValue bounds what Liquid keeps: strings and lists built by filters, assigns and
// captures.
func checkValue(v any) error {
	switch v := v.(type) {
	case string:
		if len(v) > MaxValueBytes {
			return errValueTooLong
		}
	case []string:
		n := 0
		for _, s := range v {
			n += len(s) + 1
		}
		if n > MaxValueBytes {
			return errValueTooLong
		}
	case []any:
		if len(v) > MaxValueBytes {
			return errValueTooLong
		}
	}
	return nil
}

func concat(a, b string) (any, error) {
	if len(a)+len(b) > MaxValueBytes {
		return nil, errValueTooLong
	}
	return a + b, nil
}

func replace(s, old, new string, n int) (any, error) {
	count := strings.Count(s, old)
	if n >= 0 {
		count = min(count, n)
	}
	if len(s)+count*(len(new)-len(old)) > MaxValueBytes {
		return nil, errValueTooLong
	}
	return strings.Replace(s, old, new, n), nil
}

func truncate(s string, n int, ellipsis string) string {
	if n < 0 {
		n = 0
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	keep := max(n-utf8.RuneCountInString(ellipsis), 0)
	i := 0
	for k := 0; k < keep && i < len(s); k++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + ellipsis
}

func truncateWords(s string, n int, ellipsis string) string {
	n = max(n, 1)
	words := strings.Fields(s)
	if len(words) <= n {
		return s
	}
	return strings.Join(words[:n], " ") + ellipsis
}

func sliceValue(in any, start, n int) any {
	if l, ok := in.([]string); ok {
		start, end := sliceBounds(len(l), start, n)
		return l[start:end]
	}
	if l, ok := in.([]any); ok {
		start, end := sliceBounds(len(l), start, n)
		return l[start:end]
	}
	r := []rune(toString(in))
	start, end := sliceBounds(len(r), start, n)
	return string(r[start:end])
}

func sliceBounds(length, start, n int) (int, int) {
	if start < 0 {
		start = max(length+start, 0)
	}
	start = min(start, length)
	n = max(n, 0)
	end := length
	if n < length-start {
		end = start + n
	}
	return start, end
}

func split(s, sep string) []string {
	var out []string
	if sep == " " {
		out = strings.Fields(s)
	} else {
		out = strings.Split(s, sep)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

func join(l []any, sep string) (any, error) {
	n := 0
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = toString(v)
		n += len(parts[i]) + len(sep)
		if n > MaxValueBytes+len(sep) {
			return nil, errValueTooLong
		}
	}
	return strings.Join(parts, sep), nil
}

func toList(v any) []any {
	switch v := v.(type) {
	case []any:
		return v
	case []string:
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = s
		}
		return out
	case nil:
		return nil
	default:
		return []any{v}
	}
}

// htmlEscaper is Shopify's escape (Ruby's CGI.escapeHTML): quotes too, as &quot; and &#39;.
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

// escapeOnce escapes as escape does but leaves alone an & that already starts an entity:
// a name (&amp;, &copy;) or decimal digits (&#39;) and a ';', as Shopify's escape_once.
func escapeOnce(s string) string {
	if !strings.ContainsAny(s, `&<>"'`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&#39;")
		case '&':
			if isEntity(s[i+1:]) {
				b.WriteByte('&')
			} else {
				b.WriteString("&amp;")
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isEntity reports whether s (what follows an &) starts with letters or # and digits,
// then ';'.
func isEntity(s string) bool {
	i := 0
	if strings.HasPrefix(s, "#") {
		i = 1
		for i < len(s) && isDigitByte(s[i]) {
			i++
		}
		return i > 1 && i < len(s) && s[i] == ';'
	}
	for i < len(s) && isAlpha(s[i]) {
		i++
	}
	return i > 0 && i < len(s) && s[i] == ';'
}

// toString renders a value the way an output tag does.
func toString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return string(appendRubyFloat(nil, v))
	case liquidFloat:
		return string(appendRubyFloat(nil, float64(v)))
	case []string:
		return strings.Join(v, "")
	case []any:
		var b strings.Builder
		for _, x := range v {
			if b.Len() > MaxValueBytes {
				break
			}
			b.WriteString(toString(x))
		}
		return b.String()
	default:
		return fmt.Sprint(v)
	}
}

func stringArg(a []any, i int, def string) string {
	if i >= len(a) || a[i] == nil {
		return def
	}
	return toString(a[i])
}

func intArg(a []any, i int, def int) (int, error) {
	if i >= len(a) || a[i] == nil {
		return def, nil
	}
	n, err := toNumber(a[i])
	if err != nil {
		return 0, err
	}
	if n.float {
		f := math.Trunc(n.fl)
		if math.IsNaN(f) || math.Abs(f) > 1<<31 {
			return 0, fmt.Errorf("%v is out of range", n.fl)
		}
		return int(f), nil
	}
	if n.i > 1<<31 || n.i < -(1<<31) {
		return 0, fmt.Errorf("%d is out of range", n.i)
	}
	return int(n.i), nil
}

func describe(v any) string {
	switch v.(type) {
	case bool:
		return "a true/false value"
	case []string, []any:
		return "a list"
	}
	return fmt.Sprintf("%q", truncate(toString(v), 40, "..."))
}

// delimit groups the integer digits of a formatted number by thousands.
func delimit(s, delim, sep string) (any, error) {
	if len(delim) > 8 || len(sep) > 8 {
		return nil, errors.New("delimiter and separator are at most 8 bytes")
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteString(delim)
		}
		b.WriteRune(c)
	}
	if hasFrac {
		b.WriteString(sep)
		b.WriteString(frac)
	}
	return b.String(), nil
}

var strftimeRE = regexp.MustCompile(`%([-_^#0]|:{1,3})?(\d+)?[EO]?([a-zA-Z\+nt%])`)

// checkStrftime refuses format widths that would make tuesday build huge strings.
func checkStrftime(format string) error {
	for _, m := range strftimeRE.FindAllStringSubmatch(format, -1) {
		if w := m[2]; len(w) > 2 {
			return fmt.Errorf("date format width %s is too large", w)
		}
	}
	return nil
}

var zoneNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$`)

var zones = struct {
	sync.Mutex
	m map[string]*time.Location
}{m: map[string]*time.Location{}}

// loadZone loads an IANA zone once; only valid zones are cached, so the cache is
// bounded by the zone database.
func loadZone(name string) (*time.Location, error) {
	zones.Lock()
	loc, ok := zones.m[name] // only valid names are cached
	zones.Unlock()
	if ok {
		return loc, nil
	}
	if len(name) > 64 || !zoneNameRE.MatchString(name) || name == "Local" {
		return nil, fmt.Errorf("unknown time zone %q (use an IANA name like Asia/Bangkok)", truncate(name, 40, "..."))
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (use an IANA name like Asia/Bangkok)", name)
	}
	zones.Lock()
	zones.m[name] = loc
	zones.Unlock()
	return loc, nil
}

var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04",
	"2006-01-02",
	time.RFC1123Z,
	time.RFC1123,
}

// toTime reads a date: a string in one of dateLayouts (times without an offset are wall
// times in loc, or UTC) or unix seconds. "now" is refused: a render must be
// reproducible, so the send time comes in as a variable.
func toTime(v any, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	switch v := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return v, nil
	case int, int64, float64, liquidFloat:
		n, _ := toNumber(v)
		f := n.f()
		if math.IsNaN(f) || math.Abs(f) > 1e13 {
			return time.Time{}, fmt.Errorf("%v is not a unix time", f)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	case string:
		s := strings.TrimSpace(v)
		if s == "now" || s == "today" {
			return time.Time{}, fmt.Errorf("%q is not supported: renders must be reproducible; pass the time as a variable", s)
		}
		if looksNumeric(s) {
			if n, err := parseNumber(s); err == nil {
				return toTime(n.value(), loc)
			}
		}
		for _, layout := range dateLayouts {
			if t, err := time.ParseInLocation(layout, s, loc); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("%q is not a date (use RFC 3339, like 2025-03-01T10:00:00Z)", truncate(s, 40, "..."))
	}
	return time.Time{}, fmt.Errorf("%s is not a date", describe(v))
}

// looksNumeric is false for strings parseNumber certainly refuses (dates: a ':', '/' or
// space, or a sign that is neither first nor after an exponent marker): its failures
// allocate, and dates are parsed on every render.
func looksNumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ':', '/', ' ':
			return false
		case '-', '+':
			if i > 0 && !strings.ContainsRune("eEpP", rune(s[i-1])) {
				return false
			}
		}
	}
	return true
}

func liquidEqual(a, b any) bool {
	return values.Equal(a, b)
}
