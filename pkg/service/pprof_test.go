package service

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAdminPprof(t *testing.T) {
	h := NewAdmin().Handler()
	for _, tc := range []struct {
		name, method, path, remote string
		want                       int
	}{
		{"index from loopback", http.MethodGet, "/debug/pprof/", "127.0.0.1:5000", http.StatusOK},
		{"named profile from loopback", http.MethodGet, "/debug/pprof/goroutine?debug=1", "127.0.0.1:5000", http.StatusOK},
		{"cmdline from IPv6 loopback", http.MethodGet, "/debug/pprof/cmdline", "[::1]:5000", http.StatusOK},
		{"symbol by POST", http.MethodPost, "/debug/pprof/symbol", "127.0.0.1:5000", http.StatusOK},
		{"index from elsewhere", http.MethodGet, "/debug/pprof/", "192.0.2.7:5000", http.StatusForbidden},
		{"profile from elsewhere", http.MethodGet, "/debug/pprof/profile?seconds=1", "192.0.2.7:5000", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(""))
			req.RemoteAddr = tc.remote
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%s %s from %s: %d, want %d", tc.method, tc.path, tc.remote, rec.Code, tc.want)
			}
		})
	}
}
