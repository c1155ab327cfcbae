package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
)

// TemplateSaved is what SaveTemplate stored (templates add; POST /v1/templates).
type TemplateSaved struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// TemplateError is one thing wrong with a template file, at its line and field.
type TemplateError struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// TemplateErrors lists what err (from templates.ParseFile or a coverage check) says is
// wrong, one entry per problem.
func TemplateErrors(err error) []TemplateError {
	var out []TemplateError
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var fe *templates.FieldError
		if errors.As(e, &fe) {
			out = append(out, TemplateError{File: fe.File, Line: fe.Line, Field: fe.Field, Message: fe.Msg})
		} else {
			out = append(out, TemplateError{Message: e.Error()})
		}
	}
	return out
}

// InvalidTemplate is a template file refused: its problems, each at its line.
type InvalidTemplate struct {
	Err    error
	Errors []TemplateError
}

func (e *InvalidTemplate) Error() string { return e.Err.Error() }
func (e *InvalidTemplate) Unwrap() error { return e.Err }

// SaveTemplate checks a template file (YAML source) and stores it: a new version when
// it changed. A refused file is an *InvalidTemplate.
func SaveTemplate(ctx context.Context, comp *Components, src []byte, file string) (TemplateSaved, error) {
	t, err := templates.ParseFile(src, file)
	if err != nil {
		return TemplateSaved{}, &InvalidTemplate{Err: err, Errors: TemplateErrors(err)}
	}
	v, err := comp.Templates.Save(ctx, t, src)
	if err != nil {
		return TemplateSaved{}, err
	}
	return TemplateSaved{Name: t.Name, Version: v}, nil
}

// TemplateValidation is what ValidateTemplate found (templates validate;
// POST /v1/templates:validate).
type TemplateValidation struct {
	File     string               `json:"file"`
	Valid    bool                 `json:"valid"`
	Name     string               `json:"name,omitempty"`
	Errors   []TemplateError      `json:"errors"`
	Segment  string               `json:"segment,omitempty"`
	Sampled  int                  `json:"sampled,omitempty"`
	Members  uint64               `json:"segment_contacts,omitempty"`
	Coverage []templates.Coverage `json:"missing"` // with a segment: variables some contacts lack
	// Err is what was wrong, as one error (the CLI prints it); nil when Valid.
	Err error `json:"-"`
}

// ValidateTemplate checks a template file without saving it and, with a segment, the
// coverage: it samples up to sample of the segment's contacts (spread over it) and
// fails on variables the template uses that some lack and that have no default. An
// invalid template is a report with Valid false (and its errors), not an error; a
// segment that does not parse is a *FieldError (segment); comp may be nil without one.
func ValidateTemplate(ctx context.Context, comp *Components, src []byte, file, segment string, sample int) (TemplateValidation, error) {
	rep := TemplateValidation{File: file, Errors: []TemplateError{}, Segment: segment}
	t, err := templates.ParseFile(src, file)
	if err != nil {
		rep.Errors, rep.Err = TemplateErrors(err), err
		return rep, nil
	}
	rep.Name = t.Name
	if segment != "" {
		if sample < 1 {
			return rep, fieldErr("sample", "must be 1 or more")
		}
		if _, err := segments.Parse(segment); err != nil {
			return rep, &FieldError{Field: "segment", Err: err}
		}
		compiled, err := templates.Compile(t)
		if err != nil {
			return rep, err
		}
		members, err := comp.Contacts.Evaluate(ctx, segment)
		if err != nil {
			return rep, err
		}
		profiles, err := sampleProfiles(ctx, comp, members, sample)
		if err != nil {
			return rep, err
		}
		vars := make([]map[string]any, len(profiles))
		for i, p := range profiles {
			vars[i] = dispatcher.ContactVars(p)
		}
		cov, err := compiled.CheckContacts(vars)
		rep.Sampled, rep.Members, rep.Coverage = len(vars), members.GetCardinality(), cov
		if err != nil {
			rep.Errors, rep.Err = TemplateErrors(err), err
			return rep, nil
		}
	}
	rep.Valid = true
	return rep, nil
}

