package api

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
)

// importMedia maps the media types POST /v1/imports takes to the import's format.
var importMedia = map[string]string{"text/csv": "csv", "application/x-ndjson": "jsonl"}

func (a *API) importJobs() *app.ImportJobs { return app.NewImportJobs(a.cfg.Redis, a.cfg.Prefix) }

// createImport is POST /v1/imports: the body is the file (CSV, or JSON Lines), imported
// in the background as herald contacts import does; the answer (202) names the job.
// Query parameters: default_region, source, purpose, add_tag and remove_tag
// (repeatable).
func (a *API) createImport(c *call) error {
	mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	format, ok := importMedia[mt]
	if !ok {
		return problem("unsupported-media-type", "send the file as Content-Type: text/csv or application/x-ndjson (JSON Lines)",
			FieldProblem{Header: "Content-Type", Detail: "want text/csv or application/x-ndjson"})
	}
	if len(c.body) == 0 {
		return problem("validation", "the body is the file to import; it is empty", FieldProblem{Pointer: "", Detail: "empty"})
	}
	if a.cfg.Deps == nil {
		return errors.New("imports need the API's Deps")
	}
	q := c.r.URL.Query()
	purpose := q.Get("purpose")
	if purpose != "" && purpose != "marketing" && purpose != "utility" {
		return paramProblem("purpose", "want marketing or utility")
	}
	o := app.ImportOptions{Format: format, DefaultRegion: q.Get("default_region"), Source: q.Get("source"), Purpose: purpose,
		AddTags: q["add_tag"], RemoveTags: q["remove_tag"]}
	if o.Source == "" {
		o.Source = "api import"
	}
	job, err := a.importJobs().Start(a.cfg.Deps, c.body, o)
	if err != nil {
		return err
	}
	c.resource = job.ID
	c.w.Header().Set("Location", "/v1/imports/"+job.ID)
	return c.json(http.StatusAccepted, job)
}

func importID(c *call) string {
	id := c.r.PathValue("id")
	c.resource = id
	return id
}

func (a *API) getImport(c *call) error {
	job, err := a.importJobs().Get(c.r.Context(), importID(c))
	if errors.Is(err, app.ErrImportNotFound) {
		return problem("not-found", err.Error())
	}
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, job)
}

// importRejects is GET /v1/imports/{id}/rejects: the rows refused, in line order, in
// pages (the first 1,000 rejects are kept).
func (a *API) importRejects(c *call) error {
	limit, cur, err := pageParams(c.r, "import-rejects", 1000)
	if err != nil {
		return err
	}
	var offset int64
	if cur.ID != "" {
		if offset, err = strconv.ParseInt(cur.ID, 10, 64); err != nil || offset < 0 {
			return paramProblem("cursor", "not a cursor of this list")
		}
	}
	id := importID(c)
	list, more, err := a.importJobs().Rejects(c.r.Context(), id, offset, int64(limit))
	if errors.Is(err, app.ErrImportNotFound) {
		return problem("not-found", err.Error())
	}
	if err != nil {
		return err
	}
	p := page[segments.Reject]{Items: list}
	if more {
		p.NextCursor = cursor{List: "import-rejects", ID: fmt.Sprint(offset + int64(len(list)))}.encode()
	}
	return c.json(http.StatusOK, p)
}

// importsPath is where imports are posted: its bodies may be larger than other calls'.
const importsPath = "/v1/imports"
