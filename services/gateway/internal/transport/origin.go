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
		if base, found := strings.CutSuffix(p, ":*"); found {
			// Any port, but only a port: "http://localhost:1.evil.com" must not pass.
			if port, ok := strings.CutPrefix(o, base+":"); o == base || ok && digits(port) {
				return true
			}
			continue
		}
		if ok, _ := path.Match(p, o); ok {
			return true
		}
	}
	return false
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
