package templates

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osteele/tuesday"
)

// strftimeProg is a date format parsed once: literal text and directives, the common
// ones (%Y %m %d %H %M %b %a …, without flags or width) formatted here, the others by
// tuesday one directive at a time, so the output is tuesday's (FuzzStrftime) without a
// regexp per render.
type strftimeProg struct {
	parts []strftimePart
}

type strftimePart struct {
	lit  string // literal text, or the whole directive when conv is 0 and delegate is set
	conv byte
	// delegate: lit is a directive tuesday formats
	delegate bool
}

var strftimeCache struct {
	m sync.Map // format -> *strftimeProg
	n atomic.Int64
}

const maxCachedFormats = 1024

// compileStrftime checks and parses a format, cached: formats are mostly literals in
// templates, so the cache stays small; past maxCachedFormats formats are parsed per call.
func compileStrftime(format string) (*strftimeProg, error) {
	if p, ok := strftimeCache.m.Load(format); ok {
		return p.(*strftimeProg), nil
	}
	if err := checkStrftime(format); err != nil {
		return nil, err
	}
	p := &strftimeProg{}
	prev := 0
	for _, m := range strftimeRE.FindAllStringSubmatchIndex(format, -1) {
		if m[0] > prev {
			p.parts = append(p.parts, strftimePart{lit: format[prev:m[0]]})
		}
		d := format[m[0]:m[1]]
		conv := format[m[6]]
		if m[2] < 0 && m[4] < 0 && len(d) == 2 && nativeStrftime[conv] {
			p.parts = append(p.parts, strftimePart{conv: conv})
		} else {
			p.parts = append(p.parts, strftimePart{lit: d, delegate: true})
		}
		prev = m[1]
	}
	if prev < len(format) {
		p.parts = append(p.parts, strftimePart{lit: format[prev:]})
	}
	if strftimeCache.n.Load() < maxCachedFormats {
		if _, loaded := strftimeCache.m.LoadOrStore(format, p); !loaded {
			strftimeCache.n.Add(1)
		}
	}
	return p, nil
}

var nativeStrftime = [256]bool{'Y': true, 'y': true, 'm': true, 'd': true, 'e': true, 'H': true, 'k': true, 'I': true,
	'l': true, 'M': true, 'S': true, 'j': true, 'b': true, 'h': true, 'B': true, 'a': true, 'A': true, 'p': true,
	'P': true, 'Z': true, 'z': true, '%': true, 'F': true}

func (p *strftimeProg) format(t time.Time) string {
	b := make([]byte, 0, 32)
	for _, part := range p.parts {
		switch {
		case part.delegate:
			s, _ := tuesday.Strftime(part.lit, t)
			b = append(b, s...)
		case part.conv == 0:
			b = append(b, part.lit...)
		default:
			b = appendDirective(b, part.conv, t)
		}
	}
	return string(b)
}

func appendPadded(b []byte, n, width int, pad byte) []byte {
	if n < 0 {
		return strconv.AppendInt(append(b, '-'), int64(-n), 10) // not reached for the native set
	}
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], int64(n), 10)
	for i := len(s); i < width; i++ {
		b = append(b, pad)
	}
	return append(b, s...)
}

func appendDirective(b []byte, c byte, t time.Time) []byte {
	switch c {
	case 'Y':
		if y := t.Year(); y >= 0 {
			return appendPadded(b, y, 4, '0')
		}
		s, _ := tuesday.Strftime("%Y", t)
		return append(b, s...)
	case 'y':
		if y := t.Year(); y >= 0 {
			return appendPadded(b, y%100, 2, '0')
		}
		s, _ := tuesday.Strftime("%y", t)
		return append(b, s...)
	case 'm':
		return appendPadded(b, int(t.Month()), 2, '0')
	case 'd':
		return appendPadded(b, t.Day(), 2, '0')
	case 'e':
		return appendPadded(b, t.Day(), 2, ' ')
	case 'H':
		return appendPadded(b, t.Hour(), 2, '0')
	case 'k':
		return appendPadded(b, t.Hour(), 2, ' ')
	case 'I':
		return appendPadded(b, (t.Hour()+11)%12+1, 2, '0')
	case 'l':
		return appendPadded(b, (t.Hour()+11)%12+1, 2, ' ')
	case 'M':
		return appendPadded(b, t.Minute(), 2, '0')
	case 'S':
		return appendPadded(b, t.Second(), 2, '0')
	case 'j':
		return appendPadded(b, t.YearDay(), 3, '0')
	case 'b', 'h':
		return append(b, t.Month().String()[:3]...)
	case 'B':
		return append(b, t.Month().String()...)
	case 'a':
		return append(b, t.Weekday().String()[:3]...)
	case 'A':
		return append(b, t.Weekday().String()...)
	case 'p':
		if t.Hour() < 12 {
			return append(b, "AM"...)
		}
		return append(b, "PM"...)
	case 'P':
		if t.Hour() < 12 {
			return append(b, "am"...)
		}
		return append(b, "pm"...)
	case 'Z':
		z, _ := t.Zone()
		return append(b, z...)
	case 'z':
		_, off := t.Zone()
		sign := byte('+')
		if off < 0 {
			off, sign = -off, '-'
		}
		b = append(b, sign)
		b = appendPadded(b, off/3600, 2, '0')
		return appendPadded(b, (off/60)%60, 2, '0')
	case '%':
		return append(b, '%')
	case 'F':
		if y := t.Year(); y >= 0 {
			b = appendPadded(b, y, 4, '0')
			b = append(b, '-')
			b = appendPadded(b, int(t.Month()), 2, '0')
			b = append(b, '-')
			return appendPadded(b, t.Day(), 2, '0')
		}
		s, _ := tuesday.Strftime("%F", t)
		return append(b, s...)
	}
	return b
}
