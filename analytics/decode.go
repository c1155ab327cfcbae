package analytics

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/herald-dev/herald/internal/events"
)

// decodeEvent decodes one herald.events message to the same Event, or an error where
// events.Unmarshal gives one. It is what the sink spends most of its CPU on, so the
// JSON that events.Event.Marshal writes takes a fast path: a scanner without
// reflection that copies the message into one string and slices every field out of it.
// Anything the scanner does not handle exactly as encoding/json would (an escape in a
// string, a null, an unknown or differently-cased key, a number with a fraction or an
// exponent, invalid JSON) goes to events.Unmarshal, as do events that fail validation,
// so errors read the same. FuzzDecodeEvent holds the two to the same results.
func decodeEvent(b []byte) (events.Event, error) {
	e, ok := scanEvent(b)
	if !ok || e.ID == "" || !e.Kind.Valid() || e.Time.IsZero() {
		return events.Unmarshal(b)
	}
	return e, nil
}

// scanEvent decodes b when it is a JSON object of the keys of events.Event with plain
// values; ok is false when it cannot be sure to decode it as encoding/json would.
func scanEvent(b []byte) (e events.Event, ok bool) {
	s := string(b) // the one allocation: every string field is a slice of it
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return e, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return e, skipSpace(s, i+1) == len(s)
	}
	for {
		key, j, ok := scanString(s, i)
		if !ok {
			return e, false
		}
		i = skipSpace(s, j)
		if i >= len(s) || s[i] != ':' {
			return e, false
		}
		i = skipSpace(s, i+1)
		switch key {
		case "id", "kind", "campaign", "sender", "channel", "template", "variant", "country",
			"provider_msg_id", "reason", "consent_ref", "order_id", "currency", "name", "properties", "from_channel":
			v, j, ok := scanString(s, i)
			if !ok {
				return e, false
			}
			switch key {
			case "id":
				e.ID = v
			case "kind":
				e.Kind = events.Kind(v)
			case "campaign":
				e.CampaignID = v
			case "sender":
				e.SenderID = v
			case "channel":
				e.Channel = v
			case "template":
				e.Template = v
			case "variant":
				e.Variant = v
			case "country":
				e.Country = v
			case "provider_msg_id":
				e.ProviderMessageID = v
			case "reason":
				e.Reason = v
			case "consent_ref":
				e.ConsentRef = v
			case "order_id":
				e.OrderID = v
			case "currency":
				e.Currency = v
			case "name":
				e.Name = v
			case "properties":
				e.Properties = v
			case "from_channel":
				e.FromChannel = v
			}
			i = j
		case "value":
			v, j, ok := scanFloat(s, i)
			if !ok {
				return e, false
			}
			e.Value, i = v, j
		case "ts", "until":
			_, j, ok := scanString(s, i)
			if !ok {
				return e, false
			}
			// encoding/json hands time.Time the quoted literal, unescaped; so does this.
			var t time.Time
			if err := t.UnmarshalJSON(b[i:j]); err != nil {
				return e, false
			}
			if key == "ts" {
				e.Time = t
			} else {
				e.Until = t
			}
			i = j
		case "contact":
			n, neg, j, ok := scanInteger(s, i)
			if !ok || neg || n > math.MaxUint32 {
				return e, false
			}
			e.ContactID, i = uint32(n), j
		case "error_code":
			n, neg, j, ok := scanInteger(s, i)
			switch {
			case !ok:
				return e, false
			case !neg && n <= math.MaxInt:
				e.ErrorCode = int(n)
			case neg && n <= -math.MinInt:
				e.ErrorCode = int(-n) // -MinInt wraps back to MinInt: what it should be
			default:
				return e, false
			}
			i = j
		case "retryable":
			switch {
			case hasLiteral(s, i, "true"):
				e.Retryable, i = true, i+4
			case hasLiteral(s, i, "false"):
				e.Retryable, i = false, i+5
			default:
				return e, false
			}
		default:
			return e, false
		}
		i = skipSpace(s, i)
		if i >= len(s) {
			return e, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return e, skipSpace(s, i+1) == len(s)
		default:
			return e, false
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the JSON string starting at s[i] and returns its contents and the
// index after its closing quote; ok is false for anything but a string without escapes,
// control characters or invalid UTF-8 (encoding/json would unescape or replace those).
func scanString(s string, i int) (v string, next int, ok bool) {
	if i >= len(s) || s[i] != '"' {
		return "", 0, false
	}
	ascii := true
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		if !stringSpecial[c] {
			continue
		}
		switch {
		case c == '"':
			v = s[i+1 : j]
			if !ascii && !utf8.ValidString(v) {
				return "", 0, false
			}
			return v, j + 1, true
		case c >= utf8.RuneSelf:
			ascii = false
		default: // a backslash or a control character
			return "", 0, false
		}
	}
	return "", 0, false
}

// stringSpecial marks the bytes scanString must look at: the closing quote, a
// backslash, control characters and non-ASCII bytes.
var stringSpecial = func() (t [256]bool) {
	for c := range t {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf
	}
	return t
}()

// scanInteger reads a JSON number at s[i] that is an integer without fraction or
// exponent: its magnitude, its sign, and the index after it. ok is false for anything
// else, or a magnitude beyond uint64.
func scanInteger(s string, i int) (n uint64, neg bool, next int, ok bool) {
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	start := i
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		d := uint64(s[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false, 0, false
		}
		n = n*10 + d
	}
	switch {
	case i == start: // no digit
		return 0, false, 0, false
	case s[start] == '0' && i-start > 1: // a leading zero: not JSON
		return 0, false, 0, false
	case i < len(s) && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'):
		return 0, false, 0, false
	}
	return n, neg, i, true
}

// scanFloat reads the JSON number at s[i] as encoding/json reads it into a float64
// (strconv.ParseFloat of the literal), and the index after it; ok is false when s[i:]
// does not start with a JSON number or its value is out of range.
func scanFloat(s string, i int) (f float64, next int, ok bool) {
	digits := func(j int) int {
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		return j
	}
	j := i
	if j < len(s) && s[j] == '-' {
		j++
	}
	switch {
	case j < len(s) && s[j] == '0':
		j++
	case j < len(s) && s[j] >= '1' && s[j] <= '9':
		j = digits(j)
	default:
		return 0, 0, false
	}
	if j < len(s) && s[j] == '.' {
		k := digits(j + 1)
		if k == j+1 {
			return 0, 0, false
		}
		j = k
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		j++
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := digits(j)
		if k == j {
			return 0, 0, false
		}
		j = k
	}
	f, err := strconv.ParseFloat(s[i:j], 64)
	if err != nil {
		return 0, 0, false
	}
	return f, j, true
}

// hasLiteral reports whether the literal lit starts at s[i] and ends there (the next
// byte cannot continue a JSON value).
func hasLiteral(s string, i int, lit string) bool {
	if len(s)-i < len(lit) || s[i:i+len(lit)] != lit {
		return false
	}
	j := i + len(lit)
	return j == len(s) || s[j] == ',' || s[j] == '}' || s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'
}
