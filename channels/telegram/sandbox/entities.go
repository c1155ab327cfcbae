package sandbox

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParseError is the Bot API's refusal of a text its parse mode cannot read: the
// description is "Bad Request: can't parse entities: " + Reason.
type ParseError struct{ Reason string }

func (e *ParseError) Error() string { return "Bad Request: can't parse entities: " + e.Reason }

func parseErr(format string, args ...any) error {
	return &ParseError{Reason: fmt.Sprintf(format, args...)}
}

// Parse returns the visible text of a message in parse mode mode ("" for plain text):
// what a Telegram user reads, with markup removed and escapes resolved, or the Bot API's
// *ParseError.
func Parse(text, mode string) (string, error) {
	switch mode {
	case "":
		return text, nil
	case "MarkdownV2":
		return ParseMarkdownV2(text)
	case "HTML":
		return ParseHTML(text)
	case "Markdown":
		return "", &badRequest{"Bad Request: legacy Markdown is not simulated by the sandbox"}
	}
	return "", &badRequest{"Bad Request: unsupported parse_mode"}
}

type badRequest struct{ desc string }

func (e *badRequest) Error() string { return e.desc }

type mdEntity struct {
	kind   string // Bold, Italic, Underline, Strikethrough, Spoiler, Code, Pre, TextUrl, CustomEmoji
	offset int    // byte offset of its start in the source
	begin  int    // where its text begins in the result
}

// ParseMarkdownV2 reads MarkdownV2 as Telegram documents it (and TDLib implements it):
// any character with code 1-126 may be escaped with a preceding '\'; outside code and
// pre the characters _ * [ ] ( ) ~ ` > # + - = | { } . ! are reserved and must be
// escaped unless they open or close an entity; inside code and pre only ` is; inside the
// (…) of an inline link ) and \ must be escaped. A line starting with > is a block quote.
func ParseMarkdownV2(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", &badRequest{"Bad Request: text must be encoded in UTF-8"}
	}
	at := func(i int) byte {
		if i < len(text) {
			return text[i]
		}
		return 0
	}
	var (
		out    strings.Builder
		nested []mdEntity
	)
	top := func() string {
		if len(nested) == 0 {
			return ""
		}
		return nested[len(nested)-1].kind
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '\\' && at(i+1) > 0 && at(i+1) <= 126 {
			i++
			out.WriteByte(text[i])
			continue
		}
		reserved := "_*[]()~`>#+-=|{}.!"
		inCode := top() == "Code" || top() == "Pre"
		if inCode {
			reserved = "`"
		}
		if c == '>' && !inCode && (i == 0 || text[i-1] == '\n') {
			continue // a block quote line
		}
		if strings.IndexByte(reserved, c) < 0 {
			out.WriteByte(c)
			continue
		}
		end := false
		switch top() {
		case "Bold":
			end = c == '*'
		case "Italic":
			end = c == '_' && at(i+1) != '_'
		case "Code":
			end = c == '`'
		case "Pre":
			end = c == '`' && at(i+1) == '`' && at(i+2) == '`'
		case "TextUrl", "CustomEmoji":
			end = c == ']'
		case "Underline":
			end = c == '_' && at(i+1) == '_'
		case "Strikethrough":
			end = c == '~'
		case "Spoiler":
			end = c == '|' && at(i+1) == '|'
		}
		if !end {
			e := mdEntity{offset: i, begin: out.Len()}
			switch c {
			case '_':
				e.kind = "Italic"
				if at(i+1) == '_' {
					e.kind = "Underline"
					i++
				}
			case '*':
				e.kind = "Bold"
			case '~':
				e.kind = "Strikethrough"
			case '|':
				if at(i+1) != '|' {
					return "", reservedErr(c)
				}
				i++
				e.kind = "Spoiler"
			case '[':
				e.kind = "TextUrl"
			case '`':
				if at(i+1) == '`' && at(i+2) == '`' {
					e.kind = "Pre"
					i += 3
					lang := i
					for lang < len(text) && !isSpace(text[lang]) && text[lang] != '`' {
						lang++
					}
					if i != lang && lang < len(text) && text[lang] != '`' {
						i = lang
					}
					if at(i) == '\n' || at(i) == '\r' {
						if (at(i+1) == '\n' || at(i+1) == '\r') && at(i) != at(i+1) {
							i += 2
						} else {
							i++
						}
					}
					i--
					e.begin = out.Len()
				} else {
					e.kind = "Code"
				}
			case '!':
				if at(i+1) == '[' {
					i++
					e.kind = "CustomEmoji"
					break
				}
				return "", reservedErr(c)
			default:
				return "", reservedErr(c)
			}
			for _, n := range nested {
				if n.kind == e.kind {
					return "", parseErr("Entity %s can't be nested in another entity of the same type at byte offset %d", e.kind, i)
				}
			}
			nested = append(nested, e)
			continue
		}
		e := nested[len(nested)-1]
		switch e.kind {
		case "Underline", "Spoiler":
			i++
		case "Pre":
			i += 2
		case "TextUrl", "CustomEmoji":
			if at(i+1) != '(' {
				if e.kind == "CustomEmoji" {
					return "", parseErr("Custom emoji entity must contain a tg://emoji URL")
				}
				break // the text is the URL
			}
			i += 2
			urlBegin := i
			var u strings.Builder
			for i < len(text) && text[i] != ')' {
				if text[i] == '\\' && at(i+1) > 0 && at(i+1) <= 126 {
					u.WriteByte(text[i+1])
					i += 2
					continue
				}
				u.WriteByte(text[i])
				i++
			}
			if at(i) != ')' {
				return "", parseErr("Can't find end of a URL at byte offset %d", urlBegin)
			}
			if e.kind == "CustomEmoji" && !strings.HasPrefix(u.String(), "tg://emoji?id=") {
				return "", parseErr("Custom emoji URL must have an emoji identifier")
			}
		}
		nested = nested[:len(nested)-1]
	}
	if len(nested) > 0 {
		e := nested[len(nested)-1]
		return "", parseErr("Can't find end of %s entity at byte offset %d", e.kind, e.offset)
	}
	return out.String(), nil
}

