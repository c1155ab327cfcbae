package api

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
)

// page is a list answer: the items, and the cursor of the next page when there is one.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// cursor is where a list stopped; clients see it only as an opaque string
// (base64url of this JSON), and pass it back as ?cursor= for the next page.
type cursor struct {
	List string `json:"l"`           // which list it belongs to
	MS   int64  `json:"t,omitempty"` // a time in unix ms, for lists by time
	ID   string `json:"i"`           // the last item's id
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pageParams reads ?limit= (1 to maxLimit, default 50) and ?cursor= (of list).
func pageParams(r *http.Request, list string, maxLimit int) (int, cursor, error) {
	limit := 50
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return 0, cursor{}, paramProblem("limit", "want an integer from 1 to "+strconv.Itoa(maxLimit))
		}
		limit = n
	}
	var c cursor
	if v := q.Get("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || json.Unmarshal(b, &c) != nil || c.List != list || c.ID == "" {
			return 0, cursor{}, paramProblem("cursor", "not a cursor of this list: pass next_cursor from the previous page as it is")
		}
	}
	return limit, c, nil
}

// pageByID pages a list held in memory, sorted by id: the items after the cursor's id.
func pageByID[T any](items []T, id func(T) string, limit int, after cursor, list string) page[T] {
	start := 0
	if after.ID != "" {
		for start < len(items) && id(items[start]) <= after.ID {
			start++
		}
	}
	end := min(start+limit, len(items))
	p := page[T]{Items: items[start:end]}
	if end < len(items) && end > start {
		p.NextCursor = cursor{List: list, ID: id(items[end-1])}.encode()
	}
	return p
}

// listByID answers a GET of a whole list (load) in pages: sorted by id, at most maxLimit
// a page, after the request's cursor.
func listByID[T any](c *call, list string, maxLimit int, load func(context.Context) ([]T, error), id func(T) string) error {
	limit, cur, err := pageParams(c.r, list, maxLimit)
	if err != nil {
		return err
	}
	items, err := load(c.r.Context())
	if err != nil {
		return err
	}
	slices.SortFunc(items, func(x, y T) int { return cmp.Compare(id(x), id(y)) })
	return c.json(http.StatusOK, pageByID(items, id, limit, cur, list))
}
