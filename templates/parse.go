package templates

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem in a template file: where (file, line, field) and what.
type FieldError struct {
	File  string
	Line  int    // 0: unknown
	Field string // e.g. whatsapp.body.first_name; empty for the file itself
	Msg   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// problems collects FieldErrors and joins them, sorted by line, into one error.
type problems struct {
	file   string
	errs   []*FieldError
	frozen map[string]bool // "line field" reported before freeze
}

func (p *problems) add(line int, field, format string, args ...any) {
	if p.frozen[strconv.Itoa(line)+" "+field] {
		return
	}
	p.errs = append(p.errs, &FieldError{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// freeze marks the places reported so far: later problems there are dropped.
func (p *problems) freeze() {
	p.frozen = map[string]bool{}
	for _, e := range p.errs {
		p.frozen[strconv.Itoa(e.Line)+" "+e.Field] = true
	}
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool {
		a, b := p.errs[i].Line, p.errs[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	seen := map[string]bool{}
	errs := make([]error, 0, len(p.errs))
	for _, e := range p.errs {
		if s := e.Error(); !seen[s] {
			seen[s] = true
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// ParseFile parses and validates a template file: strict YAML (unknown keys are errors),
// names, kinds, declared variables, the Liquid of every field (refused tags and filters,
// unknown variables) and the channel limits, checked on the literal text and on a render
// with the variables' example values. filename is only used in error messages. Every
// problem found is reported, one per line, as a *FieldError.
func ParseFile(data []byte, filename string) (*Template, error) {
	p := &problems{file: filename}
	if len(data) > MaxFileBytes {
		p.add(0, "", "file is %d bytes; the limit is %d", len(data), MaxFileBytes)
		return nil, p.err()
	}
	if !utf8.Valid(data) {
		p.add(0, "", "file is not valid UTF-8")
		return nil, p.err()
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc fileDoc
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(0, "", "file is empty")
		} else {
			p.yaml(err)
		}
		return nil, p.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		p.add(extra.Line, "", "a file holds one template: remove the second YAML document (---)")
		return nil, p.err()
	}
	t := doc.build(p)
	p.freeze() // compile's findings at a place build already reported are noise
	if _, err := compile(t, p); err != nil {
		return nil, err
	}
	return t, nil
}

var (
	yamlLineRE    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlUnknownRE = regexp.MustCompile(`^field (\S+) not found in type templates\.(\w+)$`)
)

// yaml turns a yaml.v3 error into FieldErrors.
func (p *problems) yaml(err error) {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	for _, m := range msgs {
		line := 0
		if g := yamlLineRE.FindStringSubmatch(m); g != nil {
			line, _ = strconv.Atoi(g[1])
			m = g[2]
		}
		m = strings.TrimPrefix(m, "yaml: ")
		m = strings.Replace(m, "into templates.fileDoc", "into a template: the file is a mapping (name: …, kind: …)", 1)
		if g := yamlUnknownRE.FindStringSubmatch(m); g != nil {
			m = fmt.Sprintf("unknown key %q", g[1])
			if keys := docKeys(g[2]); keys != "" {
				m += " (allowed: " + keys + ")"
			}
		}
		p.add(line, "", "%s", m)
	}
}

// docKeys lists the keys a section accepts, for "unknown key" errors.
func docKeys(typeName string) string {
	if typeName == "fileDoc" {
		return strings.Join(yamlKeys(reflect.TypeFor[fileDoc]()), ", ")
	}
	return ""
}

// ---- the YAML documents ----

type fileDoc struct {
	Name        scalar       `yaml:"name"`
	Description scalar       `yaml:"description"`
	Channel     scalar       `yaml:"channel"`
	Locale      scalar       `yaml:"locale"`
	Kind        scalar       `yaml:"kind"`
	Body        scalar       `yaml:"body"`
	WhatsApp    *waDoc       `yaml:"whatsapp"`
	Email       *emailDoc    `yaml:"email"`
	Telegram    *telegramDoc `yaml:"telegram"`
	Preview     scalar       `yaml:"preview"`
	Variables   varsDoc      `yaml:"variables"`
	Variants    []variantDoc `yaml:"variants"`
}

type waDoc struct {
	line     int
	Name     scalar       `yaml:"name"`
	Language scalar       `yaml:"language"`
	Category scalar       `yaml:"category"`
	Header   *headerDoc   `yaml:"header"`
	Body     *paramsDoc   `yaml:"body"`
	Buttons  *[]buttonDoc `yaml:"buttons"`
}

type headerDoc struct {
	line     int
	Type     scalar `yaml:"type"`
	Text     scalar `yaml:"text"`
	Link     scalar `yaml:"link"`
	ID       scalar `yaml:"id"`
	Filename scalar `yaml:"filename"`
}

func (h *headerDoc) UnmarshalYAML(n *yaml.Node) error {
	type plain headerDoc
	if err := strictMapping(n, reflect.TypeFor[headerDoc]()); err != nil {
		return err
	}
	if err := n.Decode((*plain)(h)); err != nil {
		return err
	}
	h.line = n.Line
	return nil
}

type variantDoc struct {
	line     int
	Name     scalar `yaml:"name"`
	Weight   scalar `yaml:"weight"`
	Body     scalar `yaml:"body"`
	WhatsApp *waDoc `yaml:"whatsapp"`
	Preview  scalar `yaml:"preview"`
}

type buttonDoc struct {
	line    int
	Index   scalar `yaml:"index"`
	SubType scalar `yaml:"sub_type"`
	Text    scalar `yaml:"text"`
	Payload scalar `yaml:"payload"`
}

type emailDoc struct {
	line    int
	Subject scalar `yaml:"subject"`
	Text    scalar `yaml:"text"`
	HTML    scalar `yaml:"html"`
}

func (d *emailDoc) UnmarshalYAML(n *yaml.Node) error {
	type plain emailDoc
	if err := strictMapping(n, reflect.TypeFor[emailDoc]()); err != nil {
		return err
	}
	if err := n.Decode((*plain)(d)); err != nil {
		return err
	}
	d.line = n.Line
	return nil
}

// Sections below the top level decode through yaml.Node.Decode, which does not honour
// KnownFields: they check their keys themselves.

func (w *waDoc) UnmarshalYAML(n *yaml.Node) error {
	type plain waDoc
	if err := strictMapping(n, reflect.TypeFor[waDoc]()); err != nil {
		return err
	}
	if err := n.Decode((*plain)(w)); err != nil {
		return err
	}
	w.line = n.Line
	return nil
}

func (v *variantDoc) UnmarshalYAML(n *yaml.Node) error {
	type plain variantDoc
	if err := strictMapping(n, reflect.TypeFor[variantDoc]()); err != nil {
		return err
	}
	if err := n.Decode((*plain)(v)); err != nil {
		return err
	}
	v.line = n.Line
	return nil
}

func (b *buttonDoc) UnmarshalYAML(n *yaml.Node) error {
	type plain buttonDoc
	if err := strictMapping(n, reflect.TypeFor[buttonDoc]()); err != nil {
		return err
	}
	if err := n.Decode((*plain)(b)); err != nil {
		return err
	}
	b.line = n.Line
	return nil
}

func strictMapping(n *yaml.Node, rt reflect.Type) error {
	if n.Kind != yaml.MappingNode {
		return typeErr(n, "expected a mapping (key: value), got %s", kindName(n))
	}
	keys := yamlKeys(rt)
	var errs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(keys, k.Value) {
			errs = append(errs, fmt.Sprintf("line %d: unknown key %q (allowed: %s)", k.Line, k.Value, strings.Join(keys, ", ")))
		}
	}
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	return nil
}

func yamlKeys(rt reflect.Type) []string {
	var keys []string
	for i := range rt.NumField() {
		if tag := rt.Field(i).Tag.Get("yaml"); tag != "" {
			keys = append(keys, strings.Split(tag, ",")[0])
		}
	}
	return keys
}

// scalar is a string value with the line its content starts on.
type scalar struct {
	V    string
	Line int
	Set  bool
	Tag  string
}

func typeErr(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a value"
}

func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "expected a single value, got %s", kindName(n))
	}
	*s = scalar{V: n.Value, Line: contentLine(n), Set: true, Tag: n.ShortTag()}
	return nil
}

// contentLine is the line of a scalar's first character: block scalars (| and >) start
// on the line after their indicator.
func contentLine(n *yaml.Node) int {
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return n.Line + 1
	}
	return n.Line
}

// paramsDoc is whatsapp.body: a mapping of named parameters, or a list of positional ones.
type paramsDoc struct {
	Named bool
	Line  int
	Items []paramDoc
}

type paramDoc struct {
	Name string
	Text scalar
}

func (p *paramsDoc) UnmarshalYAML(n *yaml.Node) error {
	p.Line = n.Line
	switch n.Kind {
	case yaml.MappingNode:
		p.Named = true
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				return typeErr(k, "parameter %q is listed twice", k.Value)
			}
			seen[k.Value] = true
			var s scalar
			if err := s.UnmarshalYAML(v); err != nil {
				return err
			}
			p.Items = append(p.Items, paramDoc{Name: k.Value, Text: s})
		}
	case yaml.SequenceNode:
		for _, v := range n.Content {
			var s scalar
			if err := s.UnmarshalYAML(v); err != nil {
				return err
			}
			p.Items = append(p.Items, paramDoc{Text: s})
		}
	default:
		return typeErr(n, "whatsapp.body is a mapping of named parameters (first_name: \"{{ name }}\") or a list of positional ones")
	}
	return nil
}

// varsDoc is variables: a mapping, in file order.
type varsDoc []varDoc

type varDoc struct {
	Name        string
	Line        int
	Type        scalar
	Default     *yaml.Node
	Example     *yaml.Node
	Required    scalar
	Description scalar
}

const varKeys = "type, default, required, example, description"

func (vs *varsDoc) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return typeErr(n, "variables is a mapping: name: {type: string, default: \"\"}")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			return typeErr(k, "variable %q is declared twice", k.Value)
		}
		seen[k.Value] = true
		d := varDoc{Name: k.Value, Line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode: // shorthand: name: string
			if v.ShortTag() != "!!null" {
				if err := d.Type.UnmarshalYAML(v); err != nil {
					return err
				}
			}
		case yaml.MappingNode:
			for j := 0; j+1 < len(v.Content); j += 2 {
				fk, fv := v.Content[j], v.Content[j+1]
				var err error
				switch fk.Value {
				case "type":
					err = d.Type.UnmarshalYAML(fv)
				case "default":
					d.Default = fv
				case "example":
					d.Example = fv
				case "required":
					err = d.Required.UnmarshalYAML(fv)
				case "description":
					err = d.Description.UnmarshalYAML(fv)
				default:
					return typeErr(fk, "unknown key %q in variable %q (allowed: %s)", fk.Value, k.Value, varKeys)
				}
				if err != nil {
					return err
				}
			}
		default:
			return typeErr(v, "variable %q is a mapping: {type: string, default: \"\"}", k.Value)
		}
		*vs = append(*vs, d)
	}
	return nil
}

