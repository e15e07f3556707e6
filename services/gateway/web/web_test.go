package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestServesThePage(t *testing.T) {
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "javascript", "/style.css": "text/css"} {
		res := get(t, http.MethodGet, path)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes)", path, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
	}
	if res := get(t, http.MethodHead, "/"); res.StatusCode != 200 {
		t.Errorf("HEAD /: %d", res.StatusCode)
	}
	for _, path := range []string{"/nope", "/api/x", "/static/app.js", "/../web.go", "/e2e/package.json"} {
		if res := get(t, http.MethodGet, path); res.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", path, res.StatusCode)
		}
	}
	if res := get(t, http.MethodPost, "/"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", res.StatusCode)
	}
}

// TestNoHTMLSinks guards the rule that user text reaches the page only through
// textContent: none of the APIs that parse strings as HTML or code may appear in the page's
// scripts.
func TestNoHTMLSinks(t *testing.T) {
	scripts, err := fs.Glob(static, "static/*.js")
	if err != nil || len(scripts) < 2 {
		t.Fatalf("scripts %v: %v", scripts, err)
	}
	sinks := regexp.MustCompile(`\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function\(|setTimeout\(\s*['"]`)
	for _, name := range scripts {
		js, err := static.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if m := sinks.Find(js); m != nil {
			t.Fatalf("%s uses %q", name, m)
		}
	}
	html, _ := static.ReadFile("static/index.html")
	if regexp.MustCompile(`(?i)<script>|\son[a-z]+=|https?://`).Match(html) {
		t.Fatal("index.html must have no inline scripts, inline handlers or external URLs (CSP, no internet)")
	}
}
