package templates

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strconv"
	"strings"
)

// Numbers as Shopify's Liquid computes them, since that is the Liquid marketers know.
// Integers stay integers (Ruby's Integer: / and % floor, so -7 / 2 is -4 and -13 % 4 is
// 3); as soon as a float is involved the filter works on the float's shortest decimal
// (Ruby's BigDecimal(f.to_s)) exactly and hands back the nearest float, so 0.1 + 0.2
// is 0.3 and 183.357 % 12 is 3.357; round with digits keeps a float, round without (or
// with digits < 1), ceil and floor give integers. A float prints as Ruby's Float#to_s
// (3.0, 2.857142857142857, 1.0e+20). Strings are numbers when they look like one:
// "-12" an integer, "3.50" a float.
//
// Where Herald is stricter than Shopify: a string that is not a number ("abc", "1e3",
// ".5"), true or false is an error, not 0; dividing by zero is an error for floats too,
// not Infinity; a float result out of range is an error. An integer result past int64
// becomes a float (Ruby keeps a Bignum).

// liquidFloat is a Liquid float. It prints as Ruby's Float#to_s on both paths: osteele
// writes an output with fmt.Sprint, which calls String, and the fast path calls
// appendRubyFloat. Variables and filters make floats of this type; only osteele's
// literals are plain float64.
type liquidFloat float64

func (f liquidFloat) String() string {
	var buf [32]byte
	return string(appendRubyFloat(buf[:0], float64(f)))
}

// appendRubyFloat appends f as Ruby's Float#to_s writes it: the shortest digits that
// read back as f, fixed-point with at least one decimal from 0.0001 up to 15 integer
// digits (or when the digits reach past the point), else one digit, a point, the rest
// (at least one) and a signed two-digit exponent: 3.0, 0.0001, 1.0e-05, 1.0e+15.
func appendRubyFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	var buf [32]byte
	s := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // [-]d[.ddd]e±dd
	if s[0] == '-' {
		b = append(b, '-')
		s = s[1:]
	}
	var digits [20]byte
	nd, i := 0, 0
	for ; s[i] != 'e'; i++ {
		if s[i] != '.' {
			digits[nd] = s[i]
			nd++
		}
	}
	exp := 0
	for _, c := range s[i+2:] {
		exp = exp*10 + int(c-'0')
	}
	if s[i+1] == '-' {
		exp = -exp
	}
	ds, point := digits[:nd], exp+1 // the value is 0.ds × 10^point
	switch {
	case point > 0 && point < nd:
		b = append(b, ds[:point]...)
		b = append(b, '.')
		b = append(b, ds[point:]...)
	case point > 0 && point <= 15:
		b = append(b, ds...)
		for range point - nd {
			b = append(b, '0')
		}
		b = append(b, ".0"...)
	case point <= 0 && point > -4:
		b = append(b, "0."...)
		for range -point {
			b = append(b, '0')
		}
		b = append(b, ds...)
	default:
		b = append(b, ds[0], '.')
		if nd > 1 {
			b = append(b, ds[1:]...)
		} else {
			b = append(b, '0')
		}
		b = append(b, 'e', '+')
		if exp < 0 {
			b[len(b)-1] = '-'
			exp = -exp
		}
		if exp < 10 {
			b = append(b, '0')
		}
		b = strconv.AppendInt(b, int64(exp), 10)
	}
	return b
}

// number is a Liquid number: an integer unless a float was involved.
type number struct {
	i     int64
	fl    float64
	float bool
}

func (n number) f() float64 {
	if n.float {
		return n.fl
	}
	return float64(n.i)
}

func (n number) isZero() bool { return n.f() == 0 }

func (n number) String() string {
	if n.float {
		return strconv.FormatFloat(n.fl, 'f', -1, 64)
	}
	return strconv.FormatInt(n.i, 10)
}

func (n number) value() any {
	if n.float {
		return liquidFloat(n.fl)
	}
	return n.i
}

// dec is the number's exact decimal: for a float, Ruby's BigDecimal(f.to_s).
func (n number) dec() decimal {
	if n.float {
		return decimalOf(n.fl)
	}
	return decimal{m: n.i}
}

// toNumber reads a value as a number; strings as parseNumber does (Herald's own
// filters and variables of type number).
func toNumber(v any) (number, error) {
	switch v := v.(type) {
	case nil:
		return number{}, nil
	case int:
		return number{i: int64(v)}, nil
	case int64:
		return number{i: v}, nil
	case liquidFloat:
		return number{fl: float64(v), float: true}, nil
	case float64:
		return number{fl: v, float: true}, nil
	case string:
		return parseNumber(strings.TrimSpace(v))
	}
	return number{}, fmt.Errorf("%s is not a number", describe(v))
}