// ---- building the Template ----

// build converts the document to a Template and reports what a Template cannot hold
// (values of the wrong shape, sections that do not belong together). The rest is
// checked by compile, for files and hand-built templates alike, with the lines
// recorded here.
func (d *fileDoc) build(p *problems) *Template {
	t := &Template{
		Name:        d.Name.V,
		Description: d.Description.V,
		Channel:     d.Channel.V,
		Locale:      d.Locale.V,
		Kind:        Kind(d.Kind.V),
		Preview:     d.Preview.V,
		file:        p.file,
		lines:       map[string]int{},
	}
	t.lines["name"] = d.Name.Line
	t.lines["channel"] = d.Channel.Line
	t.lines["locale"] = d.Locale.Line
	t.lines["kind"] = d.Kind.Line
	t.lines["preview"] = d.Preview.Line
	for _, v := range d.Variables {
		t.Variables = append(t.Variables, v.build(t, p))
	}
	switch t.Kind {
	case KindText:
		d.buildText(t, p)
	case KindWhatsAppTemplate:
		d.buildWhatsApp(t, p)
	case KindEmail:
		d.buildEmail(t, p)
	}
	if d.Email != nil && t.Kind != KindEmail {
		p.add(d.Email.line, "email", "only for kind email")
	}
	if d.Telegram != nil {
		d.Telegram.build(t, p)
	}
	return t
}

