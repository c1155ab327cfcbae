package telegram_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/channels/telegram/sandbox"
	"github.com/herald-dev/herald/templates"
)

// hostileNames seed the escaping fuzzers: every reserved character of both parse modes,
// markup that would open entities, tags and entities, escapes, and code fences.
var hostileNames = []string{
	"Ann", "O'Brien", "Jean-Luc Picard.", "*bold*", "_it_", "__u__", "~s~", "||sp||", "`code`", "```pre```",
	"[link](https://evil.example)", "![e](tg://emoji?id=1)", "> quote", "#tag +1 -1 =x |y| {z} !", `back\slash`, `\`,
	`\*`, "a\\", "<b>bold</b>", "<a href=\"https://evil.example\">x</a>", "&amp; &lt; &#39; &", `"quoted"`, "Tom & Jerry <3",
	"</b>", "<", ">", "Zoë 😀 名前", "\\`", "a)b(c", "line\nbreak", "tab\there",
}

func compile(t testing.TB, mode, body string) *templates.Compiled {
	t.Helper()
	src := "name: greet\nchannel: telegram\nlocale: en\nkind: text\nvariables:\n  name: {type: string, default: friend}\n" +
		"telegram:\n  parse_mode: " + mode + "\nbody: |-\n  " + strings.ReplaceAll(body, "\n", "\n  ") + "\n"
	tpl, err := templates.ParseFile([]byte(src), "greet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := templates.Compile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzEscapedName renders a contact's name into MarkdownV2 and HTML templates that use
// it in text, bold, code, pre and link contexts, and checks with the sandbox's entity
// parser that Telegram would accept the text and that the user reads the name as it is.
func FuzzEscapedName(f *testing.F) {
	for _, n := range hostileNames {
		f.Add(n)
	}
	md := compile(f, "MarkdownV2", "*Hello* {{ name }}\\! _{{ name | upcase }}_ `{{ name }}`\n```\n{{ name }}\n```\n[{{ name }}](https://example.com/{{ name }}) {{ name }}")
	html := compile(f, "HTML", "<b>Hello</b> {{ name }}! <i>{{ name | upcase }}</i> <code>{{ name }}</code> <pre>{{ name }}</pre> <a href=\"https://example.com/?n={{ name }}\">{{ name }}</a>")
	f.Fuzz(func(t *testing.T, name string) {
		if !utf8.ValidString(name) || strings.TrimSpace(name) == "" || len(name) > 100 {
			return
		}
		for _, tc := range []struct {
			mode string
			c    *templates.Compiled
		}{{templates.ParseModeMarkdownV2, md}, {templates.ParseModeHTML, html}} {
			r, err := tc.c.Render("c1", 1, map[string]any{"name": name})
			if err != nil {
				t.Fatalf("%s: render %q: %v", tc.mode, name, err)
			}
			if r.Telegram == nil || r.Telegram.ParseMode != tc.mode {
				t.Fatalf("%s: rendered options %+v", tc.mode, r.Telegram)
			}
			visible, err := sandbox.Parse(r.Text, tc.mode)
			if err != nil {
				t.Fatalf("%s: Telegram would refuse the text for name %q: %v\ntext: %q", tc.mode, name, err, r.Text)
			}
			if !strings.Contains(visible, name) {
				t.Fatalf("%s: the user does not read the name %q in %q (sent %q)", tc.mode, name, visible, r.Text)
			}
			if want := strings.Count(r.Text, "Hello"); !strings.HasPrefix(visible, "Hello ") || want == 0 {
				t.Fatalf("%s: the template's own formatting was broken: visible %q", tc.mode, visible)
			}
		}
	})
}

// FuzzEscapers: each escaper's output, in its context, reads back as its input.
func FuzzEscapers(f *testing.F) {
	for _, n := range hostileNames {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, c := range []struct {
			mode, pre, post string
			esc             func(string) string
		}{
			{"MarkdownV2", "x", "x", templates.EscapeMarkdownV2},
			{"MarkdownV2", "*", "*", templates.EscapeMarkdownV2},
			{"MarkdownV2", "`", "`", templates.EscapeMarkdownV2Code},
			{"HTML", "<b>", "</b>", templates.EscapeHTML},
			{"HTML", "<code>", "</code>", templates.EscapeHTML},
		} {
			text := c.pre + c.esc(s) + c.post
			got, err := sandbox.Parse(text, c.mode)
			if err != nil {
				t.Fatalf("%s %q: %v (text %q)", c.mode, s, err, text)
			}
			want := s
			if c.pre == "x" {
				want = "x" + s + "x"
			}
			if got != want {
				t.Fatalf("%s %q reads as %q (text %q)", c.mode, s, got, text)
			}
		}
	})
}

// FuzzParse: the sandbox's entity parsers never panic, and what they accept has no
// reserved character left unescaped when re-escaped (a round trip through the escaper).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"*a*", "_a_", "__a__", "[a](b)", "```go\nx```", "`a`", "a.b", "<b>a</b>", "<a href='x'>y</a>",
		"&lt;&amp;&#x41;", "<span class=\"tg-spoiler\">s</span>", "||s||", ">q", "\\", "<", "&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, mode := range []string{"MarkdownV2", "HTML"} {
			v, err := sandbox.Parse(s, mode)
			if err != nil {
				continue
			}
			// What a user reads, escaped again, reads the same.
			esc := map[string]func(string) string{"MarkdownV2": templates.EscapeMarkdownV2, "HTML": templates.EscapeHTML}[mode]
			if back, err := sandbox.Parse(esc(v), mode); err != nil || back != v {
				t.Fatalf("%s: %q reads as %q; escaped again it reads %q, %v", mode, s, v, back, err)
			}
		}
	})
}

// FuzzDecodeUpdate: the update decoder never panics, and what it decodes names a chat.
func FuzzDecodeUpdate(f *testing.F) {
	for _, s := range []string{
		`{"update_id":1,"message":{"message_id":2,"date":1700000000,"chat":{"id":42,"type":"private"},"text":"/start abc"}}`,
		`{"update_id":1,"message":{"message_id":2,"date":1700000000,"chat":{"id":42,"type":"private"},"text":"/stop"}}`,
		`{"update_id":1,"message":{"message_id":2,"date":1700000000,"chat":{"id":-42,"type":"group"},"text":"hi","reply_to_message":{"message_id":1}}}`,
		`{"update_id":1,"edited_message":{}}`, `{}`, `[]`, `{"update_id":1,"message":{"message_id":0}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := telegram.DecodeUpdate(b, "1")
		if err != nil {
			if len(d.Inbound)+len(d.Preferences) != 0 {
				t.Fatalf("an error (%v) with decoded %+v", err, d)
			}
			return
		}
		for _, in := range d.Inbound {
			if in.From == "" || in.MessageID == "" || !telegram.ValidChatID(in.From) {
				t.Fatalf("inbound %+v", in)
			}
		}
		for _, p := range d.Preferences {
			if p.From == "" || p.ID == "" || p.Proof == "" {
				t.Fatalf("preference %+v", p)
			}
		}
	})
}
