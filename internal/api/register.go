package api

import (
	"net/http"
	"slices"
	"strings"
)

// register mounts the routes on the mux. A ServeMux wildcard fills a whole path
// segment, so routes whose last segment is a wildcard and a verb ("POST
// /v1/tags/{tag}:add", "…:remove") share one mux pattern ("POST /v1/tags/{tag}") and
// are told apart by the verb; the wildcard's value is the segment without it.
func (a *API) register() {
	type verbs struct {
		name string
		by   map[string]http.Handler
	}
	shared := map[string]*verbs{}
	for _, rt := range a.routes {
		i := strings.LastIndex(rt.path, "}:")
		open := strings.LastIndex(rt.path[:max(i, 0)], "{")
		if i < 0 || open < 0 || strings.Contains(rt.path[i:], "/") {
			a.mux.Handle(rt.pattern(), a.wrap(rt))
			continue
		}
		p := rt.method + " " + rt.path[:i+1]
		v := shared[p]
		if v == nil {
			v = &verbs{name: rt.path[open+1 : i], by: map[string]http.Handler{}}
			shared[p] = v
			a.mux.Handle(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seg := r.PathValue(v.name)
				j := strings.LastIndex(seg, ":")
				if j > 0 {
					if h, ok := v.by[seg[j+1:]]; ok {
						r.SetPathValue(v.name, seg[:j])
						h.ServeHTTP(w, r)
						return
					}
				}
				writeProblem(w, r, problem("not-found", "no such route: "+r.Method+" "+r.URL.Path))
			}))
		}
		v.by[rt.path[i+2:]] = a.wrap(rt)
	}
}

// rawBodies are the routes that take a body other than JSON too: its media types.
var rawBodies = map[string][]string{
	"POST /v1/tags/{tag}:add":    {"text/plain", "text/csv"},
	"POST /v1/tags/{tag}:remove": {"text/plain", "text/csv"},
	"POST /v1/imports":           {"text/csv", "application/x-ndjson"},
}

func rawBodyAllowed(rt route, mediaType string) bool {
	return slices.Contains(rawBodies[rt.pattern()], mediaType)
}
