package templates

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	e "github.com/osteele/liquid/expressions"
	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/render"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

// Render errors wrap one of these; RenderError.Reason names them for metrics.
var (
	ErrMissingVariable = errors.New("missing required variable")
	ErrBadVariable     = errors.New("bad variable value")
	ErrEmpty           = errors.New("renders empty")
	ErrTooLong         = errors.New("too long")
	ErrParamFormat     = errors.New("parameter format")
	ErrLiquid          = errors.New("liquid error")
	ErrInternal        = errors.New("internal error")
)

// RenderError is a render that failed: which template, variant and field, and why.
type RenderError struct {
	Template  string
	Version   int
	Variant   string
	Field     string   // e.g. whatsapp.body.first_name, or variables.coupon
	Variables []string // the declared variables the field uses
	Err       error    // wraps one of the Err* sentinels
}

func (e *RenderError) Error() string {
	var b strings.Builder
	b.WriteString("render ")
	b.WriteString(e.Template)
	if e.Version > 0 {
		fmt.Fprintf(&b, " v%d", e.Version)
	}
	if e.Variant != "" && e.Variant != "default" {
		fmt.Fprintf(&b, " (variant %s)", e.Variant)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RenderError) Unwrap() error { return e.Err }

// Reason is a bounded label for metrics and skip reasons.
func (e *RenderError) Reason() string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrMissingVariable, "missing_variable"},
		{ErrBadVariable, "bad_variable"},
		{ErrEmpty, "empty"},
		{ErrTooLong, "too_long"},
		{ErrParamFormat, "param_format"},
		{ErrLiquid, "liquid"},
	} {
		if errors.Is(e.Err, r.err) {
			return r.reason
		}
	}
	return "internal"
}

// Rendered is one message, ready for a channel adapter.
type Rendered struct {
	Template string `json:"template"`
	Version  int    `json:"version,omitempty"`
	Variant  string `json:"variant"`
	Kind     Kind   `json:"kind"`
	Category string `json:"category,omitempty"` // whatsapp_template: MARKETING, UTILITY, AUTHENTICATION
	// Text is the body of a KindText message.
	Text string `json:"text,omitempty"`
	// WhatsApp is the Cloud API template object of a KindWhatsAppTemplate message.
	WhatsApp *graph.Template `json:"whatsapp,omitempty"`
	// FreeForm is true for WhatsApp text: it may only be sent inside the 24h window.
	FreeForm bool `json:"free_form"`
	// Channel is the template's channel: whatsapp, sms or email.
	Channel string `json:"channel"`
	// SMSSegments and SMSEncoding describe an SMS body (channel sms).
	SMSSegments int    `json:"sms_segments,omitempty"`
	SMSEncoding string `json:"sms_encoding,omitempty"`
	// Email is the rendered email (kind email).
	Email *RenderedEmail `json:"email,omitempty"`
	// Telegram is a telegram message's parse mode, buttons and media (channel telegram).
	Telegram *RenderedTelegram `json:"telegram,omitempty"`
}

// RenderedEmail is a rendered email.
type RenderedEmail struct {
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html,omitempty"`
}

// Compiled is a template with every Liquid field parsed once. It is immutable and safe
// for concurrent use.
type Compiled struct {
	t        *Template
	cfg      render.Config
	vars     []compiledVar
	declared []string
	variants []compiledVariant
	total    uint64
	slowOnly bool              // tests: render every field through osteele
	tg       *compiledTelegram // channel telegram
}

type compiledVar struct {
	name     string
	typ      string
	def      any
	example  any
	required bool
}

type compiledVariant struct {
	name  string
	upTo  uint64 // cumulative weight: chosen when hash % total < upTo
	text  *field
	wa    *compiledWhatsApp
	email *compiledEmail
}

type compiledEmail struct {
	subject, text, html *field
}

type compiledWhatsApp struct {
	name, language, category string
	preview                  string
	previewPath              string
	header                   *compiledHeader
	params                   []compiledParam
	buttons                  []compiledButton
}

type compiledHeader struct {
	typ      string
	f        *field // text, or the media link
	id       string
	filename *field
}

type compiledParam struct {
	name string
	f    *field
}

type compiledButton struct {
	index   int
	subType string
	f       *field
}

// field is one Liquid source, parsed and compiled.
type field struct {
	path     string
	line     int
	constant string      // when node is nil
	node     render.Node // nil: no Liquid in the source
	fast     *fastProg   // node's fast program; nil: osteele renders it
	vars     []string    // declared variables it uses
	limit    int         // characters
	kind     fieldKind
}

type fieldKind uint8

const (
	fieldText fieldKind = iota
	fieldBodyParam
	fieldURLParam
	fieldPayload
	fieldSubject
	fieldEmailBody
	fieldHeaderText
	fieldMediaLink
)

// Template returns the template c was compiled from. Do not modify it.
func (c *Compiled) Template() *Template { return c.t }

// Variant returns the name of the variant (campaign, contact) gets.
func (c *Compiled) Variant(campaign string, contact uint32) string {
	return c.pick(campaign, contact).name
}

// Compile validates t and parses its Liquid once. Templates from ParseFile compile
// without error; the error is a list of *FieldError.
func Compile(t *Template) (*Compiled, error) {
	return compile(t, &problems{file: t.file})
}

