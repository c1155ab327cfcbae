package templates

import (
	"cmp"
	"fmt"
	"reflect"
	"strings"

	"github.com/osteele/liquid/parser"
	"gopkg.in/yaml.v3"
)

// Telegram parse modes (Bot API sendMessage parse_mode). "" sends the text as it is.
const (
	ParseModeMarkdownV2 = "MarkdownV2"
	ParseModeHTML       = "HTML"
)

// Telegram limits.
const (
	// MaxTelegramText is the longest sendMessage text once entities are parsed, in characters.
	MaxTelegramText = 4096
	// MaxTelegramCaption is the longest caption of a photo or document.
	MaxTelegramCaption = 1024
	// MaxTelegramButtons bounds a template's inline URL buttons.
	MaxTelegramButtons = 20
	// MaxTelegramButtonText is the longest button label.
	MaxTelegramButtonText = 64
	// markupFactor bounds the source of a text with a parse mode: markup and escapes do
	// not count towards Telegram's limits, so the text may be this many times longer.
	markupFactor = 4
)

// Telegram is a telegram template's message options, shared by its variants.
type Telegram struct {
	// ParseMode is ParseModeMarkdownV2, ParseModeHTML or "" (plain text). With a parse
	// mode, every Liquid output ({{ … }}) of the body is escaped for it (see
	// EscapeMarkdownV2, EscapeHTML): variables never add markup; the template's own
	// literal text carries the formatting.
	ParseMode string
	Buttons   []TelegramButton // inline keyboard URL buttons, one per row
	Photo     string           // Liquid: an https URL; the body becomes the caption
	Document  string           // Liquid: an https URL; the body becomes the caption
	// NoLinkPreview turns the link preview off (link_preview_options.is_disabled).
	NoLinkPreview bool
}

// TelegramButton is an inline URL button: a label (plain text) and an https URL, both Liquid.
type TelegramButton struct {
	Text string `json:"text"`
	URL  string `json:"url"`
}

// RenderedTelegram is a rendered telegram message's options beyond Rendered.Text.
type RenderedTelegram struct {
	ParseMode     string           `json:"parse_mode,omitempty"`
	Buttons       []TelegramButton `json:"buttons"`
	Photo         string           `json:"photo,omitempty"`
	Document      string           `json:"document,omitempty"`
	NoLinkPreview bool             `json:"no_link_preview,omitempty"`
}

// mdV2Special are the characters MarkdownV2 reserves outside code and link URLs.
const mdV2Special = "_*[]()~`>#+-=|{}.!\\"

