package sandbox

import "testing"

// Cases from the Bot API's formatting-options documentation and TDLib's parser.
func TestParse(t *testing.T) {
	for _, c := range []struct {
		mode, text, visible, err string
	}{
		{"MarkdownV2", "*bold \\*text*", "bold *text", ""},
		{"MarkdownV2", "_italic \\*text_", "italic *text", ""},
		{"MarkdownV2", "__underline__ ~strike~ ||spoiler||", "underline strike spoiler", ""},
		{"MarkdownV2", "*bold _italic bold ~italic bold strikethrough ||spoiler||~ __underline italic bold___ bold*", "bold italic bold italic bold strikethrough spoiler underline italic bold bold", ""},
		{"MarkdownV2", "[inline URL](http://www.example.com/)", "inline URL", ""},
		{"MarkdownV2", "[url](http://e.com/a\\)b)", "url", ""},
		{"MarkdownV2", "`inline fixed-width code`", "inline fixed-width code", ""},
		{"MarkdownV2", "```python\nprint(1)\n```", "print(1)\n", ""},
		{"MarkdownV2", "`a\\`b`", "a`b", ""},
		{"MarkdownV2", ">quote\n>more", "quote\nmore", ""},
		{"MarkdownV2", "a\\\\b", "a\\b", ""},
		{"MarkdownV2", "Sale 5.3", "", "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"},
		{"MarkdownV2", "a-b", "", "Bad Request: can't parse entities: Character '-' is reserved and must be escaped with the preceding '\\'"},
		{"MarkdownV2", "*bold", "", "Bad Request: can't parse entities: Can't find end of Bold entity at byte offset 0"},
		{"MarkdownV2", "x [a](b", "", "Bad Request: can't parse entities: Can't find end of a URL at byte offset 6"},
		{"HTML", "<b>bold</b>, <strong>bold</strong> <i>i</i> <a href=\"http://e.com/?a=1&amp;b=2\">link</a>", "bold, bold i link", ""},
		{"HTML", "<span class=\"tg-spoiler\">s</span> <tg-spoiler>t</tg-spoiler> <pre><code class=\"language-go\">x</code></pre>", "s t x", ""},
		{"HTML", "1 &lt; 2 &amp;&amp; 3 &gt; 2 &quot;q&quot; &#39; &#x41; & AT&T", "1 < 2 && 3 > 2 \"q\" ' A & AT&T", ""},
		{"HTML", "a < b", "", "Bad Request: can't parse entities: Unsupported start tag \"\" at byte offset 2"},
		{"HTML", "<x>y</x>", "", "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0"},
		{"HTML", "<b>bold", "", "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""},
		{"HTML", "<b><i>x</b></i>", "", "Bad Request: can't parse entities: Unmatched end tag at byte offset 7, expected \"</i>\", found \"</b>\""},
		{"HTML", "x</b>", "", "Bad Request: can't parse entities: Unexpected end tag at byte offset 1"},
		{"HTML", "<a href=\"x", "", "Bad Request: can't parse entities: Unclosed start tag at byte offset 0"},
	} {
		got, err := Parse(c.text, c.mode)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%s %q: %q, %v; want error %q", c.mode, c.text, got, err, c.err)
		case c.err == "" && (err != nil || got != c.visible):
			t.Errorf("%s %q: %q, %v; want %q", c.mode, c.text, got, err, c.visible)
		}
	}
}