func compile(t *Template, p *problems) (*Compiled, error) {
	c := &Compiled{t: t, cfg: liquidConfig()}
	c.checkHead(p)
	c.compileVars(p)
	c.compileVariants(p)
	c.compileTelegram(p)
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	c.checkExamples(p)
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	return c, nil
}

func (t *Template) line(path string) int { return t.lines[path] }

func (c *Compiled) checkHead(p *problems) {
	t := c.t
	switch {
	case t.Name == "":
		p.add(t.line("name"), "name", "required: the template's name, like spring_sale")
	case !nameRE.MatchString(t.Name) || len(t.Name) > maxNameLen:
		p.add(t.line("name"), "name", "%q must be lowercase letters, digits and _ only", t.Name)
	}
	switch {
	case t.Channel == "":
		p.add(t.line("channel"), "channel", "required: whatsapp, sms, email, telegram or line")
	case t.Channel != ChannelWhatsApp && t.Channel != ChannelSMS && t.Channel != ChannelEmail && t.Channel != ChannelTelegram && t.Channel != ChannelLINE:
		p.add(t.line("channel"), "channel", "unknown channel %q (supported: whatsapp, sms, email, telegram, line)", t.Channel)
	case t.Kind == KindWhatsAppTemplate && t.Channel != ChannelWhatsApp,
		t.Kind == KindEmail && t.Channel != ChannelEmail,
		t.Kind == KindText && t.Channel == ChannelEmail,
		t.Kind != KindText && t.Channel == ChannelTelegram:
		want := map[Kind]string{KindWhatsAppTemplate: "whatsapp", KindEmail: "email", KindText: "whatsapp, sms, telegram or line"}[t.Kind]
		p.add(t.line("kind"), "kind", "kind %s is for channel %s, not %s", t.Kind, want, t.Channel)
	}
	switch {
	case t.Locale == "":
		p.add(t.line("locale"), "locale", "required: a locale like en_US")
	case !localeRE.MatchString(t.Locale):
		p.add(t.line("locale"), "locale", "%q is not a locale like en_US or pt_BR", t.Locale)
	}
	switch t.Kind {
	case KindText, KindWhatsAppTemplate, KindEmail:
	case "":
		p.add(t.line("kind"), "kind", "required: text (free-form, only inside the 24h window), whatsapp_template or email")
	default:
		p.add(t.line("kind"), "kind", "unknown kind %q (text, whatsapp_template or email)", t.Kind)
	}
}

func (c *Compiled) compileVars(p *problems) {
	t := c.t
	for _, v := range t.Variables {
		path := "variables." + v.Name
		line := t.line(path)
		switch {
		case !varNameRE.MatchString(v.Name) || reserved[v.Name]:
			p.add(line, path, "%q is not a usable variable name: letters, digits and _, not starting with a digit, not a Liquid keyword", v.Name)
		case slices.Contains(c.declared, v.Name):
			p.add(line, path, "declared twice")
		}
		c.declared = append(c.declared, v.Name)
		cv := compiledVar{name: v.Name, typ: v.Type, required: v.Required}
		if cv.typ == "" {
			cv.typ = TypeString
		}
		switch cv.typ {
		case TypeString, TypeNumber, TypeBool, TypeDate:
		default:
			p.add(t.line(path+".type"), path+".type", "unknown type %q (string, number, bool or date)", v.Type)
			continue
		}
		var err error
		if v.Default != nil {
			if cv.required {
				p.add(t.line(path+".default"), path+".default", "a required variable has no default: drop one of them")
			}
			if cv.def, err = bindValue(v.Default, cv.typ); err != nil {
				p.add(t.line(path+".default"), path+".default", "%v", err)
			}
		}
		if v.Example != nil {
			if cv.example, err = bindValue(v.Example, cv.typ); err != nil {
				p.add(t.line(path+".example"), path+".example", "%v", err)
			}
		}
		c.vars = append(c.vars, cv)
	}
}

