package templates

import (
	"strings"
	"testing"

	"github.com/herald-dev/herald/templates/links"
)

func telegramTemplate(t *testing.T, section, body string) *Compiled {
	t.Helper()
	src := "name: t\nchannel: telegram\nlocale: en\nkind: text\nvariables:\n  name: {type: string, default: friend}\n  code: {type: string, default: X1}\n" +
		section + "body: |-\n  " + strings.ReplaceAll(body, "\n", "\n  ") + "\n"
	tpl, err := ParseFile([]byte(src), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every output is escaped for where it lands; the template's own markup is kept.
func TestTelegramEscaping(t *testing.T) {
	for _, c := range []struct {
		mode, body, name, want string
	}{
		{"MarkdownV2", "*Hi* {{ name }}\\!", "A_b*c.", `*Hi* A\_b\*c\.\!`},
		{"MarkdownV2", "code `{{ name }}`", "a`b\\c.d", "code `a\\`b\\\\c.d`"},
		{"MarkdownV2", "```\n{{ name }}\n```", "x`y", "```\nx\\`y\n```"},
		{"MarkdownV2", "[site](https://e.com/{{ name }})", "a)b.c", `[site](https://e.com/a\)b.c)`},
		{"MarkdownV2", "{% capture g %}Hi {{ name }}{% endcapture %}{{ g }}", "a.b", `Hi a\.b`},
		{"MarkdownV2", "{%- if name -%} {{- name | upcase -}} {%- endif -%}", "a.b", `A\.B`},
		{"HTML", "<b>Hi</b> {{ name }}", "<i>&\"", "<b>Hi</b> &lt;i&gt;&amp;&quot;"},
		{"HTML", `<a href="https://e.com/?n={{ name }}">x</a>`, `"><b>`, `<a href="https://e.com/?n=&quot;&gt;&lt;b&gt;">x</a>`},
		{"", "Hi {{ name }}", "<b>*x*</b>", "Hi <b>*x*</b>"},
	} {
		section := ""
		if c.mode != "" {
			section = "telegram:\n  parse_mode: " + c.mode + "\n"
		}
		r, err := telegramTemplate(t, section, c.body).Render("c", 1, map[string]any{"name": c.name})
		if err != nil {
			t.Fatalf("%s %q: %v", c.mode, c.body, err)
		}
		if r.Text != c.want {
			t.Errorf("%s %q with %q:\n got %q\nwant %q", c.mode, c.body, c.name, r.Text, c.want)
		}
	}
}

// Buttons, media and the link preview render; tracked links go to the buttons (and to
// the text unless it is MarkdownV2).
func TestTelegramOptions(t *testing.T) {
	c := telegramTemplate(t, "telegram:\n  parse_mode: MarkdownV2\n  link_preview: false\n  photo: \"https://cdn.example/{{ code }}.jpg\"\n"+
		"  buttons:\n    - {text: \"Shop {{ name }}\", url: \"https://shop.example/?c={{ code }}\"}\n", "Hi {{ name }}")
	r, err := c.Render("c", 1, map[string]any{"name": "Ann", "code": "Z9"})
	if err != nil {
		t.Fatal(err)
	}
	tg := r.Telegram
	if tg == nil || tg.ParseMode != "MarkdownV2" || !tg.NoLinkPreview || tg.Photo != "https://cdn.example/Z9.jpg" ||
		len(tg.Buttons) != 1 || tg.Buttons[0] != (TelegramButton{Text: "Shop Ann", URL: "https://shop.example/?c=Z9"}) {
		t.Fatalf("rendered %+v", tg)
	}
	codec, err := links.NewCodec([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &links.Tracker{Codec: codec, Base: "https://go.example"}
	if err := r.TrackLinks(tr, "c", 1); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Telegram.Buttons[0].URL, "https://go.example/") {
		t.Fatalf("button URL not tracked: %q", r.Telegram.Buttons[0].URL)
	}
	for _, bad := range []string{
		"telegram:\n  parse_mode: Markdown\n",
		"telegram:\n  photo: \"https://a.example/p.jpg\"\n  document: \"https://a.example/d.pdf\"\n",
		"telegram:\n  buttons:\n    - {text: \"x\"}\n",
		"telegram:\n  link_preview: maybe\n",
	} {
		src := "name: t\nchannel: telegram\nlocale: en\nkind: text\n" + bad + "body: hi\n"
		if tpl, err := ParseFile([]byte(src), "t.yaml"); err == nil {
			if _, err := Compile(tpl); err == nil {
				t.Errorf("accepted %q", bad)
			}
		}
	}
	if _, err := ParseFile([]byte("name: t\nchannel: sms\nlocale: en\nkind: text\ntelegram:\n  parse_mode: HTML\nbody: hi\n"), "t.yaml"); err == nil {
		t.Error("a telegram section on an sms template was accepted")
	}
}
