// Package console is Herald's web console: a single page (Preact + htm, charts by
// Chart.js) built by esbuild from console/web into console/dist and embedded here, so
// `herald serve` (and dev, demo) serve it at /console/ with no files beside the binary.
// It talks to the /v1 API only (internal/api), logged in by a session cookie
// (POST /v1/session); what a role may not do is not offered, and the API refuses it
// anyway.
//
// The bundle is committed. `make console` rebuilds it from the lock (npm ci, then
// node build.mjs), which also writes dist/SOURCES.sha256, the digest of the sources it
// was built from; TestBundleMatchesSources fails when the sources change without a
// rebuild, and TestBundleReproducible rebuilds and compares when npm is at hand.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed dist
var dist embed.FS

// Path is where the console is served.
const Path = "/console/"

// Files are the built assets: index.html, app.js, app.css, SOURCES.sha256.
func Files() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed above names the folder
	}
	return sub
}

// Handler serves the console under Path, and redirects / to it.
func Handler() http.Handler {
	files := http.FileServerFS(Files())
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, http.StripPrefix(strings.TrimSuffix(Path, "/"), headers(files)))
	mux.Handle("GET /console", http.RedirectHandler(Path, http.StatusFound))
	mux.Handle("GET /{$}", http.RedirectHandler(Path, http.StatusFound))
	return mux
}

// headers sets what a page of the console needs: no framing by other sites, no
// scripts or connections but its own, no referrer, and revalidation of the assets
// (they are small and change with the binary).
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
