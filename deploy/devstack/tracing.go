package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
)

// jaegerName is Jaeger's process name: its pid file and log under the state directory.
const jaegerName = "jaeger"

// startJaeger starts a local Jaeger (built from the module proxy on first use, which
// takes minutes) on its usual ports and returns the OTEL_* environment that points the
// services at it. Running it twice reuses the running one.
func (m *manager) startJaeger(ctx context.Context) ([]string, error) {
	p := localstack.DefaultJaegerPorts
	env := localstack.JaegerEnv(p, time.Second)
	if m.stack.ServiceRunning(jaegerName) {
		return env, nil
	}
	for _, port := range []int{p.OTLPHTTP, p.Query, p.QueryGRPC} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return nil, fmt.Errorf("%w: 127.0.0.1:%d (Jaeger) is taken by a process this stack did not start; stop it or run without TRACING", localstack.ErrPortInUse, port)
		}
		_ = l.Close()
	}
	bin, err := localstack.InstallJaeger(ctx, m.root, filepath.Join(m.root, ".cache"), m.log)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(m.root, ".cache", "stack", "jaeger.yaml")
	// 20,000 traces in memory: hours of trying things out, a few hundred MB at most.
	if err := localstack.WriteJaegerConfig(cfg, p, 20000); err != nil {
		return nil, err
	}
	if err := m.stack.StartService(jaegerName, localstack.JaegerCommand(bin, cfg)); err != nil {
		return nil, err
	}
	api := fmt.Sprintf("http://127.0.0.1:%d/api/services", p.Query)
	deadline := time.Now().Add(time.Minute)
	for {
		res, err := http.Get(api)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("jaeger did not answer %s within a minute (log: %s)", api, m.stack.LogFile(jaegerName))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	m.log.Info("jaeger running", "otlp", p.OTLPHTTP, "query", fmt.Sprintf("http://127.0.0.1:%d", p.Query))
	return env, nil
}
