// Package web is the gateway's browser client: one static page (index.html, app.js,
// style.css) embedded in the binary, so that every gateway serves the page that speaks
// its own protocol version and nothing has to be deployed beside it. The page talks to the
// gateway through the REST API (login, registration, rooms) and the WebSocket at /ws.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
)

//go:embed static
var static embed.FS

// files maps the URL paths the page uses to the embedded files. Anything else is a 404,
// so the handler can be mounted at "/" without shadowing API paths with an index page.
var files = map[string]string{
	"/":           "index.html",
	"/index.html": "index.html",
	"/app.js":     "app.js",
	"/style.css":  "style.css",
	"/prefs.js":   "prefs.js",
	"/attach.js":  "attach.js",
	"/threads.js": "threads.js",
	"/roles.js":   "roles.js",
	// The service worker of Web Push; served from the root so that its scope is the page.
	"/sw.js": "sw.js",
}

// Paths are the URL paths the page is served at, for a router that mounts them one by one.
func Paths() []string {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// csp allows nothing but the page's own files. connect-src also lists http(s) and ws(s)
// because the page may fail over to another gateway (?gateways=), whose origin differs.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self' http: https: ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the page. Mount it at "/" (GET and HEAD).
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The directory is embedded at build time; a missing one cannot compile.
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := files[path.Clean("/"+strings.TrimPrefix(r.URL.Path, "/"))]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// The files change with the binary; revalidating is cheap and avoids a page from
		// one gateway version talking to another version's protocol after an upgrade.
		h.Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, name)
	})
}