func (d *fileDoc) buildEmail(t *Template, p *problems) {
	if d.Body.Set {
		p.add(d.Body.Line, "body", "kind email has email.subject, email.text and email.html instead of body")
	}
	if d.WhatsApp != nil {
		p.add(d.WhatsApp.line, "whatsapp", "only for kind whatsapp_template")
	}
	if d.Preview.Set {
		p.add(d.Preview.Line, "preview", "only for kind whatsapp_template")
	}
	if len(d.Variants) > 0 {
		p.add(d.Variants[0].line, "variants", "variants are not supported for kind email yet: one template per variant")
	}
	v := Variant{Name: "default", Weight: 1}
	if d.Email != nil {
		v.Email = &Email{Subject: d.Email.Subject.V, Text: d.Email.Text.V, HTML: d.Email.HTML.V}
		t.lines["email"] = d.Email.line
		for key, sc := range map[string]scalar{"subject": d.Email.Subject, "text": d.Email.Text, "html": d.Email.HTML} {
			t.lines["email."+key] = cmp.Or(sc.Line, d.Email.line)
		}
	}
	t.Variants = []Variant{v}
}

func (v varDoc) build(t *Template, p *problems) Variable {
	field := "variables." + v.Name
	t.lines[field] = v.Line
	t.lines[field+".type"] = v.Type.Line
	out := Variable{Name: v.Name, Type: v.Type.V, Description: v.Description.V}
	if out.Type == "" {
		out.Type = TypeString
	}
	if v.Required.Set {
		switch v.Required.V {
		case "true":
			out.Required = true
		case "false":
		default:
			p.add(v.Required.Line, field+".required", "must be true or false")
		}
	}
	switch out.Type {
	case TypeString, TypeNumber, TypeBool, TypeDate:
	default:
		return out // compile reports the type
	}
	var err error
	if v.Default != nil && v.Default.ShortTag() != "!!null" {
		t.lines[field+".default"] = v.Default.Line
		if out.Default, err = yamlValue(v.Default, out.Type); err != nil {
			p.add(v.Default.Line, field+".default", "%v", err)
		}
	}
	if v.Example != nil && v.Example.ShortTag() != "!!null" {
		t.lines[field+".example"] = v.Example.Line
		if out.Example, err = yamlValue(v.Example, out.Type); err != nil {
			p.add(v.Example.Line, field+".example", "%v", err)
		}
	}
	return out
}