func parseNumber(s string) (number, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return number{i: i}, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return number{fl: f, float: true}, nil
	}
	return number{}, fmt.Errorf("%q is not a number", truncate(s, 40, "..."))
}

// liquidNumber reads a value as Shopify's math filters do: a string is an integer when
// it is digits with an optional sign, a float when it is -?digits.digits (surrounding
// spaces aside); any other string is an error (Shopify reads it as 0 or its leading
// digits).
func liquidNumber(v any) (number, error) {
	s, ok := v.(string)
	if !ok {
		return toNumber(v)
	}
	t := strings.TrimSpace(s)
	i := 0
	if i < len(t) && (t[i] == '-' || t[i] == '+') {
		i++
	}
	start := i
	for i < len(t) && isDigitByte(t[i]) {
		i++
	}
	if i > start && i == len(t) {
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return number{i: n}, nil
		}
		if f, err := strconv.ParseFloat(t, 64); err == nil { // past int64: a float, as an overflowing result
			return number{fl: f, float: true}, nil
		}
	}
	if i > start && i < len(t) && t[i] == '.' && t[0] != '+' {
		j := i + 1
		for j < len(t) && isDigitByte(t[j]) {
			j++
		}
		if j > i+1 && j == len(t) {
			if f, err := strconv.ParseFloat(t, 64); err == nil {
				return number{fl: f, float: true}, nil
			}
		}
	}
	return number{}, fmt.Errorf("%q is not a number", truncate(t, 40, "..."))
}

func operands(in any, a []any) (x, y number, err error) {
	if x, err = liquidNumber(in); err != nil {
		return
	}
	y, err = liquidNumber(a[0])
	return
}

var errDivisionByZero = errors.New("division by zero")

func plusFilter(in any, a []any) (any, error) {
	x, y, err := operands(in, a)
	if err != nil {
		return nil, err
	}
	if !x.float && !y.float {
		if r := x.i + y.i; (r > x.i) == (y.i > 0) {
			return r, nil
		}
	}
	return floatResult(addDec(x.dec(), y.dec()))
}

func minusFilter(in any, a []any) (any, error) {
	x, y, err := operands(in, a)
	if err != nil {
		return nil, err
	}
	if !x.float && !y.float {
		if r := x.i - y.i; (r < x.i) == (y.i > 0) {
			return r, nil
		}
	}
	return floatResult(subDec(x.dec(), y.dec()))
}

func timesFilter(in any, a []any) (any, error) {
	x, y, err := operands(in, a)
	if err != nil {
		return nil, err
	}
	if !x.float && !y.float {
		if r, ok := mulInt64(x.i, y.i); ok {
			return r, nil
		}
	}
	return floatResult(mulDec(x.dec(), y.dec()))
}

func dividedByFilter(in any, a []any) (any, error) {
	x, y, err := operands(in, a)
	if err != nil {
		return nil, err
	}
	if y.isZero() {
		return nil, errDivisionByZero
	}
	if !x.float && !y.float {
		if x.i == math.MinInt64 && y.i == -1 {
			return liquidFloat(-float64(x.i)), nil
		}
		q := x.i / y.i
		if x.i%y.i != 0 && (x.i < 0) != (y.i < 0) {
			q-- // Ruby's Integer#/ floors
		}
		return q, nil
	}
	return floatResult(divDec(x.dec(), y.dec()))
}

func moduloFilter(in any, a []any) (any, error) {
	x, y, err := operands(in, a)
	if err != nil {
		return nil, err
	}
	if y.isZero() {
		return nil, errDivisionByZero
	}
	if !x.float && !y.float {
		r := x.i % y.i
		if r != 0 && (r < 0) != (y.i < 0) {
			r += y.i // Ruby's Integer#%: the sign of the divisor
		}
		return r, nil
	}
	return floatResult(modDec(x.dec(), y.dec()))
}

func absFilter(in any, _ []any) (any, error) {
	x, err := liquidNumber(in)
	if err != nil {
		return nil, err
	}
	if !x.float {
		if x.i == math.MinInt64 {
			return liquidFloat(-float64(x.i)), nil
		}
		return max(x.i, -x.i), nil
	}
	return liquidFloat(math.Abs(x.fl)), nil
}

