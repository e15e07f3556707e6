package tracing

import (
	"context"
	"encoding/hex"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HeaderTraceParent is the W3C header, the same key as event.HeaderTraceParent.
const HeaderTraceParent = "traceparent"

// propagator is W3C TraceContext, fixed rather than the global one: kchat's envelopes
// and headers carry exactly traceparent, whatever else a program may configure.
var propagator = propagation.TraceContext{}

// TraceParent renders the span context of ctx as a W3C traceparent value, or "" if ctx
// has none. Producers put it into the envelope (event.WithTraceParent), whose headers
// then carry it.
func TraceParent(ctx context.Context) string {
	return FormatTraceParent(trace.SpanContextFromContext(ctx))
}

// FormatTraceParent renders sc as a traceparent value, or "" if sc is not valid.
func FormatTraceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	b := make([]byte, 0, 55)
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, []byte{byte(sc.TraceFlags())})
	return string(b)
}

// ContextWithTraceParent returns ctx continuing the trace tp names (a remote parent), or
// ctx unchanged if tp is empty or malformed.
func ContextWithTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{HeaderTraceParent: tp})
}

// HeaderCarrier adapts kafka-go record headers to the propagation API. Get returns the
// last header of a key (as event.HeaderValue does); Set replaces every header of the key
// with one at the end.
type HeaderCarrier struct{ Headers *[]kafka.Header }

var _ propagation.TextMapCarrier = HeaderCarrier{}

// Get implements propagation.TextMapCarrier.
func (c HeaderCarrier) Get(key string) string {
	hs := *c.Headers
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == key {
			return string(hs[i].Value)
		}
	}
	return ""
}

// Set implements propagation.TextMapCarrier.
func (c HeaderCarrier) Set(key, value string) {
	hs := (*c.Headers)[:0:0]
	for _, h := range *c.Headers {
		if h.Key != key {
			hs = append(hs, h)
		}
	}
	*c.Headers = append(hs, kafka.Header{Key: key, Value: []byte(value)})
}

// Keys implements propagation.TextMapCarrier.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, len(*c.Headers))
	for i, h := range *c.Headers {
		keys[i] = h.Key
	}
	return keys
}

// Inject returns hs with the span context of ctx as its traceparent header (replacing
// any), for a record whose value is passed on unchanged; hs itself is not modified. If
// ctx has no span context hs is returned as it is.
func Inject(ctx context.Context, hs []kafka.Header) []kafka.Header {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return hs
	}
	out := append([]kafka.Header(nil), hs...)
	propagator.Inject(ctx, HeaderCarrier{&out})
	return out
}

// Extract returns ctx continuing the trace of a record's traceparent header, or ctx
// unchanged if the record has none (or a malformed one).
func Extract(ctx context.Context, hs []kafka.Header) context.Context {
	return propagator.Extract(ctx, HeaderCarrier{&hs})
}
