package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/tracing"
)

const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func spanContext(t *testing.T, traceParent string) trace.SpanContext {
	t.Helper()
	sc := trace.SpanContextFromContext(tracing.ContextWithTraceParent(context.Background(), traceParent))
	if !sc.IsValid() {
		t.Fatalf("%q did not parse", traceParent)
	}
	return sc
}

func TestTraceParent_round_trip(t *testing.T) {
	sc := spanContext(t, tp)
	if got := tracing.FormatTraceParent(sc); got != tp {
		t.Fatalf("FormatTraceParent = %q, want %q", got, tp)
	}
	if got := tracing.TraceParent(context.Background()); got != "" {
		t.Fatalf("TraceParent without a span = %q, want empty", got)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if sc := trace.SpanContextFromContext(tracing.ContextWithTraceParent(context.Background(), bad)); sc.IsValid() {
			t.Errorf("%q parsed as %v", bad, sc)
		}
	}
}

func TestHeaders_inject_extract(t *testing.T) {
	ctx := trace.ContextWithSpanContext(context.Background(), spanContext(t, tp))
	other := "00-11111111111111111111111111111111-2222222222222222-01"
	tests := []struct {
		name string
		in   []kafka.Header
	}{
		{"no headers", nil},
		{"envelope headers", []kafka.Header{{Key: "ce_id", Value: []byte("x")}}},
		{"an older traceparent is replaced", []kafka.Header{{Key: "traceparent", Value: []byte(other)}, {Key: "ce_id", Value: []byte("x")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]kafka.Header(nil), tc.in...)
			out := tracing.Inject(ctx, tc.in)
			n := 0
			for _, h := range out {
				if h.Key == tracing.HeaderTraceParent {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d traceparent headers in %v, want 1", n, out)
			}
			got := trace.SpanContextFromContext(tracing.Extract(context.Background(), out))
			if tracing.FormatTraceParent(got) != tp || !got.IsRemote() {
				t.Fatalf("extracted %v (remote %v), want %s", got, got.IsRemote(), tp)
			}
			for i := range before {
				if tc.in[i].Key != before[i].Key || string(tc.in[i].Value) != string(before[i].Value) {
					t.Fatalf("Inject modified its input: %v", tc.in)
				}
			}
		})
	}
	if out := tracing.Inject(context.Background(), nil); out != nil {
		t.Fatalf("Inject without a span added %v", out)
	}
}

// The envelope is where a producer sets the trace position; its headers must say the
// same, so that Extract on a consumed record continues the producer's span.
func TestHeaders_agree_with_envelope(t *testing.T) {
	ctx := trace.ContextWithSpanContext(context.Background(), spanContext(t, tp))
	e, err := event.New("kchat/test", event.Typing{RoomID: "r1", User: "u1", UserName: "ann", State: event.TypingStarted},
		event.WithTraceParent(tracing.TraceParent(ctx)))
	if err != nil {
		t.Fatal(err)
	}
	var hs []kafka.Header
	for _, h := range event.Headers(e) {
		hs = append(hs, kafka.Header{Key: h.Key, Value: h.Value})
	}
	got := tracing.FormatTraceParent(trace.SpanContextFromContext(tracing.Extract(context.Background(), hs)))
	if got != e.TraceParent || got != tp {
		t.Fatalf("header says %q, envelope %q, want %q", got, e.TraceParent, tp)
	}
}

func TestLogHandler(t *testing.T) {
	sc := spanContext(t, tp)
	tests := []struct {
		name      string
		ctx       context.Context
		wantTrace string
		wantSpan  string
	}{
		{"with a span", trace.ContextWithSpanContext(context.Background(), sc), sc.TraceID().String(), sc.SpanID().String()},
		{"without", context.Background(), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(tracing.LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "test")
			log.InfoContext(tc.ctx, "hello", "k", "v")
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("%v: %s", err, buf.String())
			}
			if rec["service"] != "test" || rec["k"] != "v" {
				t.Fatalf("attributes lost: %s", buf.String())
			}
			got, _ := rec[tracing.LogTraceID].(string)
			gotSpan, _ := rec[tracing.LogSpanID].(string)
			if got != tc.wantTrace || gotSpan != tc.wantSpan {
				t.Fatalf("trace_id %q span_id %q, want %q %q: %s", got, gotSpan, tc.wantTrace, tc.wantSpan, buf.String())
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		endpoint string
		err      string
	}{
		{"off by default", nil, "", ""},
		{"base endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "http://127.0.0.1:4318", ""},
		{"traces endpoint wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/v1/traces"}, "http://b:4318/v1/traces", ""},
		{"disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"}, "", ""},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "none"}, "", ""},
		{"not a URL", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, "", "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "", "only http/protobuf"},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "", "OTEL_TRACES_EXPORTER"},
		{"unknown sampler", map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, "", "OTEL_TRACES_SAMPLER"},
		{"bad ratio", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "", "OTEL_TRACES_SAMPLER_ARG"},
		{"bad disabled", map[string]string{"OTEL_SDK_DISABLED": "yes please"}, "", "OTEL_SDK_DISABLED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
				"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
				t.Setenv(k, tc.env[k])
			}
			s, err := tracing.FromEnv()
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("err = %v, want one naming %s", err, tc.err)
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case s.Endpoint != tc.endpoint:
				t.Fatalf("endpoint %q, want %q", s.Endpoint, tc.endpoint)
			}
		})
	}
}

// With tracing off (the default), the helpers instrumented code calls on every message
// must not allocate.
func TestOff_no_allocations(t *testing.T) {
	if tracing.Enabled() {
		t.Fatal("tracing on without Setup")
	}
	ctx := context.Background()
	n := testing.AllocsPerRun(100, func() {
		if tracing.Enabled() {
			t.Fatal("enabled")
		}
		_ = tracing.TraceParent(ctx)
		_ = tracing.Inject(ctx, nil)
	})
	if n != 0 {
		t.Fatalf("%v allocations per message with tracing off", n)
	}
}
