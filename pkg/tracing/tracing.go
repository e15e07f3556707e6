// Package tracing sets up OpenTelemetry tracing for a kchat program from the standard
// OTEL_* environment variables, and carries W3C trace context across Kafka and into logs.
//
// Tracing is off unless an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Off, Enabled reports false and instrumented code
// skips its tracing work entirely: no span, no attribute, no header parsing. On, spans go
// through a batching OTLP/HTTP exporter, flushed by the shutdown function Setup returns.
//
// The trace position of a Kafka record is its traceparent header. A producer sets it by
// putting TraceParent(ctx) into the envelope's traceparent attribute, which event.Headers
// copies into the header, so a record's value and header agree. A forwarder that passes a
// value on unchanged (fanout) appends its own traceparent header with Inject; readers take
// the last one (event.HeaderValue), so the header is what Extract reads.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of every kchat span.
const ScopeName = "github.com/kchat/kchat"

var (
	enabled atomic.Bool
	tracer  atomic.Pointer[trace.Tracer]
)

func init() {
	t := trace.Tracer(noop.NewTracerProvider().Tracer(ScopeName))
	tracer.Store(&t)
}

// Enabled reports whether spans are recorded and exported. Instrumented code checks it
// before doing any tracing work, so that tracing costs nothing when it is off.
func Enabled() bool { return enabled.Load() }

// Tracer is kchat's tracer: the SDK's once Setup enabled tracing, a no-op one before.
func Tracer() trace.Tracer { return *tracer.Load() }

// Settings is the tracing configuration read from the environment.
type Settings struct {
	Endpoint string // OTLP/HTTP endpoint; empty: tracing off
	// Traces tells whether Endpoint came from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which is
	// the full URL (…/v1/traces), rather than the base URL the path is appended to.
	Traces bool
}

// FromEnv reads and checks the OTEL_* variables that decide whether and where spans are
// exported, and the sampler. A malformed or unsupported value is an error naming the
// variable: the program should stop rather than run without the traces it was asked for.
func FromEnv() (Settings, error) {
	if v := os.Getenv(EnvSDKDisabled); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Settings{}, fmt.Errorf("OTEL_SDK_DISABLED=%q: want true or false", v)
		}
		if b {
			return Settings{}, nil
		}
	}
	switch v := os.Getenv(EnvTracesExporter); v {
	case "", "otlp":
	case "none":
		return Settings{}, nil
	default:
		return Settings{}, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp (or none) is supported", v)
	}
	for _, name := range []string{EnvTracesProtocol, EnvProtocol} {
		if v := os.Getenv(name); v != "" {
			if v != "http/protobuf" {
				return Settings{}, fmt.Errorf("%s=%q: only http/protobuf is built in (OTLP over HTTP, port 4318)", name, v)
			}
			break
		}
	}
	if err := checkSampler(os.Getenv(EnvSampler), os.Getenv(EnvSamplerArg)); err != nil {
		return Settings{}, err
	}
	s := Settings{Endpoint: os.Getenv(EnvTracesEndpoint), Traces: true}
	name := EnvTracesEndpoint
	if s.Endpoint == "" {
		s = Settings{Endpoint: os.Getenv(EnvEndpoint)}
		name = EnvEndpoint
	}
	if s.Endpoint == "" {
		return Settings{}, nil
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Settings{}, fmt.Errorf("%s=%q: want an http:// or https:// URL, e.g. http://127.0.0.1:4318", name, s.Endpoint)
	}
	return s, nil
}

// checkSampler accepts what the SDK's OTEL_TRACES_SAMPLER reader accepts. The SDK itself
// only logs a bad value and falls back to its default, which would sample what the
// operator meant to drop, or the reverse.
func checkSampler(name, arg string) error {
	switch name {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
		if arg == "" {
			return nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		return nil
	default:
		return fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", name)
	}
}

// Setup enables tracing if the environment asks for it (see FromEnv): spans of service
// (OTEL_SERVICE_NAME overrides it; instance, if set, becomes service.instance.id) are
// exported over OTLP/HTTP, and the W3C TraceContext propagator becomes the global one.
// The returned function flushes and stops the exporter; call it on shutdown. Export
// failures (a backend that is down) are logged, never fatal.
func Setup(ctx context.Context, service, instance string, logger *slog.Logger) (shutdown func(context.Context) error, err error) {
	s, err := FromEnv()
	if err != nil {
		return nil, err
	}
	if s.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	opt := otlptracehttp.WithEndpointURL(s.Endpoint)
	if !s.Traces {
		opt = otlptracehttp.WithEndpointURL(strings.TrimSuffix(s.Endpoint, "/") + "/v1/traces")
	}
	exp, err := otlptracehttp.New(ctx, opt)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", service)}
	if instance != "" {
		attrs = append(attrs, attribute.String("service.instance.id", instance))
	}
	// FromEnv comes last so that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME): %w", err)
	}
	// The sampler and the batch settings come from OTEL_TRACES_SAMPLER* and OTEL_BSP_*,
	// which NewTracerProvider and NewBatchSpanProcessor read themselves.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	if logger != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Warn("tracing: export failed", "error", err) }))
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t := tp.Tracer(ScopeName)
	tracer.Store(&t)
	enabled.Store(true)
	if logger != nil {
		logger.Info("tracing on", "endpoint", s.Endpoint)
	}
	return func(ctx context.Context) error {
		enabled.Store(false)
		if err := tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("tracing: flush: %w", err)
		}
		return nil
	}, nil
}

// Use makes tp kchat's tracer provider and turns tracing on until the returned function
// restores the previous state: for tests (an SDK provider with an in-memory exporter) and
// for programs that configure the SDK themselves. Not safe to call while spans are being
// started on other goroutines.
func Use(tp trace.TracerProvider) (restore func()) {
	prevTracer, prevEnabled := tracer.Load(), enabled.Load()
	t := tp.Tracer(ScopeName)
	tracer.Store(&t)
	enabled.Store(true)
	return func() {
		tracer.Store(prevTracer)
		enabled.Store(prevEnabled)
	}
}