func (c *Compiled) compileVariants(p *problems) {
	t := c.t
	switch {
	case len(t.Variants) == 0:
		if t.Kind == KindText || t.Kind == KindWhatsAppTemplate || t.Kind == KindEmail {
			p.add(0, "variants", "a template needs a body (text), a whatsapp section or an email section")
		}
		return
	case len(t.Variants) > MaxVariants:
		p.add(t.line("variants"), "variants", "%d variants; the limit is %d", len(t.Variants), MaxVariants)
		return
	}
	fields := map[string]*field{} // inherited fields are compiled once
	var names []string
	for i := range t.Variants {
		v := &t.Variants[i]
		vpath := variantField(i, v.Name)
		single := len(t.Variants) == 1
		name := v.Name
		switch {
		case single && v.Name == "":
			name = "default"
		case v.Name == "":
			p.add(t.line(vpath), vpath+".name", "required: a short name like a or short_copy")
		case !nameRE.MatchString(v.Name) || len(v.Name) > 64:
			p.add(t.line(vpath+".name"), vpath+".name", "%q must be lowercase letters, digits and _ only", v.Name)
		case slices.Contains(names, v.Name):
			p.add(t.line(vpath+".name"), vpath+".name", "variant %q is listed twice", v.Name)
		}
		names = append(names, name)
		if v.Weight < 0 || v.Weight > MaxWeight {
			p.add(t.line(vpath+".weight"), vpath+".weight", "%d must be from 0 to %d", v.Weight, MaxWeight)
		}
		c.total += uint64(max(v.Weight, 0))
		cv := compiledVariant{name: name, upTo: c.total}
		prefix := ""
		if !single {
			prefix = vpath + "."
		}
		switch t.Kind {
		case KindText:
			if v.WhatsApp != nil {
				p.add(t.line(vpath), prefix+"whatsapp", "only for kind whatsapp_template")
			}
			path := cmp.Or(v.paths.body, prefix+"body")
			if v.Body == "" {
				p.add(t.line(path), path, "required for kind text: the message, in Liquid")
			}
			limit := MaxTextBody
			if t.Channel == ChannelSMS {
				limit = MaxSMSChars
			}
			if t.Channel == ChannelLINE {
				limit = MaxLINEChars
			}
			body := v.Body
			if t.Channel == ChannelTelegram && t.Telegram != nil {
				body = escapeOutputs(body, t.Telegram.ParseMode)
				if t.Telegram.Photo != "" || t.Telegram.Document != "" {
					limit = MaxTelegramCaption
				}
				if t.Telegram.ParseMode != "" {
					// Telegram counts the text once its entities are parsed: markup and
					// escapes are free. Bound the source generously; Telegram refuses the rest.
					limit *= markupFactor
				}
			}
			cv.text = c.field(fields, path, body, fieldText, limit, p)
		case KindEmail:
			if v.Email == nil {
				p.add(t.line("email"), "email", "required for kind email: subject and text (the plain-text part), html optional")
				break
			}
			if v.Email.Subject == "" {
				p.add(t.line("email.subject"), "email.subject", "required: the subject line, in Liquid")
			}
			if v.Email.Text == "" {
				p.add(t.line("email.text"), "email.text", "required: the plain-text part, in Liquid (mail without one lands in spam)")
			}
			ce := &compiledEmail{
				subject: c.field(fields, "email.subject", v.Email.Subject, fieldSubject, MaxEmailSubject, p),
				text:    c.field(fields, "email.text", v.Email.Text, fieldEmailBody, MaxEmailBody, p),
			}
			if v.Email.HTML != "" {
				ce.html = c.field(fields, "email.html", v.Email.HTML, fieldEmailBody, MaxEmailBody, p)
			}
			cv.email = ce
		case KindWhatsAppTemplate:
			if v.Body != "" {
				p.add(t.line(prefix+"body"), prefix+"body", "kind whatsapp_template takes its parameters under whatsapp.body")
			}
			if v.WhatsApp == nil {
				p.add(t.line(vpath), prefix+"whatsapp", "required for kind whatsapp_template: name, category and body parameters")
				break
			}
			cv.wa = c.compileWhatsApp(v, prefix+"whatsapp", fields, p)
		}
		c.variants = append(c.variants, cv)
	}
	if c.total == 0 {
		p.add(t.line("variants"), "variants", "the weights add up to 0: give at least one variant a weight")
	}
}

