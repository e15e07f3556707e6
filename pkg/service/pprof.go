package service

import (
	"net"
	"net/http"
	"net/http/pprof"
)

// mountPprof serves net/http/pprof's endpoints under /debug/pprof/ (CPU profile, trace,
// heap, goroutines and the other runtime profiles) on mux, to loopback clients only:
// a profile shows the code and its data flow, and a CPU profile or trace costs the
// process while it runs. The admin address is a loopback one in the local stack; the
// check also holds where a mux is mounted on a public port (the gateway's).
func mountPprof(mux *http.ServeMux) {
	mux.Handle("GET /debug/pprof/", loopbackOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/cmdline", loopbackOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("GET /debug/pprof/profile", loopbackOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/symbol", loopbackOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("POST /debug/pprof/symbol", loopbackOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("GET /debug/pprof/trace", loopbackOnly(http.HandlerFunc(pprof.Trace)))
}

// loopbackOnly answers 403 to any client whose address is not a loopback one.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
