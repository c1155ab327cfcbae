package api

import (
	"net/http"
	"strconv"

	"github.com/herald-dev/herald/segments"
)

// segmentTerm is one term of an expression and the contacts it matches alone.
type segmentTerm struct {
	Term  string `json:"term"`
	Count uint64 `json:"count"`
}

// segmentCount is GET /v1/segments/count: the members of an expression (canonical
// form), each term's count and the warnings (a tag no contact has, …).
type segmentCount struct {
	Expression string             `json:"expression"`
	Count      uint64             `json:"count"`
	Terms      []segmentTerm      `json:"terms"`
	Warnings   []segments.Warning `json:"warnings"`
}

// segmentPreview is GET /v1/segments/preview: the count and a sample of members.
type segmentPreview struct {
	segmentCount
	Sample []segments.Contact `json:"sample"`
}

// segmentExpr reads ?expr=, refusing one that does not parse.
func segmentExpr(c *call) (string, error) {
	expr := c.r.URL.Query().Get("expr")
	if expr == "" {
		return "", paramProblem("expr", "give a segment expression, e.g. vip and country:TH")
	}
	if _, err := segments.Parse(expr); err != nil {
		return "", paramProblem("expr", err.Error())
	}
	return expr, nil
}

func countOf(ex segments.Explanation) segmentCount {
	sc := segmentCount{Expression: ex.Expr, Count: ex.Count, Terms: make([]segmentTerm, len(ex.Terms)), Warnings: ex.Warnings}
	for i, t := range ex.Terms {
		sc.Terms[i] = segmentTerm{Term: t.Term, Count: t.Count}
	}
	return sc
}

func (a *API) segmentCount(c *call) error {
	expr, err := segmentExpr(c)
	if err != nil {
		return err
	}
	ex, err := a.cfg.Components.Contacts.Explain(c.r.Context(), expr)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, countOf(ex))
}

func (a *API) segmentPreview(c *call) error {
	expr, err := segmentExpr(c)
	if err != nil {
		return err
	}
	limit := 10
	if v := c.r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			return paramProblem("limit", "want an integer from 0 to 1000")
		}
		limit = n
	}
	p, err := a.cfg.Components.Contacts.Preview(c.r.Context(), expr, limit)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, segmentPreview{segmentCount: countOf(p.Explanation), Sample: p.Sample})
}
