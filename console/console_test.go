package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// sourcesDigest is build.mjs's digest of the sources: package-lock.json, build.mjs and
// every file of src/, each as "path\0bytes\0", by path.
func sourcesDigest(t *testing.T) string {
	t.Helper()
	files := []string{"package-lock.json", "build.mjs"}
	src, err := os.ReadDir("web/src")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range src {
		files = append(files, "src/"+e.Name())
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("web", f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(f + "\x00"))
		h.Write(b)
		h.Write([]byte("\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// The embedded bundle was built from the sources as they are: an edit of console/web
// without `make console` fails here.
func TestBundleMatchesSources(t *testing.T) {
	got, err := fs.ReadFile(Files(), "SOURCES.sha256")
	if err != nil {
		t.Fatal(err)
	}
	if want := sourcesDigest(t); strings.TrimSpace(string(got)) != want {
		t.Fatalf("console/dist was built from other sources (%s) than console/web's (%s): run `make console` and commit console/dist",
			strings.TrimSpace(string(got)), want)
	}
}

// A fresh build from the lock gives the committed bundle byte for byte. It needs npm
// and the registry (npm ci); without npm it is skipped (TestBundleMatchesSources still
// holds the bundle to its sources).
func TestBundleReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no npm ci")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed: the bundle's reproducibility is not checked here (TestBundleMatchesSources is)")
	}
	work := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "build.mjs"} {
		copyFile(t, filepath.Join("web", f), filepath.Join(work, f))
	}
	src, _ := os.ReadDir("web/src")
	for _, e := range src {
		copyFile(t, filepath.Join("web/src", e.Name()), filepath.Join(work, "src", e.Name()))
	}
	ci := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	ci.Dir = work
	if out, err := ci.CombinedOutput(); err != nil {
		for _, e := range []string{"ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET"} {
			if bytes.Contains(out, []byte(e)) {
				t.Skipf("npm ci could not reach the registry (%s): the bundle's reproducibility is not checked here (TestBundleMatchesSources is)", e)
			}
		}
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	out := filepath.Join(work, "dist")
	build := exec.Command("node", "build.mjs", out)
	build.Dir = work
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("node build.mjs: %v\n%s", err, b)
	}
	fresh, _ := os.ReadDir(out)
	if len(fresh) == 0 {
		t.Fatal("the build wrote nothing")
	}
	for _, e := range fresh {
		want, err := os.ReadFile(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := fs.ReadFile(Files(), e.Name())
		if err != nil {
			t.Fatalf("the committed bundle lacks %s: run `make console`", e.Name())
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the committed bundle differs from a fresh build (%d vs %d bytes): run `make console`", e.Name(), len(got), len(want))
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The handler serves the page and its assets with their types and security headers,
// and sends / to the console.
func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, ctype, body string
		code              int
	}{
		{"/console/", "text/html", "<script src=\"app.js\">", 200},
		{"/console/app.js", "text/javascript", "", 200},
		{"/console/app.css", "text/css", "", 200},
		{"/console/nope.js", "text/plain", "404", 404},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.code || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.ctype) || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("GET %s: %d %q", tc.path, rec.Code, rec.Header().Get("Content-Type"))
		}
		if rec.Code == 200 && !strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no CSP", tc.path)
		}
	}
	for _, p := range []string{"/", "/console"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusFound || rec.Header().Get("Location") != Path {
			t.Errorf("GET %s: %d → %q", p, rec.Code, rec.Header().Get("Location"))
		}
	}
}
