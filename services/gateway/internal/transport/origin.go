package transport

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// DefaultOrigins are allowed when no -allowed-origins list is given: local development
// pages. The gateway's own host is always allowed.
var DefaultOrigins = []string{"http://localhost:*", "http://127.0.0.1:*"}

// OriginAllowed implements the browser-facing CSRF defence for the WebSocket upgrade (a
// WebSocket is not subject to CORS, so any page could otherwise open one with the user's
// cookies or stored token). Non-browser clients send no Origin and are allowed.
// Patterns are "scheme://host[:port]" with path.Match wildcards; "*" allows everything,
// and a trailing ":*" also matches an origin without a port.
func OriginAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	o := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSuffix(p, "/"))
		if p == "*" {
			return true
		}
		if ok, _ := path.Match(p, o); ok {
			return true
		}
		if base, found := strings.CutSuffix(p, ":*"); found && o == base {
			return true
		}
	}
	return false
}