// EscapeMarkdownV2 escapes s for the text of a MarkdownV2 message: every reserved
// character (_ * [ ] ( ) ~ ` > # + - = | { } . ! and \) gets a preceding backslash.
func EscapeMarkdownV2(s string) string {
	if !strings.ContainsAny(s, mdV2Special) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(mdV2Special, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// EscapeMarkdownV2Code escapes s inside a MarkdownV2 code span or pre block: ` and \ only.
func EscapeMarkdownV2Code(s string) string { return escapeBytes(s, "`\\") }

// EscapeMarkdownV2URL escapes s inside the (…) of a MarkdownV2 inline link: ) and \ only.
func EscapeMarkdownV2URL(s string) string { return escapeBytes(s, ")\\") }

func escapeBytes(s, set string) string {
	if !strings.ContainsAny(s, set) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// telegramHTMLEscaper escapes < > & everywhere and " in attribute values.
var telegramHTMLEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

// EscapeHTML escapes s for a Telegram HTML message, text or attribute value: < > & and ".
func EscapeHTML(s string) string { return telegramHTMLEscaper.Replace(s) }

// The filters a telegram body's outputs get (added by escapeOutputs; usable by hand too).
const (
	filterTgMarkdown     = "telegram_markdown_v2"
	filterTgMarkdownCode = "telegram_markdown_v2_code"
	filterTgMarkdownURL  = "telegram_markdown_v2_url"
	filterTgHTML         = "telegram_html"
)

// mdContext is where a MarkdownV2 output lands: plain text, inside code/pre, or inside
// the URL part of an inline link.
type mdContext uint8

const (
	mdText mdContext = iota
	mdCode
	mdPre
	mdURL
)

// scanMarkdown advances the context over literal MarkdownV2 text.
func scanMarkdown(ctx mdContext, s string) mdContext {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' {
			i++ // an escaped character is text in every context
			continue
		}
		switch ctx {
		case mdText:
			switch {
			case strings.HasPrefix(s[i:], "```"):
				ctx, i = mdPre, i+2
			case c == '`':
				ctx = mdCode
			case c == ']' && i+1 < len(s) && s[i+1] == '(':
				ctx, i = mdURL, i+1
			}
		case mdCode:
			if c == '`' {
				ctx = mdText
			}
		case mdPre:
			if strings.HasPrefix(s[i:], "```") {
				ctx, i = mdText, i+2
			}
		case mdURL:
			if c == ')' {
				ctx = mdText
			}
		}
	}
	return ctx
}

// escapeOutputs rewrites a Liquid source so that every output ({{ … }}) ends with the
// escaping filter of the parse mode and of where it lands (MarkdownV2 text, code or link
// URL; HTML). Outputs inside {% capture %} are left alone (the capture is escaped where
// it is output) and so is {% raw %}. A source without outputs comes back unchanged.
func escapeOutputs(src, parseMode string) string {
	if parseMode != ParseModeMarkdownV2 && parseMode != ParseModeHTML || !strings.Contains(src, "{{") {
		return src
	}
	var (
		b       strings.Builder
		ctx     = mdText
		capture int
		raw     bool
	)
	for _, tok := range parser.Scan(src, parser.SourceLoc{}, nil) {
		switch tok.Type {
		case parser.TextTokenType:
			if parseMode == ParseModeMarkdownV2 && capture == 0 {
				ctx = scanMarkdown(ctx, tok.Source)
			}
		case parser.TagTokenType:
			switch tok.Name {
			case "capture":
				capture++
			case "endcapture":
				capture--
			case "raw":
				raw = true
			case "endraw":
				raw = false
			}
		case parser.ObjTokenType:
			if capture > 0 || raw || strings.TrimSpace(tok.Args) == "" {
				break
			}
			filter := filterTgHTML
			if parseMode == ParseModeMarkdownV2 {
				filter = map[mdContext]string{mdText: filterTgMarkdown, mdCode: filterTgMarkdownCode, mdPre: filterTgMarkdownCode, mdURL: filterTgMarkdownURL}[ctx]
			}
			open, close := "{{", "}}"
			if strings.HasPrefix(tok.Source, "{{-") {
				open = "{{-"
			}
			if strings.HasSuffix(tok.Source, "-}}") {
				close = "-}}"
			}
			b.WriteString(open + " " + strings.TrimSpace(tok.Args) + " | " + filter + " " + close)
			continue
		}
		b.WriteString(tok.Source)
	}
	return b.String()
}

// compiledTelegram is a telegram template's options with their Liquid compiled.
type compiledTelegram struct {
	parseMode     string
	buttons       []compiledTgButton
	photo, doc    *field
	noLinkPreview bool
}

type compiledTgButton struct{ text, url *field }

func (c *Compiled) compileTelegram(p *problems) {
	t := c.t
	if t.Channel != ChannelTelegram {
		if t.Telegram != nil {
			p.add(t.line("telegram"), "telegram", "only for channel telegram")
		}
		return
	}
	tg := t.Telegram
	if tg == nil {
		tg = &Telegram{}
	}
	switch tg.ParseMode {
	case "", ParseModeMarkdownV2, ParseModeHTML:
	default:
		p.add(t.line("telegram.parse_mode"), "telegram.parse_mode", "%q: want MarkdownV2, HTML or none (plain text); legacy Markdown cannot escape user data", tg.ParseMode)
	}
	if tg.Photo != "" && tg.Document != "" {
		p.add(t.line("telegram"), "telegram", "give a photo or a document, not both")
	}
	if len(tg.Buttons) > MaxTelegramButtons {
		p.add(t.line("telegram.buttons"), "telegram.buttons", "%d buttons; the limit is %d", len(tg.Buttons), MaxTelegramButtons)
	}
	fields := map[string]*field{}
	ct := &compiledTelegram{parseMode: tg.ParseMode, noLinkPreview: tg.NoLinkPreview}
	for i, bt := range tg.Buttons {
		path := fmt.Sprintf("telegram.buttons.%d", i)
		if bt.Text == "" || bt.URL == "" {
			p.add(t.line(path), path, "a button needs text and url")
		}
		ct.buttons = append(ct.buttons, compiledTgButton{
			text: c.field(fields, path+".text", bt.Text, fieldHeaderText, MaxTelegramButtonText, p),
			url:  c.field(fields, path+".url", bt.URL, fieldMediaLink, MaxMediaLink, p),
		})
	}
	if tg.Photo != "" {
		ct.photo = c.field(fields, "telegram.photo", tg.Photo, fieldMediaLink, MaxMediaLink, p)
	}
	if tg.Document != "" {
		ct.doc = c.field(fields, "telegram.document", tg.Document, fieldMediaLink, MaxMediaLink, p)
	}
	c.tg = ct
}

func (c *Compiled) renderTelegram(v *compiledVariant, b *boundedBuffer, bindings *lazyBindings) (*RenderedTelegram, error) {
	ct := c.tg
	if ct == nil {
		return nil, nil
	}
	out := &RenderedTelegram{ParseMode: ct.parseMode, NoLinkPreview: ct.noLinkPreview, Buttons: []TelegramButton{}}
	var err error
	for _, bt := range ct.buttons {
		var rb TelegramButton
		if rb.Text, err = c.renderField(v, bt.text, b, bindings); err != nil {
			return nil, err
		}
		if rb.URL, err = c.renderField(v, bt.url, b, bindings); err != nil {
			return nil, err
		}
		out.Buttons = append(out.Buttons, rb)
	}
	if ct.photo != nil {
		if out.Photo, err = c.renderField(v, ct.photo, b, bindings); err != nil {
			return nil, err
		}
	}
	if ct.doc != nil {
		if out.Document, err = c.renderField(v, ct.doc, b, bindings); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ---- the telegram section of a template file ----

type telegramDoc struct {
	line        int
	ParseMode   scalar        `yaml:"parse_mode"`
	Buttons     []tgButtonDoc `yaml:"buttons"`
	Photo       scalar        `yaml:"photo"`
	Document    scalar        `yaml:"document"`
	LinkPreview scalar        `yaml:"link_preview"`
}

type tgButtonDoc struct {
	line int
	Text scalar `yaml:"text"`
	URL  scalar `yaml:"url"`
}

func (d *telegramDoc) UnmarshalYAML(n *yaml.Node) error {
	type plain telegramDoc
	if err := strictMapping(n, reflect.TypeFor[telegramDoc]()); err != nil {
		return err
	}
	if err := n.Decode((*plain)(d)); err != nil {
		return err
	}
	d.line = n.Line
	return nil
}

func (d *tgButtonDoc) UnmarshalYAML(n *yaml.Node) error {
	type plain tgButtonDoc
	if err := strictMapping(n, reflect.TypeFor[tgButtonDoc]()); err != nil {
		return err
	}
	if err := n.Decode((*plain)(d)); err != nil {
		return err
	}
	d.line = n.Line
	return nil
}

func (d *telegramDoc) build(t *Template, p *problems) {
	tg := &Telegram{ParseMode: d.ParseMode.V, Photo: d.Photo.V, Document: d.Document.V}
	t.lines["telegram"] = d.line
	t.lines["telegram.parse_mode"] = cmp.Or(d.ParseMode.Line, d.line)
	t.lines["telegram.photo"] = cmp.Or(d.Photo.Line, d.line)
	t.lines["telegram.document"] = cmp.Or(d.Document.Line, d.line)
	t.lines["telegram.buttons"] = d.line
	switch d.LinkPreview.V {
	case "", "true":
	case "false":
		tg.NoLinkPreview = true
	default:
		p.add(d.LinkPreview.Line, "telegram.link_preview", "must be true or false")
	}
	for i, bd := range d.Buttons {
		path := fmt.Sprintf("telegram.buttons.%d", i)
		t.lines[path] = bd.line
		t.lines[path+".text"] = cmp.Or(bd.Text.Line, bd.line)
		t.lines[path+".url"] = cmp.Or(bd.URL.Line, bd.line)
		tg.Buttons = append(tg.Buttons, TelegramButton{Text: bd.Text.V, URL: bd.URL.V})
	}
	t.Telegram = tg
}