func (c *Compiled) compileWhatsApp(v *Variant, section string, fields map[string]*field, p *problems) *compiledWhatsApp {
	t, wa := c.t, v.WhatsApp
	out := &compiledWhatsApp{name: wa.Name, language: cmp.Or(wa.Language, t.Locale), category: wa.Category}
	at := func(key string) (int, string) {
		for _, s := range []string{section, "whatsapp"} {
			if l := t.line(s + "." + key); l > 0 {
				return l, s + "." + key
			}
		}
		return 0, section + "." + key
	}
	switch line, path := at("name"); {
	case wa.Name == "":
		p.add(line, path, "required: the approved template's name at Meta")
	case !paramRE.MatchString(wa.Name) || len(wa.Name) > maxNameLen:
		p.add(line, path, "%q is not a WhatsApp template name (lowercase letters, digits and _)", wa.Name)
	}
	if line, path := at("language"); out.language != t.Locale && !localeRE.MatchString(out.language) {
		p.add(line, path, "%q is not a language code like en_US", out.language)
	}
	switch line, path := at("category"); wa.Category {
	case CategoryMarketing, CategoryUtility, CategoryAuthentication:
	case "":
		p.add(line, path, "required: MARKETING, UTILITY or AUTHENTICATION")
	default:
		p.add(line, path, "unknown category %q (MARKETING, UTILITY or AUTHENTICATION)", wa.Category)
	}

	if h := wa.Header; h != nil {
		out.header = c.compileHeader(h, cmp.Or(v.paths.header, section+".header"), fields, p)
	}

	bodyPath := cmp.Or(v.paths.bodySection, section+".body")
	if len(wa.Params) > MaxParams {
		p.add(t.line(bodyPath), bodyPath, "%d parameters; the limit is %d", len(wa.Params), MaxParams)
		return out
	}
	named := len(wa.Params) > 0 && wa.Params[0].Name != ""
	var seen []string
	for i, prm := range wa.Params {
		path := fmt.Sprintf("%s.%d", bodyPath, i+1)
		if prm.Name != "" {
			path = bodyPath + "." + prm.Name
		}
		if i < len(v.paths.params) {
			path = v.paths.params[i]
		}
		switch {
		case (prm.Name != "") != named:
			p.add(t.line(path), path, "mixes named and positional parameters: a template uses one or the other")
		case named && !paramRE.MatchString(prm.Name):
			p.add(t.line(path), path, "%q is not a WhatsApp parameter name (lowercase letters, digits and _)", prm.Name)
		case named && slices.Contains(seen, prm.Name):
			p.add(t.line(path), path, "parameter %q is listed twice", prm.Name)
		}
		seen = append(seen, prm.Name)
		out.params = append(out.params, compiledParam{name: prm.Name, f: c.field(fields, path, prm.Text, fieldBodyParam, MaxParamText, p)})
	}

	buttonsPath := section + ".buttons"
	if len(wa.Buttons) > MaxButtons {
		p.add(t.line(fmt.Sprintf("%s[%d]", buttonsPath, MaxButtons)), buttonsPath, "%d buttons; a WhatsApp template has at most %d", len(wa.Buttons), MaxButtons)
		return out
	}
	var indexes []int
	for i, b := range wa.Buttons {
		path := fmt.Sprintf("%s[%d]", buttonsPath, i)
		if i < len(v.paths.buttons) {
			path = v.paths.buttons[i]
		}
		switch {
		case b.Index < 0 || b.Index >= MaxButtons:
			p.add(cmp.Or(t.line(path+".index"), t.line(path)), path+".index", "required: the button's position in the approved template, from 0 to %d", MaxButtons-1)
		case slices.Contains(indexes, b.Index):
			p.add(t.line(path+".index"), path+".index", "button %d is listed twice", b.Index)
		}
		indexes = append(indexes, b.Index)
		cb := compiledButton{index: b.Index, subType: b.SubType}
		switch b.SubType {
		case ButtonURL:
			if b.Payload != "" {
				p.add(t.line(path+".payload"), path+".payload", "a url button has text (the URL suffix), not a payload")
			}
			if b.Text == "" {
				p.add(t.line(path), path+".text", "required for a url button: the URL suffix, in Liquid")
			}
			cb.f = c.field(fields, path+".text", b.Text, fieldURLParam, MaxParamText, p)
		case ButtonQuickReply:
			if b.Text != "" {
				p.add(t.line(path+".text"), path+".text", "a quick_reply button has a payload, not text")
			}
			if b.Payload == "" {
				p.add(t.line(path), path+".payload", "required for a quick_reply button, in Liquid")
			}
			cb.f = c.field(fields, path+".payload", b.Payload, fieldPayload, MaxParamText, p)
		case "":
			p.add(t.line(path), path+".sub_type", "required: url or quick_reply")
		default:
			p.add(t.line(path+".sub_type"), path+".sub_type", "unknown sub_type %q (url or quick_reply)", b.SubType)
		}
		out.buttons = append(out.buttons, cb)
	}

	out.preview, out.previewPath = t.Preview, "preview"
	if v.Preview != "" {
		out.preview, out.previewPath = v.Preview, variantField(slices.IndexFunc(t.Variants, func(x Variant) bool { return x.Name == v.Name }), v.Name)+".preview"
	}
	return out
}

func (c *Compiled) compileHeader(h *Header, path string, fields map[string]*field, p *problems) *compiledHeader {
	t := c.t
	out := &compiledHeader{typ: h.Type}
	switch h.Type {
	case HeaderText:
		if h.Text == "" {
			p.add(t.line(path+".text"), path+".text", "required for a text header: its {{1}} parameter, in Liquid")
		}
		for key, val := range map[string]string{"link": h.Link, "id": h.ID, "filename": h.Filename} {
			if val != "" {
				p.add(t.line(path+"."+key), path+"."+key, "only for media headers (image, document, video)")
			}
		}
		out.f = c.field(fields, path+".text", h.Text, fieldHeaderText, MaxHeaderText, p)
	case HeaderImage, HeaderDocument, HeaderVideo:
		if h.Text != "" {
			p.add(t.line(path+".text"), path+".text", "only for text headers")
		}
		switch {
		case (h.Link == "") == (h.ID == ""):
			p.add(t.line(path), path+".link", "a media header has a link (an https URL, in Liquid) or the id of uploaded media, not both")
		case h.ID != "" && !mediaIDRE.MatchString(h.ID):
			p.add(t.line(path+".id"), path+".id", "%q is not a media id (digits)", h.ID)
		}
		if h.Link != "" {
			out.f = c.field(fields, path+".link", h.Link, fieldMediaLink, MaxMediaLink, p)
		}
		out.id = h.ID
		if h.Filename != "" {
			if h.Type != HeaderDocument {
				p.add(t.line(path+".filename"), path+".filename", "only for document headers")
			}
			out.filename = c.field(fields, path+".filename", h.Filename, fieldBodyParam, 240, p)
		}
	case "":
		p.add(t.line(path), path+".type", "required: text, image, document or video")
	default:
		p.add(t.line(path+".type"), path+".type", "unknown header type %q (text, image, document or video)", h.Type)
	}
	return out
}

var mediaIDRE = regexp.MustCompile(`^[0-9]{1,32}$`)

