package templates

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/templates/links"
)

// WhatsAppRequest is the exact Cloud API request body that sends r to the phone number
// to (E.164), with biz_opaque_callback_data set to callbackData when not empty: a
// template message, or a free-form text (with link previews) for KindText.
func (r Rendered) WhatsAppRequest(to, callbackData string) graph.SendRequest {
	req := graph.SendRequest{MessagingProduct: "whatsapp", RecipientType: "individual", To: to, BizOpaqueCallbackData: callbackData}
	if r.WhatsApp != nil {
		req.Type, req.Template = "template", r.WhatsApp
	} else {
		req.Type, req.Text = "text", &graph.Text{PreviewURL: true, Body: r.Text}
	}
	return req
}

// Coverage is how many of a sample of contacts lack one variable.
type Coverage struct {
	Variable string   `json:"variable"`
	Missing  int      `json:"missing"` // contacts without a value (absent or empty)
	Sampled  int      `json:"sampled"`
	Fields   []string `json:"fields"` // the fields that use it, with their lines
}

// CheckContacts reports the variables the template uses that have no default (declared,
// or a | default: filter right after the variable wherever it is used) and that some of
// contacts (each the variables of one contact, as passed to Render) lack:
// those render blank, or fail when the variable is required. The error joins one
// *FieldError per such variable, at the line of its declaration, naming the fields
// (and their lines) that use it; nil when every contact has every variable it needs.
func (c *Compiled) CheckContacts(contacts []map[string]any) ([]Coverage, error) {
	uses := map[string][]string{}
	seen := map[*field]bool{}
	addField := func(f *field) {
		if f == nil || seen[f] {
			return
		}
		seen[f] = true
		where := f.path
		if f.line > 0 {
			where = fmt.Sprintf("%s (line %d)", f.path, f.line)
		}
		for _, v := range f.vars {
			if !f.defaulted(c, v) {
				uses[v] = append(uses[v], where)
			}
		}
	}
	for i := range c.variants {
		v := &c.variants[i]
		addField(v.text)
		if v.email != nil {
			addField(v.email.subject)
			addField(v.email.text)
			addField(v.email.html)
		}
		if v.wa != nil {
			for _, p := range v.wa.params {
				addField(p.f)
			}
			for _, b := range v.wa.buttons {
				addField(b.f)
			}
		}
	}
	p := &problems{file: c.t.file}
	var out []Coverage
	for _, cv := range c.vars {
		fields := uses[cv.name]
		if cv.def != nil || (len(fields) == 0 && !cv.required) { // or every use has | default
			continue
		}
		missing := 0
		for _, vars := range contacts {
			if v, ok := vars[cv.name]; !ok || v == nil || v == "" {
				missing++
			}
		}
		if missing == 0 {
			continue
		}
		slices.Sort(fields)
		out = append(out, Coverage{Variable: cv.name, Missing: missing, Sampled: len(contacts), Fields: fields})
		what := "renders blank there"
		if cv.required {
			what = "is required, so their messages fail"
		}
		used := ""
		if len(fields) > 0 {
			used = "; used in " + strings.Join(fields, ", ")
		}
		p.add(c.t.line("variables."+cv.name), "variables."+cv.name,
			"%d of %d contacts have no %q and it has no default: it %s%s; give it a default, or use | default: \"…\"",
			missing, len(contacts), cv.name, what, used)
	}
	return out, p.err()
}

// defaulted reports whether every use of variable name in f is {{ name | default: … }}.
// Only fast-path fields are read; others count as not defaulted.
func (f *field) defaulted(c *Compiled, name string) bool {
	if f.fast == nil {
		return false
	}
	for _, op := range f.fast.ops {
		if op.out >= 0 && c.vars[op.out].name == name && (len(op.filters) == 0 || op.filters[0].name != "default") {
			return false
		}
	}
	return true
}

// TrackLinks rewrites the http(s) URLs of a rendered message into tracked links of
// (campaign, contact) (see package links): the text of a KindText message, and the body
// parameters of a WhatsApp template (URL button parameters are suffixes of the approved
// URL and are left alone). Links are numbered in order across the fields. The channel
// limits are checked again: a tracked link may be longer than the URL it replaces.
func (r *Rendered) TrackLinks(t *links.Tracker, campaign string, contact uint32) error {
	n := 0
	rewrite := func(s string, limit int, field string) (string, error) {
		out, k, err := t.Rewrite(s, campaign, contact, n)
		if err != nil {
			return "", fmt.Errorf("track links of %s: %w", r.Template, err)
		}
		n += k
		if c := utf8.RuneCountInString(out); c > limit {
			return "", &RenderError{Template: r.Template, Version: r.Version, Variant: r.Variant, Field: field,
				Err: fmt.Errorf("%w: %d characters with tracked links; the limit is %d", ErrTooLong, c, limit)}
		}
		return out, nil
	}
	var err error
	switch {
	case r.Email != nil:
		if r.Email.Text, err = rewrite(r.Email.Text, MaxEmailBody, "email.text"); err != nil {
			return err
		}
		r.Email.HTML, err = rewrite(r.Email.HTML, MaxEmailBody, "email.html")
		return err
	case r.Channel == ChannelSMS:
		if r.Text, err = rewrite(r.Text, MaxSMSChars, "body"); err != nil {
			return err
		}
		r.SMSSegments, r.SMSEncoding = SMSSegments(r.Text)
		if r.SMSSegments > MaxSMSSegments {
			return &RenderError{Template: r.Template, Version: r.Version, Variant: r.Variant, Field: "body",
				Err: fmt.Errorf("%w: %d %s segments with tracked links; the limit is %d", ErrTooLong, r.SMSSegments, r.SMSEncoding, MaxSMSSegments)}
		}
		return nil
	case r.Channel == ChannelTelegram:
		// MarkdownV2 text reserves characters every URL has (. - _): its links are
		// tracked in the inline buttons only. Plain and HTML text are rewritten.
		if r.Telegram == nil || r.Telegram.ParseMode != ParseModeMarkdownV2 {
			if r.Text, err = rewrite(r.Text, MaxTelegramText, "body"); err != nil {
				return err
			}
		}
		if r.Telegram != nil {
			for i := range r.Telegram.Buttons {
				if r.Telegram.Buttons[i].URL, err = rewrite(r.Telegram.Buttons[i].URL, MaxMediaLink, fmt.Sprintf("telegram.buttons.%d.url", i)); err != nil {
					return err
				}
			}
		}
		return nil
	case r.Channel == ChannelLINE:
		r.Text, err = rewrite(r.Text, MaxLINEChars, "body")
		return err
	case r.WhatsApp == nil:
		r.Text, err = rewrite(r.Text, MaxTextBody, "body")
		return err
	}
	for i := range r.WhatsApp.Components {
		comp := &r.WhatsApp.Components[i]
		if comp.Type != "body" {
			continue
		}
		for j := range comp.Parameters {
			if p := &comp.Parameters[j]; p.Type == "text" {
				if p.Text, err = rewrite(p.Text, MaxParamText, "whatsapp.body"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
