package localstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"
)

// JaegerVersion is the Jaeger release pinned in deploy/jaeger/go.mod.
const JaegerVersion = "v1.75.0"

// JaegerPorts are the ports of a local Jaeger: OTLP over HTTP (what kchat's services
// export to), the query API and UI, and the query gRPC API (unused, but Jaeger always
// listens on it, so it must not collide either).
type JaegerPorts struct {
	OTLPHTTP, Query, QueryGRPC int
}

// DefaultJaegerPorts are Jaeger's usual ports; make dev TRACING=1 uses them.
var DefaultJaegerPorts = JaegerPorts{OTLPHTTP: 4318, Query: 16686, QueryGRPC: 16685}

// InstallJaeger returns the path of the Jaeger binary in cacheDir/bin, building it first
// if it is not there: `go build` of the tool pinned in root/deploy/jaeger (module proxy,
// no Docker). The first build takes minutes (about 5 on two cores, downloads included);
// concurrent callers wait for one build. A failure is an ErrPrerequisite error that says
// what was run. A binary built this way serves the query API but not the UI, whose
// assets are built with npm by Jaeger's release process.
func InstallJaeger(ctx context.Context, root, cacheDir string, log *slog.Logger) (string, error) {
	return goTool{name: "Jaeger", file: "jaeger", version: JaegerVersion, pkg: "github.com/jaegertracing/jaeger/cmd/jaeger"}.install(ctx, root, cacheDir, log)
}

// WriteJaegerConfig writes the configuration of an all-in-one Jaeger that keeps at most
// maxTraces traces in memory, listens on 127.0.0.1 only, on p's ports, and exports spans
// to its store within 100 ms of receiving them (tests poll for them).
func WriteJaegerConfig(path string, p JaegerPorts, maxTraces int) error {
	if p.OTLPHTTP == 0 || p.Query == 0 || p.QueryGRPC == 0 {
		return errors.New("localstack: every Jaeger port is required")
	}
	cfg := fmt.Sprintf(`# Written by pkg/localstack (WriteJaegerConfig): Jaeger %[1]s all-in-one, memory storage.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%[3]d
    grpc:
      endpoint: 127.0.0.1:%[4]d
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: %[5]d
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%[2]d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, JaegerVersion, p.OTLPHTTP, p.Query, p.QueryGRPC, maxTraces)
	return os.WriteFile(path, []byte(cfg), 0o644)
}

// JaegerCommand is the command that runs Jaeger with a configuration file.
func JaegerCommand(bin, config string) *exec.Cmd {
	return exec.Command(bin, "--config", "file:"+config)
}

// JaegerEnv is the OTEL_* environment that points a kchat service at a local Jaeger,
// exporting spans within scheduleDelay of their end.
func JaegerEnv(p JaegerPorts, scheduleDelay time.Duration) []string {
	return []string{
		fmt.Sprintf("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d", p.OTLPHTTP),
		fmt.Sprintf("OTEL_BSP_SCHEDULE_DELAY=%d", scheduleDelay.Milliseconds()),
	}
}