func reservedErr(c byte) error {
	return parseErr("Character '%c' is reserved and must be escaped with the preceding '\\'", c)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// htmlTags are the tags Telegram's HTML parse mode supports.
var htmlTags = map[string]bool{"a": true, "b": true, "strong": true, "i": true, "em": true, "s": true, "strike": true, "del": true,
	"u": true, "ins": true, "tg-spoiler": true, "tg-emoji": true, "span": true, "pre": true, "code": true, "blockquote": true}

// ParseHTML reads Telegram's HTML parse mode: the supported tags (b, strong, i, em, u,
// ins, s, strike, del, span class="tg-spoiler", tg-spoiler, a href, tg-emoji, code, pre,
// blockquote), properly nested; the entities &lt; &gt; &amp; &quot; and numeric ones
// (other & is text); every < must open or close a tag.
func ParseHTML(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", &badRequest{"Bad Request: text must be encoded in UTF-8"}
	}
	var (
		out    strings.Builder
		nested []string
	)
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch c {
		case '&':
			if s, n := htmlEntity(text[i:]); n > 0 {
				out.WriteString(s)
				i += n - 1
				continue
			}
			out.WriteByte(c)
		case '<':
			begin := i
			i++
			if i < len(text) && text[i] == '/' { // an end tag
				i++
				j := i
				for j < len(text) && text[j] != '>' {
					j++
				}
				if j == len(text) {
					return "", parseErr("Unclosed end tag at byte offset %d", begin)
				}
				name := strings.ToLower(strings.TrimSpace(text[i:j]))
				if len(nested) == 0 {
					return "", parseErr("Unexpected end tag at byte offset %d", begin)
				}
				if open := nested[len(nested)-1]; name != open {
					return "", parseErr("Unmatched end tag at byte offset %d, expected \"</%s>\", found \"</%s>\"", begin, open, name)
				}
				nested = nested[:len(nested)-1]
				i = j
				continue
			}
			j := i
			for j < len(text) && !isSpace(text[j]) && text[j] != '>' && text[j] != '/' {
				j++
			}
			name := strings.ToLower(text[i:j])
			if name == "" || !htmlTags[name] {
				return "", parseErr("Unsupported start tag \"%s\" at byte offset %d", name, begin)
			}
			// attributes up to '>'
			attrs := map[string]string{}
			for {
				for j < len(text) && isSpace(text[j]) {
					j++
				}
				if j >= len(text) {
					return "", parseErr("Unclosed start tag at byte offset %d", begin)
				}
				if text[j] == '>' {
					break
				}
				k := j
				for k < len(text) && (isAlnum(text[k]) || text[k] == '-' || text[k] == '_') {
					k++
				}
				if k == j {
					return "", parseErr("Empty attribute name in the tag \"%s\" at byte offset %d", name, j)
				}
				attr := strings.ToLower(text[j:k])
				for k < len(text) && isSpace(text[k]) {
					k++
				}
				if k >= len(text) || text[k] != '=' {
					return "", parseErr("Expected equal sign in declaration of an attribute of the tag \"%s\" at byte offset %d", name, j)
				}
				k++
				for k < len(text) && isSpace(text[k]) {
					k++
				}
				if k >= len(text) {
					return "", parseErr("Unclosed start tag \"%s\" at byte offset %d", name, begin)
				}
				var val string
				if q := text[k]; q == '"' || q == '\'' {
					e := strings.IndexByte(text[k+1:], q)
					if e < 0 {
						return "", parseErr("Unclosed start tag at byte offset %d", begin)
					}
					val = decodeEntities(text[k+1 : k+1+e])
					k += e + 2
				} else {
					e := k
					for e < len(text) && (isAlnum(text[e]) || strings.IndexByte(".-_:/?=&%#", text[e]) >= 0) {
						e++
					}
					if e == k {
						return "", parseErr("Expected quote in declaration of an attribute of the tag \"%s\" at byte offset %d", name, k)
					}
					val = decodeEntities(text[k:e])
					k = e
				}
				attrs[attr] = val
				j = k
			}
			if name == "span" && attrs["class"] != "tg-spoiler" {
				return "", parseErr("Tag \"span\" must have class \"tg-spoiler\" at byte offset %d", begin)
			}
			if name == "tg-emoji" && attrs["emoji-id"] == "" {
				return "", parseErr("Tag \"tg-emoji\" must have attribute \"emoji-id\" at byte offset %d", begin)
			}
			nested = append(nested, name)
			i = j
		default:
			out.WriteByte(c)
		}
	}
	if len(nested) > 0 {
		return "", parseErr("Can't find end tag corresponding to start tag \"%s\"", nested[len(nested)-1])
	}
	return out.String(), nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// htmlEntity decodes the entity at the start of s (&lt; &gt; &amp; &quot; &#N; &#xN;):
// its text and length, or 0 when s does not start with one.
func htmlEntity(s string) (string, int) {
	end := strings.IndexByte(s, ';')
	if end < 2 || end > 12 {
		return "", 0
	}
	name := s[1:end]
	switch name {
	case "lt":
		return "<", end + 1
	case "gt":
		return ">", end + 1
	case "amp":
		return "&", end + 1
	case "quot":
		return `"`, end + 1
	}
	if name[0] != '#' {
		return "", 0
	}
	var (
		n   uint64
		err error
	)
	if len(name) > 1 && (name[1] == 'x' || name[1] == 'X') {
		n, err = strconv.ParseUint(name[2:], 16, 32)
	} else {
		n, err = strconv.ParseUint(name[1:], 10, 32)
	}
	if err != nil || n == 0 || n > utf8.MaxRune || (n >= 0xD800 && n <= 0xDFFF) {
		return "", 0
	}
	return string(rune(n)), end + 1
}

func decodeEntities(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '&' {
			if t, n := htmlEntity(s[i:]); n > 0 {
				b.WriteString(t)
				i += n - 1
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