// yamlValue converts a YAML scalar to a value of a variable type.
func yamlValue(n *yaml.Node, typ string) (any, error) {
	if n.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("expected a single value, got %s", kindName(n))
	}
	return convertVar(n.Value, typ)
}

func (d *fileDoc) buildText(t *Template, p *problems) {
	if d.WhatsApp != nil {
		p.add(d.WhatsApp.line, "whatsapp", "only for kind whatsapp_template; a text message has a body")
	}
	if d.Preview.Set {
		p.add(d.Preview.Line, "preview", "only for kind whatsapp_template (it documents the approved body)")
	}
	if len(d.Variants) == 0 {
		t.Variants = []Variant{{Name: "default", Weight: 1, Body: d.Body.V}}
		t.Variants[0].paths.body = "body"
		t.lines["body"] = d.Body.Line
		return
	}
	if d.Body.Set {
		p.add(d.Body.Line, "body", "give either body or variants (each with its own body), not both")
	}
	for i, vd := range d.Variants {
		v, field := variantHead(t, i, vd, p)
		if vd.WhatsApp != nil {
			p.add(vd.WhatsApp.line, field+".whatsapp", "only for kind whatsapp_template")
		}
		if vd.Preview.Set {
			p.add(vd.Preview.Line, field+".preview", "only for kind whatsapp_template")
		}
		v.Body = vd.Body.V
		v.paths.body = field + ".body"
		t.lines[v.paths.body] = vd.Body.Line
		if !vd.Body.Set {
			t.lines[v.paths.body] = vd.line
		}
		t.Variants = append(t.Variants, v)
	}
}

func variantHead(t *Template, i int, vd variantDoc, p *problems) (Variant, string) {
	v := Variant{Name: vd.Name.V, Weight: 1, Preview: vd.Preview.V}
	field := variantField(i, v.Name)
	t.lines[field] = vd.line
	t.lines[field+".name"] = cmp.Or(vd.Name.Line, vd.line)
	t.lines[field+".preview"] = vd.Preview.Line
	if vd.Weight.Set {
		if w, err := strconv.Atoi(vd.Weight.V); err != nil {
			p.add(vd.Weight.Line, field+".weight", "%q must be a whole number from 0 to %d", vd.Weight.V, MaxWeight)
		} else {
			v.Weight = w
		}
		t.lines[field+".weight"] = vd.Weight.Line
	}
	return v, field
}

// variantField names a variant in error messages: by name when it has a usable one.
func variantField(i int, name string) string {
	if nameRE.MatchString(name) && len(name) <= 64 {
		return "variants." + name
	}
	return fmt.Sprintf("variants[%d]", i)
}

func (d *fileDoc) buildWhatsApp(t *Template, p *problems) {
	if d.Body.Set {
		p.add(d.Body.Line, "body", "kind whatsapp_template takes its parameters under whatsapp.body")
	}
	if len(d.Variants) == 0 {
		v := Variant{Name: "default", Weight: 1}
		if d.WhatsApp != nil {
			v.WhatsApp = mergeWhatsApp(t, d.WhatsApp, nil, "whatsapp", "", &v, p)
		}
		t.Variants = []Variant{v}
		return
	}
	for i, vd := range d.Variants {
		v, field := variantHead(t, i, vd, p)
		if vd.Body.Set {
			p.add(vd.Body.Line, field+".body", "kind whatsapp_template takes parameters under %s.whatsapp.body", field)
		}
		if d.WhatsApp != nil || vd.WhatsApp != nil {
			v.WhatsApp = mergeWhatsApp(t, d.WhatsApp, vd.WhatsApp, "whatsapp", field+".whatsapp", &v, p)
		}
		t.Variants = append(t.Variants, v)
	}
}