// field parses and checks one Liquid source.
func (c *Compiled) field(fields map[string]*field, path, src string, kind fieldKind, limit int, p *problems) *field {
	if f, ok := fields[path]; ok {
		return f
	}
	base := c.t.line(path)
	f := &field{path: path, line: base, limit: limit, kind: kind}
	fields[path] = f
	if len(src) > MaxFieldBytes {
		p.add(base, path, "source is %d bytes; the limit is %d", len(src), MaxFieldBytes)
		return f
	}
	if !strings.Contains(src, "{{") && !strings.Contains(src, "{%") {
		f.constant = src
		return f
	}
	lineOf := func(l int) int {
		if base == 0 {
			return 0
		}
		return l
	}
	loc := parser.SourceLoc{LineNo: max(base, 1)}
	var ast parser.ASTNode
	if err := parseSafely(loc, func() (err parser.Error) { ast, err = c.cfg.Parse(src, loc); return }); err != nil {
		p.add(lineOf(err.LineNumber()), path, "%s", liquidMessage(err))
		return f
	}
	a := analyze(ast, c.declared)
	for _, pr := range a.problems {
		p.add(lineOf(pr.line), path, "%s", pr.msg)
	}
	if len(a.problems) > 0 {
		return f
	}
	var node render.Node
	if err := parseSafely(loc, func() (err parser.Error) { node, err = c.cfg.Compile(src, loc); return }); err != nil {
		p.add(lineOf(err.LineNumber()), path, "%s", liquidMessage(err))
		return f
	}
	f.node, f.vars = node, a.vars
	f.fast = c.compileFast(src)
	return f
}

// parseSafely runs an osteele parse or compile: its lexer panics on integer literals
// that overflow int64, and its parser re-panics what it does not recognize.
func parseSafely(loc parser.SourceLoc, fn func() parser.Error) (err parser.Error) {
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			var ne *strconv.NumError
			if e, ok := r.(error); ok && errors.As(e, &ne) {
				msg = fmt.Sprintf("number %s is out of range", ne.Num)
			}
			err = parser.Errorf(parser.Token{SourceLoc: loc}, "%s", msg)
		}
	}()
	return fn()
}

var previewRE = regexp.MustCompile(`\{\{\s*([^{}\s]*)\s*\}\}`)

// checkExamples renders every variant with the variables' examples (else defaults, else
// placeholders) and checks the result against the channel limits and the preview.
func (c *Compiled) checkExamples(p *problems) {
	sample := make(map[string]any, len(c.vars))
	for _, v := range c.vars {
		switch {
		case v.example != nil:
			sample[v.name] = v.example
		case v.def != nil:
			sample[v.name] = v.def
		default:
			sample[v.name] = placeholder(v)
		}
	}
	for i := range c.variants {
		v := &c.variants[i]
		r, err := c.render(v, sample)
		if err != nil {
			var re *RenderError
			if errors.As(err, &re) {
				p.add(c.t.line(re.Field), re.Field, "with the example values%s: %v", describeVars(re.Variables, sample), re.Err)
			} else {
				p.add(0, "", "with the example values: %v", err)
			}
			continue
		}
		if v.wa != nil && v.wa.preview != "" {
			c.checkPreview(v.wa, r.WhatsApp, p)
		}
	}
}

func placeholder(v compiledVar) any {
	switch v.typ {
	case TypeNumber:
		return int64(1)
	case TypeBool:
		return true
	case TypeDate:
		return "2025-01-15T10:00:00Z"
	}
	return v.name
}

