package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/herald-dev/herald/internal/app"
)

// templateSource is a template file as POST /v1/templates and :validate take it: its
// YAML source, and the name of the file (for the errors' file:line; default
// <name>.yaml). :validate may add a segment whose sampled contacts must have the
// template's variables (the coverage check).
type templateSource struct {
	Source  string `json:"source"`
	File    string `json:"file"`
	Segment string `json:"segment"`
	Sample  int    `json:"sample"`
}

// templateProblem is a refused template file: 422 with a pointer into the source per
// problem (its line in the detail).
func templateProblem(errs []app.TemplateError) *Problem {
	fps := make([]FieldProblem, len(errs))
	for i, e := range errs {
		d := e.Message
		if e.Field != "" {
			d = e.Field + ": " + d
		}
		if e.Line > 0 {
			d = "line " + strconv.Itoa(e.Line) + ": " + d
		}
		fps[i] = FieldProblem{Pointer: "/source", Detail: d}
	}
	detail := "the template is not valid"
	if len(fps) > 0 {
		detail = fps[0].Detail
	}
	return problem("validation", detail, fps...)
}

func (a *API) createTemplate(c *call) error {
	var req templateSource
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Segment != "" || req.Sample != 0 {
		return problem("validation", "segment and sample are for POST /v1/templates:validate", FieldProblem{Pointer: "/segment", Detail: "not here"})
	}
	if req.Source == "" {
		return problem("validation", "source: give the template's YAML", FieldProblem{Pointer: "/source", Detail: "required"})
	}
	file := req.File
	if file == "" {
		file = "template.yaml"
	}
	saved, err := app.SaveTemplate(c.r.Context(), a.cfg.Components, []byte(req.Source), file)
	var it *app.InvalidTemplate
	if errors.As(err, &it) {
		return templateProblem(it.Errors)
	}
	if err != nil {
		return err
	}
	c.resource = saved.Name
	c.w.Header().Set("Location", "/v1/templates/"+saved.Name)
	return c.json(http.StatusCreated, saved)
}

// validateTemplate answers 200 with the report, valid or not: checking is what was asked.
func (a *API) validateTemplate(c *call) error {
	var req templateSource
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Source == "" {
		return problem("validation", "source: give the template's YAML", FieldProblem{Pointer: "/source", Detail: "required"})
	}
	if req.Sample == 0 {
		req.Sample = 2000
	}
	if req.Sample < 1 || req.Sample > 100000 {
		return problem("validation", "sample: want 1 to 100000", FieldProblem{Pointer: "/sample", Detail: "want 1 to 100000"})
	}
	file := req.File
	if file == "" {
		file = "template.yaml"
	}
	rep, err := app.ValidateTemplate(c.r.Context(), a.cfg.Components, []byte(req.Source), file, req.Segment, req.Sample)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, rep)
}

func (a *API) getTemplate(c *call) error {
	name := c.r.PathValue("name")
	version := 0
	if v := c.r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return paramProblem("version", "want a stored version, 1 or more")
		}
		version = n
	}
	ts, err := app.ShowTemplate(c.r.Context(), a.cfg.Components, name, version)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, ts)
}

// previewRequest is POST /v1/templates/{name}/preview: one contact, or a sample of k
// contacts spread over a segment (every contact without one).
type previewRequest struct {
	ContactID *uint32 `json:"contact_id"`
	Sample    int     `json:"sample"`
	Segment   string  `json:"segment"`
	Version   int     `json:"version"`
	Campaign  string  `json:"campaign"`
	Variant   string  `json:"variant"`
}

func (a *API) previewTemplate(c *call) error {
	name := c.r.PathValue("name")
	c.resource = name
	var req previewRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	o := app.PreviewOptions{Version: req.Version, Campaign: req.Campaign, Variant: req.Variant}
	var list []app.TemplatePreview
	var err error
	switch {
	case (req.ContactID != nil) == (req.Sample != 0):
		return problem("validation", "give contact_id or sample (one of the two)", FieldProblem{Pointer: "/contact_id", Detail: "or sample"})
	case req.ContactID != nil:
		if req.Segment != "" {
			return problem("validation", "segment goes with sample", FieldProblem{Pointer: "/segment", Detail: "only with sample"})
		}
		if *req.ContactID == 0 {
			return problem("validation", "contact_id: want 1 or more", FieldProblem{Pointer: "/contact_id", Detail: "want 1 or more"})
		}
		if _, err := a.cfg.Components.Templates.Versions(c.r.Context(), name); err != nil {
			return err
		}
		list, err = app.PreviewTemplate(c.r.Context(), a.cfg.Components, name, []uint32{*req.ContactID}, o)
	default:
		list, err = app.PreviewSample(c.r.Context(), a.cfg.Components, name, req.Segment, req.Sample, o)
	}
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, page[app.TemplatePreview]{Items: list})
}
