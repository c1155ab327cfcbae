package api

import (
	"bytes"
	"mime"
	"net/http"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
)

func (a *API) listTags(c *call) error {
	return listByID(c, "tags", 1000, a.cfg.Components.Contacts.TagCounts, func(t segments.TagCount) string { return t.Name })
}

// tagRequest names the contacts of POST /v1/tags/{tag}:add and :remove, one way of
// four: contact ids, phones and emails, a file of them (its text), or a segment.
type tagRequest struct {
	ContactIDs    []uint64 `json:"contact_ids"`
	Phones        []string `json:"phones"`
	Emails        []string `json:"emails"`
	File          *string  `json:"file"`
	Segment       string   `json:"segment"`
	DefaultRegion string   `json:"default_region"`
}

// tagContacts is POST /v1/tags/{tag}:add or :remove (add false). A text/plain or
// text/csv body is the file of phones or emails itself (?default_region= for
// national numbers), as the CLI's --file reads it.
func (a *API) tagContacts(add bool) func(*call) error {
	return func(c *call) error {
		tag := c.r.PathValue("tag")
		c.resource = tag
		var t app.TagTarget
		mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
		if len(c.body) > 0 && rawBodyAllowed(c.rt, mt) {
			t.File, t.Region = bytes.NewReader(c.body), c.r.URL.Query().Get("default_region")
		} else {
			var req tagRequest
			if err := c.decode(&req); err != nil {
				return err
			}
			t = app.TagTarget{ContactIDs: req.ContactIDs, Phones: append(req.Phones, req.Emails...), Segment: req.Segment, Region: req.DefaultRegion}
			if req.File != nil {
				t.File = bytes.NewReader([]byte(*req.File))
			}
		}
		res, err := app.TagContacts(c.r.Context(), a.cfg.Components, tag, add, t, nil)
		if err != nil {
			return err
		}
		return c.json(http.StatusOK, res)
	}
}