func describeVars(names []string, vals map[string]any) string {
	if len(names) == 0 {
		return ""
	}
	parts := make([]string, len(names))
	for i, n := range names {
		v := vals[n]
		if s, ok := v.(string); ok {
			v = truncate(s, 40, "...")
		}
		b, _ := json.Marshal(v)
		parts[i] = n + "=" + string(b)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// checkPreview checks that preview's placeholders are the template's parameters and
// that the body, filled with the example render, fits MaxTemplateBody.
func (c *Compiled) checkPreview(wa *compiledWhatsApp, r *graph.Template, p *problems) {
	path, line := wa.previewPath, c.t.line(wa.previewPath)
	var got []string
	for _, m := range previewRE.FindAllStringSubmatch(wa.preview, -1) {
		got = append(got, m[1])
	}
	var want []string
	for i, prm := range wa.params {
		want = append(want, cmp.Or(prm.name, strconv.Itoa(i+1)))
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			p.add(line, path, "{{%s}} is not a parameter of whatsapp.body (parameters: %s)", g, declaredList(want))
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			p.add(line, path, "parameter %s is not in the preview: the approved body must use {{%s}}", w, w)
		}
	}
	texts := map[string]string{}
	if r != nil {
		for _, comp := range r.Components {
			if comp.Type != "body" {
				continue
			}
			for i, prm := range comp.Parameters {
				texts[cmp.Or(prm.ParameterName, strconv.Itoa(i+1))] = prm.Text
			}
		}
	}
	body := previewRE.ReplaceAllStringFunc(wa.preview, func(m string) string {
		return texts[previewRE.FindStringSubmatch(m)[1]]
	})
	if n := utf8.RuneCountInString(body); n > MaxTemplateBody {
		p.add(line, path, "with the example values the body is %d characters; WhatsApp allows %d", n, MaxTemplateBody)
	}
}

// ---- rendering ----

// variantHash is fmix64(FNV-1a-64(campaign + ":" + decimal contact)): FNV-1a alone
// leaves the low bits tied to the contact id's last digit.
func variantHash(campaign string, contact uint32) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(campaign); i++ {
		h ^= uint64(campaign[i])
		h *= prime
	}
	h ^= ':'
	h *= prime
	var buf [10]byte
	for _, b := range strconv.AppendUint(buf[:0], uint64(contact), 10) {
		h ^= uint64(b)
		h *= prime
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func (c *Compiled) pick(campaign string, contact uint32) *compiledVariant {
	if len(c.variants) == 1 {
		return &c.variants[0]
	}
	x := variantHash(campaign, contact) % c.total
	for i := range c.variants {
		if x < c.variants[i].upTo {
			return &c.variants[i]
		}
	}
	return &c.variants[len(c.variants)-1]
}

var bufPool = sync.Pool{New: func() any { return &boundedBuffer{max: MaxValueBytes, buf: make([]byte, 0, 512)} }}

// Render renders the message for one contact of a campaign. The variant is chosen
// deterministically from (campaign, contact); vars holds the contact's values (strings,
// numbers, booleans; time.Time for dates). Only declared variables are read; missing
// ones take their default. Errors are *RenderError.
func (c *Compiled) Render(campaign string, contact uint32, vars map[string]any) (Rendered, error) {
	return c.render(c.pick(campaign, contact), vars)
}

// RenderVariant renders a named variant, whatever the weights say: for test sends and
// previews.
func (c *Compiled) RenderVariant(variant string, vars map[string]any) (Rendered, error) {
	for i := range c.variants {
		if c.variants[i].name == variant {
			return c.render(&c.variants[i], vars)
		}
	}
	return Rendered{}, fmt.Errorf("render %s: no variant %q", c.t.Name, variant)
}

func (c *Compiled) render(v *compiledVariant, vars map[string]any) (r Rendered, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = c.fail(v, nil, "", fmt.Errorf("%w: %v", ErrInternal, x))
		}
	}()
	var arr [16]any
	vals := arr[:0]
	if len(c.vars) <= len(arr) {
		vals = arr[:len(c.vars)]
	} else {
		vals = make([]any, len(c.vars))
	}
	if err := c.bind(v, vars, vals); err != nil {
		return r, err
	}
	bindings := &lazyBindings{c: c, vals: vals}
	b := bufPool.Get().(*boundedBuffer)
	defer bufPool.Put(b)
	r = Rendered{Template: c.t.Name, Version: c.t.Version, Variant: v.name, Kind: c.t.Kind, Channel: c.t.Channel}
	if v.text != nil {
		if r.Text, err = c.renderField(v, v.text, b, bindings); err != nil {
			return Rendered{}, err
		}
		if c.t.Channel == ChannelSMS {
			r.SMSSegments, r.SMSEncoding = SMSSegments(r.Text)
			if r.SMSSegments > MaxSMSSegments {
				return Rendered{}, c.fail(v, v.text, "", fmt.Errorf("%w: %d %s segments; the limit is %d (%s)",
					ErrTooLong, r.SMSSegments, r.SMSEncoding, MaxSMSSegments, smsHint(r.SMSEncoding)))
			}
			return r, nil
		}
		if c.t.Channel == ChannelTelegram {
			if r.Telegram, err = c.renderTelegram(v, b, bindings); err != nil {
				return Rendered{}, err
			}
			return r, nil
		}
		if c.t.Channel == ChannelLINE {
			return r, nil // LINE has no customer-service window: text is not free-form there
		}
		r.FreeForm = true
		return r, nil
	}
	if v.email != nil {
		e := &RenderedEmail{}
		if e.Subject, err = c.renderField(v, v.email.subject, b, bindings); err != nil {
			return Rendered{}, err
		}
		if e.Text, err = c.renderField(v, v.email.text, b, bindings); err != nil {
			return Rendered{}, err
		}
		if v.email.html != nil {
			if e.HTML, err = c.renderField(v, v.email.html, b, bindings); err != nil {
				return Rendered{}, err
			}
		}
		r.Email = e
		return r, nil
	}
	wa := v.wa
	r.Category = wa.category
	tpl := &graph.Template{Name: wa.name, Language: graph.Language{Code: wa.language}}
	n := len(wa.buttons)
	if len(wa.params) > 0 {
		n++
	}
	if wa.header != nil {
		n++
	}
	if n > 0 {
		tpl.Components = make([]graph.Component, 0, n)
	}
	if h := wa.header; h != nil {
		prm, err := c.renderHeader(v, h, b, bindings)
		if err != nil {
			return Rendered{}, err
		}
		tpl.Components = append(tpl.Components, graph.Component{Type: "header", Parameters: []graph.Parameter{prm}})
	}
	if len(wa.params) > 0 {
		params := make([]graph.Parameter, len(wa.params))
		for i, prm := range wa.params {
			s, err := c.renderField(v, prm.f, b, bindings)
			if err != nil {
				return Rendered{}, err
			}
			params[i] = graph.Parameter{Type: "text", ParameterName: prm.name, Text: s}
		}
		tpl.Components = append(tpl.Components, graph.Component{Type: "body", Parameters: params})
	}
	if len(wa.buttons) > 0 {
		indexes := make([]int, len(wa.buttons))
		params := make([]graph.Parameter, len(wa.buttons))
		for i, btn := range wa.buttons {
			s, err := c.renderField(v, btn.f, b, bindings)
			if err != nil {
				return Rendered{}, err
			}
			indexes[i] = btn.index
			if btn.subType == ButtonQuickReply {
				params[i] = graph.Parameter{Type: "payload", Payload: s}
			} else {
				params[i] = graph.Parameter{Type: "text", Text: s}
			}
			tpl.Components = append(tpl.Components, graph.Component{
				Type: "button", SubType: btn.subType, Index: &indexes[i], Parameters: params[i : i+1 : i+1],
			})
		}
	}
	r.WhatsApp = tpl
	return r, nil
}