// sampleProfiles loads up to n profiles of members, spread evenly over them in id
// order (the same ones every time for the same members).
func sampleProfiles(ctx context.Context, comp *Components, members *roaring.Bitmap, n int) ([]segments.Contact, error) {
	card := members.GetCardinality()
	ids := make([]uint32, 0, min(uint64(n), card))
	for i := uint64(0); i < uint64(cap(ids)); i++ {
		id, err := members.Select(uint32(i * card / uint64(cap(ids))))
		if err != nil {
			return nil, fmt.Errorf("sample segment: %w", err)
		}
		ids = append(ids, id)
	}
	var out []segments.Contact
	for start := 0; start < len(ids); start += 500 {
		profiles, err := comp.Contacts.Profiles(ctx, ids[start:min(start+500, len(ids))])
		if err != nil {
			return nil, err
		}
		for _, p := range profiles {
			if p.ID != 0 {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// PreviewOptions choose what PreviewTemplate renders: a stored version (0: the latest,
// in each contact's locale as the worker picks it), the campaign whose variant split
// applies, or a variant whatever the weights say.
type PreviewOptions struct {
	Version  int
	Campaign string // default "preview"
	Variant  string
}

// TemplatePreview is a template rendered for one contact: the message and, for
// WhatsApp, the Cloud API request body as it would be sent (Meta's keys).
type TemplatePreview struct {
	ContactID uint32             `json:"contact_id"`
	Phone     string             `json:"phone"`
	Email     string             `json:"email,omitempty"`
	Rendered  templates.Rendered `json:"rendered"`
	Request   *graph.SendRequest `json:"request,omitempty"`
}

// PreviewTemplate renders a stored template for the contacts ids (their profiles; an
// id without one is a *FieldError contact_id wrapping segments.ErrNotFound).
func PreviewTemplate(ctx context.Context, comp *Components, name string, ids []uint32, o PreviewOptions) ([]TemplatePreview, error) {
	if o.Version < 0 {
		return nil, fieldErr("version", "must be 1 or more")
	}
	if o.Campaign == "" {
		o.Campaign = "preview"
	}
	var t *templates.Template
	var err error
	if o.Version > 0 {
		t, err = comp.Templates.GetVersion(ctx, name, o.Version)
	} else {
		t, err = comp.Templates.Get(ctx, name)
	}
	if err != nil {
		return nil, err
	}
	compiled, err := templates.Compile(t)
	if err != nil {
		return nil, err
	}
	profiles, err := comp.Contacts.Profiles(ctx, ids)
	if err != nil {
		return nil, err
	}
	cache := templates.NewCache(comp.Templates, templates.CacheConfig{})
	out := make([]TemplatePreview, 0, len(ids))
	for i, p := range profiles {
		if p.ID == 0 {
			return nil, &FieldError{Field: "contact_id", Err: fmt.Errorf("contact %d has no profile: %w", ids[i], segments.ErrNotFound)}
		}
		c := compiled
		if o.Version == 0 && p.Locale != "" { // what the worker renders: the contact's locale
			if c, err = cache.GetFor(ctx, name, p.Locale); err != nil {
				return nil, err
			}
		}
		var r templates.Rendered
		if o.Variant != "" {
			r, err = c.RenderVariant(o.Variant, dispatcher.ContactVars(p))
		} else {
			r, err = c.Render(o.Campaign, p.ID, dispatcher.ContactVars(p))
		}
		if err != nil && o.Variant != "" {
			return nil, &FieldError{Field: "variant", Err: err}
		}
		if err != nil {
			return nil, err
		}
		tp := TemplatePreview{ContactID: p.ID, Phone: p.Phone, Email: p.Email, Rendered: r}
		if r.Channel == templates.ChannelWhatsApp {
			req := r.WhatsAppRequest(p.Phone, dispatcher.CallbackData(o.Campaign, p.ID))
			tp.Request, tp.Email = &req, ""
		}
		out = append(out, tp)
	}
	return out, nil
}

// PreviewSample renders a stored template for k contacts spread over a segment (every
// live contact when segment is empty): how the message reads across the audience.
func PreviewSample(ctx context.Context, comp *Components, name, segment string, k int, o PreviewOptions) ([]TemplatePreview, error) {
	if k < 1 || k > 100 {
		return nil, fieldErr("sample", "want 1 to 100 contacts")
	}
	if _, err := comp.Templates.Versions(ctx, name); err != nil {
		return nil, err
	}
	var members *roaring.Bitmap
	var err error
	if segment != "" {
		if _, err := segments.Parse(segment); err != nil {
			return nil, &FieldError{Field: "segment", Err: err}
		}
		members, err = comp.Contacts.Evaluate(ctx, segment)
	} else {
		members, err = comp.Contacts.Live(ctx)
	}
	if err != nil {
		return nil, err
	}
	profiles, err := sampleProfiles(ctx, comp, members, k)
	if err != nil {
		return nil, err
	}
	ids := make([]uint32, len(profiles))
	for i, p := range profiles {
		ids[i] = p.ID
	}
	if len(ids) == 0 {
		return []TemplatePreview{}, nil
	}
	return PreviewTemplate(ctx, comp, name, ids, o)
}

// TemplateShow is a stored template: its summary, versions and YAML source.
type TemplateShow struct {
	Summary  templates.Summary `json:"summary"`
	Versions []int             `json:"versions"`
	Source   string            `json:"source"` // the YAML as saved
}

// ShowTemplate loads a stored template (version 0: the latest) with its versions.
func ShowTemplate(ctx context.Context, comp *Components, name string, version int) (TemplateShow, error) {
	if version < 0 {
		return TemplateShow{}, fieldErr("version", "must be 1 or more")
	}
	sum, src, err := comp.Templates.Source(ctx, name, version)
	if err != nil {
		return TemplateShow{}, err
	}
	versions, err := comp.Templates.Versions(ctx, sum.Name)
	if err != nil {
		return TemplateShow{}, err
	}
	return TemplateShow{Summary: sum, Versions: versions, Source: string(src)}, nil
}
