package web

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The preferences panel and the push service worker are served like app.js, and hold to
// the same rule: user text only through textContent.
func TestServesPrefsAndServiceWorker(t *testing.T) {
	sinks := regexp.MustCompile(`\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function\(|setTimeout\(\s*['"]`)
	for _, path := range []string{"/prefs.js", "/sw.js"} {
		res := get(t, http.MethodGet, path)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), "javascript") || len(body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes)", path, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
		if m := sinks.Find(body); m != nil {
			t.Errorf("%s uses %q", path, m)
		}
	}
	html, _ := static.ReadFile("static/index.html")
	if !strings.Contains(string(html), `<script src="prefs.js" defer></script>`) {
		t.Error("index.html does not load prefs.js")
	}
}