func (c *Compiled) renderHeader(v *compiledVariant, h *compiledHeader, b *boundedBuffer, bindings *lazyBindings) (graph.Parameter, error) {
	if h.typ == HeaderText {
		s, err := c.renderField(v, h.f, b, bindings)
		return graph.Parameter{Type: "text", Text: s}, err
	}
	m := &graph.Media{ID: h.id}
	if h.f != nil {
		link, err := c.renderField(v, h.f, b, bindings)
		if err != nil {
			return graph.Parameter{}, err
		}
		m.Link = link
	}
	if h.filename != nil {
		name, err := c.renderField(v, h.filename, b, bindings)
		if err != nil {
			return graph.Parameter{}, err
		}
		m.Filename = name
	}
	prm := graph.Parameter{Type: h.typ}
	switch h.typ {
	case HeaderImage:
		prm.Image = m
	case HeaderDocument:
		prm.Document = m
	case HeaderVideo:
		prm.Video = m
	}
	return prm, nil
}

func (c *Compiled) fail(v *compiledVariant, f *field, path string, err error) *RenderError {
	re := &RenderError{Template: c.t.Name, Version: c.t.Version, Field: path, Err: err}
	if v != nil {
		re.Variant = v.name
	}
	if f != nil {
		re.Field, re.Variables = f.path, f.vars
	}
	return re
}

// lazyBindings is the osteele bindings map, built only when a field needs osteele.
type lazyBindings struct {
	c    *Compiled
	vals []any
	m    map[string]any
}

func (l *lazyBindings) get() map[string]any {
	if l.m == nil {
		l.m = make(map[string]any, len(l.c.vars))
		for i := range l.c.vars {
			if l.vals[i] != nil {
				l.m[l.c.vars[i].name] = l.vals[i]
			}
		}
	}
	return l.m
}

func (c *Compiled) renderField(v *compiledVariant, f *field, b *boundedBuffer, bindings *lazyBindings) (string, error) {
	s := f.constant
	if f.node != nil {
		b.buf, b.over = b.buf[:0], false
		err := errNotFast
		if f.fast != nil && !c.slowOnly {
			if err = f.fast.run(b, bindings.vals); err != nil && err != errNotFast {
				return "", c.fail(v, f, "", err)
			}
		}
		if err == errNotFast {
			b.buf, b.over = b.buf[:0], false
			if err := render.Render(f.node, b, bindings.get(), c.cfg); err != nil {
				return "", c.fail(v, f, "", liquidError(err))
			}
		}
		if b.over {
			return "", c.fail(v, f, "", fmt.Errorf("%w: the output passed %d bytes", ErrTooLong, MaxValueBytes))
		}
		s = string(bytes.TrimSpace(b.buf))
	} else {
		s = strings.TrimSpace(s)
	}
	if s == "" {
		why := "WhatsApp rejects an empty message"
		switch {
		case f.kind == fieldSubject:
			why = "an email needs a subject"
		case c.t.Channel != ChannelWhatsApp:
			why = "an empty message cannot be sent"
		case f.kind != fieldText:
			why = "WhatsApp rejects empty parameters (131008)"
		}
		uses := ""
		if len(f.vars) > 0 {
			uses = " (variables: " + strings.Join(f.vars, ", ") + ")"
		}
		return "", c.fail(v, f, "", fmt.Errorf("%w%s: %s; give the variable a default or use | default: \"…\"", ErrEmpty, uses, why))
	}
	if n := utf8.RuneCountInString(s); n > f.limit {
		who := map[string]string{ChannelWhatsApp: "WhatsApp allows", ChannelSMS: "an SMS holds at most", ChannelEmail: "the limit is", ChannelLINE: "a LINE text message holds at most"}[c.t.Channel]
		return "", c.fail(v, f, "", fmt.Errorf("%w: %d characters; %s %d", ErrTooLong, n, cmp.Or(who, "the limit is"), f.limit))
	}
	switch f.kind {
	case fieldSubject:
		if strings.ContainsAny(s, "\r\n") {
			return "", c.fail(v, f, "", fmt.Errorf("%w: a subject is one line; use | strip_newlines", ErrParamFormat))
		}
	case fieldBodyParam:
		if strings.ContainsAny(s, "\n\t") || strings.Contains(s, "     ") {
			return "", c.fail(v, f, "", fmt.Errorf("%w: a template parameter cannot hold newlines, tabs or more than 4 spaces in a row; use | strip_newlines or | strip", ErrParamFormat))
		}
	case fieldHeaderText:
		if strings.ContainsAny(s, "\n\t\r") || strings.Contains(s, "     ") {
			return "", c.fail(v, f, "", fmt.Errorf("%w: a header cannot hold newlines, tabs or more than 4 spaces in a row", ErrParamFormat))
		}
	case fieldMediaLink:
		if u, err := url.Parse(s); err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsAny(s, " \n\t\r") {
			return "", c.fail(v, f, "", fmt.Errorf("%w: a media link is an https URL, got %q", ErrParamFormat, truncate(s, 60, "...")))
		}
	case fieldURLParam:
		if strings.ContainsAny(s, " \n\t\r") {
			return "", c.fail(v, f, "", fmt.Errorf("%w: a URL suffix cannot contain spaces; use | url_encode", ErrParamFormat))
		}
	}
	return s, nil
}

