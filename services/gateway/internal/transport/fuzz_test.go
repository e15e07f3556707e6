package transport_test

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// FuzzOriginAllowed checks the cross-site WebSocket defence with the default patterns:
// whatever the Origin header holds, it is allowed only when it names the gateway's own
// host or a local development page (localhost / 127.0.0.1 over http, any numeric port).
func FuzzOriginAllowed(f *testing.F) {
	for _, s := range []string{
		"http://localhost:5173", "http://127.0.0.1:8081", "https://evil.example", "null", "",
		"http://localhost:1.evil.com", "http://localhost.evil.com", "http://localhost", "HTTP://LOCALHOST:80",
		"http://localhost:80@evil.com", "http://evil.com#@localhost:1", "http://[::1]:8081", "ws://localhost:1",
		"http://gw.example:8081", "http://gw.example:8081.evil", "http://127.0.0.1:*", "http://localhost:%31",
	} {
		f.Add(s)
	}
	const self = "gw.example:8081"
	f.Fuzz(func(t *testing.T, origin string) {
		r := httptest.NewRequest("GET", "http://"+self+"/ws", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if !transport.OriginAllowed(r, transport.DefaultOrigins) {
			return
		}
		if origin == "" {
			return // non-browser clients send no Origin
		}
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" {
			t.Fatalf("allowed an origin with no host: %q", origin)
		}
		host := u.Host
		if strings.EqualFold(host, self) {
			return
		}
		name, port, hasPort := strings.Cut(host, ":")
		local := strings.EqualFold(name, "localhost") || name == "127.0.0.1"
		if !local || !strings.EqualFold(u.Scheme, "http") || hasPort && !allDigits(port) {
			t.Fatalf("allowed origin %q (host %q)", origin, host)
		}
	})
}

func allDigits(s string) bool {
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
