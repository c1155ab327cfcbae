package templates

import (
	"strconv"
	"strings"
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

// dateNames are month and weekday names in one language, for %b %B %a %A (%h).
type dateNames struct {
	months, shortMonths [12]string
	days, shortDays     [7]string // Sunday first
}

// localNames are the languages dates are written in besides English (CLDR
// stand-alone names, abbreviations without the trailing dot). Directives with flags
// (%^b) stay English.
var localNames = map[string]*dateNames{
	"pt": {
		months:      [12]string{"janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro", "novembro", "dezembro"},
		shortMonths: [12]string{"jan", "fev", "mar", "abr", "mai", "jun", "jul", "ago", "set", "out", "nov", "dez"},
		days:        [7]string{"domingo", "segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira", "sábado"},
		shortDays:   [7]string{"dom", "seg", "ter", "qua", "qui", "sex", "sáb"},
	},
	"id": {
		months:      [12]string{"Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September", "Oktober", "November", "Desember"},
		shortMonths: [12]string{"Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"},
		days:        [7]string{"Minggu", "Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu"},
		shortDays:   [7]string{"Min", "Sen", "Sel", "Rab", "Kam", "Jum", "Sab"},
	},
	"de": {
		months:      [12]string{"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"},
		shortMonths: [12]string{"Jan", "Feb", "Mär", "Apr", "Mai", "Jun", "Jul", "Aug", "Sep", "Okt", "Nov", "Dez"},
		days:        [7]string{"Sonntag", "Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag"},
		shortDays:   [7]string{"So", "Mo", "Di", "Mi", "Do", "Fr", "Sa"},
	},
	"th": {
		months:      [12]string{"มกราคม", "กุมภาพันธ์", "มีนาคม", "เมษายน", "พฤษภาคม", "มิถุนายน", "กรกฎาคม", "สิงหาคม", "กันยายน", "ตุลาคม", "พฤศจิกายน", "ธันวาคม"},
		shortMonths: [12]string{"ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค."},
		days:        [7]string{"วันอาทิตย์", "วันจันทร์", "วันอังคาร", "วันพุธ", "วันพฤหัสบดี", "วันศุกร์", "วันเสาร์"},
		shortDays:   [7]string{"อา.", "จ.", "อ.", "พ.", "พฤ.", "ศ.", "ส."},
	},
	"es": {
		months:      [12]string{"enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"},
		shortMonths: [12]string{"ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"},
		days:        [7]string{"domingo", "lunes", "martes", "miércoles", "jueves", "viernes", "sábado"},
		shortDays:   [7]string{"dom", "lun", "mar", "mié", "jue", "vie", "sáb"},
	},
	"fr": {
		months:      [12]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"},
		shortMonths: [12]string{"janv", "févr", "mars", "avr", "mai", "juin", "juil", "août", "sept", "oct", "nov", "déc"},
		days:        [7]string{"dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"},
		shortDays:   [7]string{"dim", "lun", "mar", "mer", "jeu", "ven", "sam"},
	},
}

// namesFor returns the date names of a locale's language (th_TH, pt-BR, de), or nil
// for English and unknown languages.
func namesFor(locale string) *dateNames {
	lang := locale
	if i := strings.IndexAny(locale, "_-"); i >= 0 {
		lang = locale[:i]
	}
	return localNames[strings.ToLower(lang)]
}

func (p *strftimeProg) format(t time.Time, names *dateNames) string {
	b := make([]byte, 0, 32)
	for _, part := range p.parts {
		switch {
		case part.delegate:
			s, _ := tuesday.Strftime(part.lit, t)
			b = append(b, s...)
		case part.conv == 0:
			b = append(b, part.lit...)
		case names != nil && (part.conv == 'b' || part.conv == 'h'):
			b = append(b, names.shortMonths[t.Month()-1]...)
		case names != nil && part.conv == 'B':
			b = append(b, names.months[t.Month()-1]...)
		case names != nil && part.conv == 'a':
			b = append(b, names.shortDays[t.Weekday()]...)
		case names != nil && part.conv == 'A':
			b = append(b, names.days[t.Weekday()]...)
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