func smsHint(enc string) string {
	if enc == EncodingUCS2 {
		return "UCS-2 because of a character outside GSM-7, like an emoji or curly quotes: 67 characters per segment"
	}
	return "GSM-7: 153 characters per segment, € { } [ ] ~ ^ | \\ count twice"
}

// liquidError unwraps osteele's error layers into ErrLiquid or ErrTooLong with a
// message that names the failing filter.
func liquidError(err error) error {
	filter := ""
	for range 8 {
		if fe, ok := err.(e.FilterError); ok {
			filter, err = fe.FilterName, fe.Err
			continue
		}
		if ce, ok := err.(interface{ Cause() error }); ok && ce.Cause() != nil {
			err = ce.Cause()
			continue
		}
		break
	}
	msg := liquidMessage(err)
	if filter != "" {
		msg = fmt.Sprintf("filter %q: %s", filter, msg)
	}
	if errors.Is(err, errValueTooLong) {
		return fmt.Errorf("%w: %s", ErrTooLong, msg)
	}
	return fmt.Errorf("%w: %s", ErrLiquid, msg)
}

// bind converts the declared variables to plain values, in declaration order, into
// out (len(c.vars)); nil is a missing variable without a default.
func (c *Compiled) bind(v *compiledVariant, vars map[string]any, out []any) error {
	for i := range c.vars {
		cv := &c.vars[i]
		raw, ok := vars[cv.name]
		if !ok || raw == nil {
			if cv.required {
				return c.fail(v, nil, "variables."+cv.name, fmt.Errorf("%w %q", ErrMissingVariable, cv.name))
			}
			out[i] = cv.def
			continue
		}
		val, err := bindValue(raw, cv.typ)
		if err != nil {
			return c.fail(v, nil, "variables."+cv.name, fmt.Errorf("%w %q: %v", ErrBadVariable, cv.name, err))
		}
		if cv.required && val == "" {
			return c.fail(v, nil, "variables."+cv.name, fmt.Errorf("%w %q: it is empty", ErrMissingVariable, cv.name))
		}
		out[i] = val
	}
	return nil
}

// bindValue converts a value passed in to the plain value Liquid sees for a variable of
// type typ: string, int64, float64 or bool. Anything else (structs, maps, slices,
// pointers) is refused: Liquid can call methods on structs.
func bindValue(v any, typ string) (any, error) {
	var n number
	switch x := v.(type) {
	case string:
		if len(x) > MaxValueBytes {
			return nil, errValueTooLong
		}
		if !utf8.ValidString(x) {
			return nil, errors.New("not valid UTF-8")
		}
		if typ == TypeString {
			return v, nil // no new interface value: one allocation less per variable
		}
		return convertVar(x, typ)
	case json.Number:
		return convertVar(string(x), typ)
	case bool:
		switch typ {
		case TypeString:
			return strconv.FormatBool(x), nil
		case TypeBool:
			return x, nil
		}
		return nil, fmt.Errorf("got true/false, want a %s", typ)
	case time.Time:
		switch typ {
		case TypeString, TypeDate:
			return x.Format(time.RFC3339Nano), nil
		}
		return nil, fmt.Errorf("got a time, want a %s", typ)
	case int:
		n = number{i: int64(x)}
	case int8:
		n = number{i: int64(x)}
	case int16:
		n = number{i: int64(x)}
	case int32:
		n = number{i: int64(x)}
	case int64:
		n = number{i: x}
	case uint:
		n = unsigned(uint64(x))
	case uint8:
		n = number{i: int64(x)}
	case uint16:
		n = number{i: int64(x)}
	case uint32:
		n = number{i: int64(x)}
	case uint64:
		n = unsigned(x)
	case float32:
		n = number{fl: float64(x), float: true}
	case float64:
		n = number{fl: x, float: true}
	case liquidFloat: // a default or example, bound once already
		n = number{fl: float64(x), float: true}
	default:
		return nil, fmt.Errorf("unsupported type %T: pass a string, number or true/false", v)
	}
	if n.float && (math.IsNaN(n.fl) || math.IsInf(n.fl, 0)) {
		return nil, fmt.Errorf("%v is not a number", n.fl)
	}
	switch typ {
	case TypeString:
		return n.String(), nil
	case TypeNumber, TypeDate:
		return n.value(), nil
	}
	return nil, fmt.Errorf("got a number, want a %s", typ)
}

func unsigned(u uint64) number {
	if u > math.MaxInt64 {
		return number{fl: float64(u), float: true}
	}
	return number{i: int64(u)}
}