// mergeWhatsApp resolves a variant's template: what the variant sets (over) wins over
// the top-level section (base); body and buttons are replaced as a whole.
func mergeWhatsApp(t *Template, base, over *waDoc, basePath, overPath string, v *Variant, p *problems) *WhatsApp {
	if base == nil {
		base, basePath, over, overPath = over, overPath, nil, ""
	}
	if over == nil {
		over = &waDoc{}
	}
	pick := func(key string, a, b scalar) scalar {
		if b.Set {
			t.lines[overPath+"."+key] = b.Line
			return b
		}
		t.lines[basePath+"."+key] = a.Line
		return a
	}
	name := pick("name", base.Name, over.Name)
	lang := pick("language", base.Language, over.Language)
	cat := pick("category", base.Category, over.Category)
	wa := &WhatsApp{Name: name.V, Language: lang.V, Category: cat.V}
	if !lang.Set {
		wa.Language = t.Locale
	}

	header, headerPath := base.Header, basePath+".header"
	if over.Header != nil {
		header, headerPath = over.Header, overPath+".header"
	}
	if header != nil {
		wa.Header = &Header{Type: header.Type.V, Text: header.Text.V, Link: header.Link.V, ID: header.ID.V, Filename: header.Filename.V}
		v.paths.header = headerPath
		t.lines[headerPath] = header.line
		for key, sc := range map[string]scalar{"type": header.Type, "text": header.Text, "link": header.Link, "id": header.ID, "filename": header.Filename} {
			t.lines[headerPath+"."+key] = cmp.Or(sc.Line, header.line)
		}
	}

	body, bodyPath := base.Body, basePath+".body"
	if over.Body != nil {
		body, bodyPath = over.Body, overPath+".body"
	}
	v.paths.bodySection = bodyPath
	if base.line > 0 {
		t.lines[basePath] = base.line
	}
	if over.line > 0 {
		t.lines[overPath] = over.line
	}
	if body != nil {
		t.lines[bodyPath] = body.Line
		for i, it := range body.Items {
			path := fmt.Sprintf("%s.%d", bodyPath, i+1)
			if body.Named {
				path = bodyPath + "." + it.Name
			}
			wa.Params = append(wa.Params, Param{Name: it.Name, Text: it.Text.V})
			v.paths.params = append(v.paths.params, path)
			t.lines[path] = it.Text.Line
		}
	}

	buttons, buttonsPath := base.Buttons, basePath+".buttons"
	if over.Buttons != nil {
		buttons, buttonsPath = over.Buttons, overPath+".buttons"
	}
	if buttons != nil {
		for i, bd := range *buttons {
			path := fmt.Sprintf("%s[%d]", buttonsPath, i)
			b := Button{SubType: bd.SubType.V, Text: bd.Text.V, Payload: bd.Payload.V, Index: -1}
			t.lines[path] = bd.line
			t.lines[path+".sub_type"] = cmp.Or(bd.SubType.Line, bd.line)
			if bd.Index.Set {
				t.lines[path+".index"] = bd.Index.Line
				if idx, err := strconv.Atoi(bd.Index.V); err != nil {
					p.add(bd.Index.Line, path+".index", "%q must be a whole number from 0 to %d", bd.Index.V, MaxButtons-1)
				} else {
					b.Index = idx
				}
			}
			if bd.Text.Set {
				t.lines[path+".text"] = bd.Text.Line
			}
			if bd.Payload.Set {
				t.lines[path+".payload"] = bd.Payload.Line
			}
			wa.Buttons = append(wa.Buttons, b)
			v.paths.buttons = append(v.paths.buttons, path)
		}
	}
	return wa
}

// convertVar converts a value given as text (YAML, or a string passed to Render) to a
// variable type.
func convertVar(s, typ string) (any, error) {
	switch typ {
	case TypeNumber:
		n, err := parseNumber(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		if n.float && (math.IsInf(n.fl, 0) || math.IsNaN(n.fl)) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return n.value(), nil
	case TypeBool:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "yes", "1":
			return true, nil
		case "false", "no", "0", "":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not true or false", truncate(s, 40, "..."))
	case TypeDate:
		if _, err := toTime(s, nil); err != nil {
			return nil, err
		}
		return s, nil
	}
	return s, nil
}