// roundingFilter is ceil or floor: an integer. (Rounding a float up or down gives the
// same integer as rounding its shortest decimal.)
func roundingFilter(fn func(float64) float64) func(any, []any) (any, error) {
	return func(in any, _ []any) (any, error) {
		x, err := liquidNumber(in)
		if err != nil {
			return nil, err
		}
		if !x.float {
			return x.i, nil
		}
		return integral(fn(x.fl)), nil
	}
}

// roundFilter rounds half away from zero (BigDecimal's ROUND_HALF_UP) at digits
// places: an integer stays itself for digits >= 0; a float gives a float for digits
// >= 1 and an integer otherwise.
func roundFilter(in any, a []any) (any, error) {
	x, err := liquidNumber(in)
	if err != nil {
		return nil, err
	}
	digits, err := intArg(a, 0, 0)
	if err != nil {
		return nil, err
	}
	switch {
	case !x.float && digits >= 0:
		return x.i, nil
	case !x.float:
		return roundDec(decimal{m: x.i}, digits, false), nil
	case digits == 0:
		return integral(math.Round(x.fl)), nil // the same as rounding the shortest decimal
	}
	return roundDec(decimalOf(x.fl), digits, digits >= 1), nil
}

// clampFilter is at_least (sign 1) or at_most (-1): the operand when the input is
// below (above) it, else the input, each keeping its type.
func clampFilter(sign int) func(any, []any) (any, error) {
	return func(in any, a []any) (any, error) {
		x, y, err := operands(in, a)
		if err != nil {
			return nil, err
		}
		if cmpNumbers(y, x) == sign {
			return y.value(), nil
		}
		return x.value(), nil
	}
}

func cmpNumbers(x, y number) int {
	switch {
	case !x.float && !y.float:
		return cmp.Compare(x.i, y.i)
	case x.float && y.float:
		return cmp.Compare(x.fl, y.fl)
	}
	if i := x.i + y.i; i > -1<<53 && i < 1<<53 { // the integer one converts exactly
		return cmp.Compare(x.f(), y.f())
	}
	return x.dec().rat().Cmp(y.dec().rat())
}

// integral is a whole float as an integer, or as a float past int64.
func integral(f float64) any {
	if f >= -(1<<63) && f < 1<<63 {
		return int64(f)
	}
	return liquidFloat(f)
}

var errOutOfRange = errors.New("the result is out of range")

func floatResult(f float64) (any, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, errOutOfRange
	}
	return liquidFloat(f), nil
}

func mulInt64(a, b int64) (int64, bool) {
	hi, lo := bits.Mul64(uabs(a), uabs(b))
	neg := (a < 0) != (b < 0)
	switch {
	case hi != 0 || lo > 1<<63:
		return 0, false
	case lo == 1<<63:
		return math.MinInt64, neg
	case neg:
		return -int64(lo), true
	}
	return int64(lo), true
}

func uabs(a int64) uint64 {
	if a < 0 {
		return uint64(-a) // math.MinInt64 too: 1<<63
	}
	return uint64(a)
}

// ---- exact decimals ----

// decimal is the exact value m × 10^e.
type decimal struct {
	m int64
	e int
}

// decimalOf is the shortest decimal that reads back as f (finite): Ruby's
// BigDecimal(f.to_s). It has at most 17 digits.
func decimalOf(f float64) decimal {
	// Prices and rates have few digits: find them without formatting. A decimal of at
	// most 15 digits that reads back as f is the only one (15-digit decimals lie more
	// than an ulp apart), so it is the shortest's value.
	for k := 0; k < len(exactPow10); k++ {
		x := f * exactPow10[k]
		if x >= 1e15 || x <= -1e15 {
			break
		}
		if x == math.Trunc(x) && x/exactPow10[k] == f { // m / 10^k rounds once: reads back as f
			return decimal{int64(x), -k}
		}
	}
	return shortestDecimal(f)
}

// shortestDecimal is decimalOf through strconv's shortest formatting.
func shortestDecimal(f float64) decimal {
	var buf [32]byte
	s := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // [-]d[.ddd]e±dd
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var d decimal
	nd, i := 0, 0
	for ; s[i] != 'e'; i++ {
		if s[i] != '.' {
			d.m = d.m*10 + int64(s[i]-'0')
			nd++
		}
	}
	exp := 0
	for _, c := range s[i+2:] {
		exp = exp*10 + int(c-'0')
	}
	if s[i+1] == '-' {
		exp = -exp
	}
	d.e = exp - (nd - 1)
	if neg {
		d.m = -d.m
	}
	return d
}

