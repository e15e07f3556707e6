// Package service holds what every long-running kchat program shares: configuration from
// flags with environment defaults, a JSON slog logger, a signal-bound context, and the
// operational HTTP endpoints (/healthz, /readyz, /metrics).
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kchat/kchat/pkg/tracing"
)

// DefaultBrokers is the local stack's cluster.
const DefaultBrokers = "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"

// DefaultDatabaseURL is the local stack's application database.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5433/kchat?sslmode=disable"

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// NewLogger returns a JSON logger at level ("debug", "info", "warn", "error") tagged with
// the service name. Any other level stops the program, like a malformed flag. Records
// logged with a context that holds a span carry its trace_id and span_id (pkg/tracing).
func NewLogger(serviceName, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		exit(fmt.Errorf("log level %q (-log-level, LOG_LEVEL): want debug, info, warn or error", level))
	}
	return slog.New(tracing.LogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))).With("service", serviceName)
}

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Check is one readiness probe, e.g. a Kafka metadata request or a PostgreSQL ping.
type Check func(ctx context.Context) error

// Admin serves /healthz (the process is alive), /readyz (every check passes) and
// /metrics (Prometheus) on its own address.
type Admin struct {
	Registry *prometheus.Registry
	checks   map[string]Check
	mux      *http.ServeMux
}

// NewAdmin returns an Admin with Go runtime and process collectors registered.
func NewAdmin() *Admin {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &Admin{Registry: reg, checks: map[string]Check{}, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	a.mux.HandleFunc("GET /readyz", a.ready)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mountPprof(a.mux)
	return a
}

// AddCheck registers a readiness check under name.
func (a *Admin) AddCheck(name string, c Check) { a.checks[name] = c }

// Handler exposes the admin routes, for services that mount them on their own server.
func (a *Admin) Handler() http.Handler { return a.mux }

func (a *Admin) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	failed := false
	var b strings.Builder
	for name, c := range a.checks {
		if err := c(ctx); err != nil {
			failed = true
			fmt.Fprintf(&b, "%s: %v\n", name, err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", name)
		}
	}
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprint(w, b.String())
}

// Serve runs the admin endpoints on addr until ctx ends.
func (a *Admin) Serve(ctx context.Context, addr string, logger *slog.Logger) error {
	srv := &http.Server{Addr: addr, Handler: a.mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	logger.Info("admin endpoints listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Healthcheck implements the binaries' -healthcheck flag for container healthchecks
// (distroless images have no curl): GET http://addr/healthz, exit 0 on 200, else 1.
func Healthcheck(addr string) {
	host := addr
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	c := &http.Client{Timeout: 3 * time.Second}
	res, err := c.Get("http://" + host + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		os.Exit(1)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "unhealthy: status", res.StatusCode)
		os.Exit(1)
	}
	os.Exit(0)
}
