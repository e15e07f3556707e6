package consumer

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/tracing"
)

func noEnd(*error) {}

// startSpans starts one consumer span per message, each a child of its record's
// traceparent header, and records it in Message.Trace; the returned function ends them
// all with the outcome in *err. Every runner calls it around the handling of a batch, so
// that every consumer continues the traces of what it reads without a line of its own.
// With tracing off it does nothing and allocates nothing.
func startSpans(ctx context.Context, consumerName string, ms []*Message) func(*error) {
	if !tracing.Enabled() || len(ms) == 0 {
		return noEnd
	}
	spans := make([]trace.Span, len(ms))
	for i, m := range ms {
		attrs := []attribute.KeyValue{
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", m.Topic),
			attribute.String("messaging.consumer.group.name", consumerName),
			attribute.Int("messaging.destination.partition.id", m.Partition),
			attribute.Int64("messaging.kafka.offset", m.Offset),
		}
		if m.Event.ID != "" {
			attrs = append(attrs, tracing.EventAttrs(m.Event, m.Payload)...)
		}
		_, sp := tracing.Tracer().Start(tracing.Extract(ctx, m.Headers), "process "+m.Topic,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
		m.Trace = sp.SpanContext()
		spans[i] = sp
	}
	return func(errp *error) {
		for i, sp := range spans {
			switch {
			case *errp != nil:
				sp.RecordError(*errp)
				sp.SetStatus(codes.Error, "batch not handled")
			case ms[i].DeadLettered:
				sp.SetStatus(codes.Error, "dead-lettered")
			}
			sp.End()
		}
	}
}