var pow10 = [...]int64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

var exactPow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// scale is m × 10^k, false when it leaves int64.
func scale(m int64, k int) (int64, bool) {
	if m == 0 {
		return 0, true
	}
	if k >= len(pow10) {
		return 0, false
	}
	return mulInt64(m, pow10[k])
}

// align gives x and y the smaller exponent of the two.
func align(x, y decimal) (a, b int64, e int, ok bool) {
	switch {
	case x.e > y.e:
		a, ok = scale(x.m, x.e-y.e)
		return a, y.m, y.e, ok
	case x.e < y.e:
		b, ok = scale(y.m, y.e-x.e)
		return x.m, b, x.e, ok
	}
	return x.m, y.m, x.e, true
}

// float is the nearest float64 (±Inf past the range).
func (d decimal) float() float64 {
	if d.m > -1<<53 && d.m < 1<<53 && d.e >= -22 && d.e <= 22 {
		// both exact as float64: one correctly rounded operation
		if d.e >= 0 {
			return float64(d.m) * exactPow10[d.e]
		}
		return float64(d.m) / exactPow10[-d.e]
	}
	var buf [48]byte
	b := strconv.AppendInt(buf[:0], d.m, 10)
	b = append(b, 'e')
	b = strconv.AppendInt(b, int64(d.e), 10)
	f, _ := strconv.ParseFloat(string(b), 64)
	return f
}

func (d decimal) rat() *big.Rat {
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(d.e, -d.e))), nil)
	m := big.NewInt(d.m)
	if d.e >= 0 {
		return new(big.Rat).SetInt(m.Mul(m, p))
	}
	return new(big.Rat).SetFrac(m, p)
}

func ratOp(x, y decimal, op func(z, a, b *big.Rat) *big.Rat) float64 {
	r := op(new(big.Rat), x.rat(), y.rat())
	f, _ := r.Float64()
	return f
}

func addDec(x, y decimal) float64 {
	if a, b, e, ok := align(x, y); ok {
		if s := a + b; (s > a) == (b > 0) {
			return decimal{s, e}.float()
		}
	}
	return ratOp(x, y, (*big.Rat).Add)
}

func subDec(x, y decimal) float64 {
	if a, b, e, ok := align(x, y); ok {
		if s := a - b; (s < a) == (b > 0) {
			return decimal{s, e}.float()
		}
	}
	return ratOp(x, y, (*big.Rat).Sub)
}

func mulDec(x, y decimal) float64 {
	if m, ok := mulInt64(x.m, y.m); ok {
		return decimal{m, x.e + y.e}.float()
	}
	return ratOp(x, y, (*big.Rat).Mul)
}

func divDec(x, y decimal) float64 {
	if a, b, _, ok := align(x, y); ok && a > -1<<53 && a < 1<<53 && b > -1<<53 && b < 1<<53 {
		return float64(a) / float64(b) // the exact quotient a/b, correctly rounded
	}
	return ratOp(x, y, (*big.Rat).Quo)
}

// modDec is x - y×floor(x/y): the sign of y, as Ruby's % and BigDecimal#%.
func modDec(x, y decimal) float64 {
	if a, b, e, ok := align(x, y); ok {
		r := a % b
		if r != 0 && (r < 0) != (b < 0) {
			r += b
		}
		return decimal{r, e}.float()
	}
	xr, yr := x.rat(), y.rat()
	q := new(big.Rat).Quo(xr, yr)
	fl := new(big.Int).Div(q.Num(), q.Denom()) // Euclidean, denominator > 0: the floor
	r := new(big.Rat).Sub(xr, new(big.Rat).Mul(yr, new(big.Rat).SetInt(fl)))
	f, _ := r.Float64()
	return f
}

// roundDec rounds d half away from zero at digits places: a float when asFloat, else
// an integer (a float past int64).
func roundDec(d decimal, digits int, asFloat bool) any {
	if drop := -d.e - digits; drop > 0 { // digits to drop
		q := uint64(0)
		if drop < 20 {
			p := uint64(1)
			for range drop {
				p *= 10
			}
			u := uabs(d.m)
			q = u / p
			if r := u % p; r >= p-r {
				q++
			}
		}
		m := int64(q) // q <= 2^63/10 + 1
		if d.m < 0 {
			m = -m
		}
		d = decimal{m, -digits}
	}
	if asFloat {
		return liquidFloat(d.float())
	}
	if m, ok := scale(d.m, d.e); ok { // digits <= 0: e >= 0
		return m
	}
	return liquidFloat(d.float())
}
