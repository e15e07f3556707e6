package broker

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/tracing"
)

// withTrace sets e's traceparent to the span of ctx (a send's span) unless e already
// continues a trace; event.Headers then writes the same value into the record's header.
func withTrace(ctx context.Context, e event.Envelope) event.Envelope {
	if !tracing.Enabled() || e.TraceParent != "" {
		return e
	}
	e.TraceParent = tracing.TraceParent(ctx)
	return e
}

// withTraces is withTrace for several events, on a copy: the caller's stay as they are.
func withTraces(ctx context.Context, events []event.Envelope) []event.Envelope {
	if !tracing.Enabled() {
		return events
	}
	out := make([]event.Envelope, len(events))
	for i, e := range events {
		out[i] = withTrace(ctx, e)
	}
	return out
}

// startDeliverSpan starts the consumer span of a record read for delivery, a child of
// its traceparent header: the sessions' socket writes of the entry are its children. It
// returns ctx and a nil span when tracing is off.
func startDeliverSpan(ctx context.Context, m kafka.Message, e event.Envelope, p event.Payload) (context.Context, trace.Span) {
	if !tracing.Enabled() {
		return ctx, nil
	}
	attrs := append(tracing.EventAttrs(e, p),
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", m.Topic),
		attribute.Int("messaging.destination.partition.id", m.Partition),
		attribute.Int64("messaging.kafka.offset", m.Offset),
	)
	return tracing.Tracer().Start(tracing.Extract(ctx, m.Headers), "process "+m.Topic,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}
