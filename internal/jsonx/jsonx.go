// Package jsonx holds the pieces of Herald's hand-written JSON encoders (events, the
// sandbox's webhooks): they must write what encoding/json writes, byte for byte. It
// also holds Output, which gives a result the shape Herald prints it in (lists as [],
// never null; times in UTC).
package jsonx

import (
	"encoding/json"
	"unicode/utf8"
)

// AppendString appends s as a JSON string, as encoding/json writes it. Plain text is
// copied as is; anything encoding/json would escape (control characters, quotes,
// backslashes, <, >, &, U+2028, U+2029, invalid UTF-8) sends the whole string through
// encoding/json, which knows its own rules best.
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			if c >= utf8.RuneSelf && plainUTF8(s[i:]) {
				break
			}
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainUTF8 reports whether s is valid UTF-8 without U+2028, U+2029 or any ASCII that
// JSON must escape.
func plainUTF8(s string) bool {
	for _, r := range s {
		switch {
		case r == utf8.RuneError, r == '\u2028', r == '\u2029':
			return false // RuneError: invalid UTF-8 (or a literal U+FFFD, which encoding/json copies as is)
		case r < 0x20, r == '"', r == '\\', r == '<', r == '>', r == '&':
			return false
		}
	}
	return true
}

// AppendField appends ,"name":"v" unless v is empty (a string field with omitempty).
func AppendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return AppendString(b, v)
}
