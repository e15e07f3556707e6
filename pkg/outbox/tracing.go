package outbox

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/tracing"
)

// publishSpans start one producer span per record published, as a child of the record's
// own traceparent header (the span of the transaction that wrote its row): the trace of
// each message then shows when its event actually reached Kafka and who sent it, Direct
// or the relay. The header itself is left as the row has it, so that it agrees with the
// event in the record's value. nil when tracing is off.
type publishSpans []trace.Span

func startPublishSpans(ctx context.Context, publisher string, msgs []kafka.Message) publishSpans {
	if !tracing.Enabled() || len(msgs) == 0 {
		return nil
	}
	spans := make(publishSpans, len(msgs))
	for i, m := range msgs {
		attrs := []attribute.KeyValue{
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", m.Topic),
			attribute.String("kchat.publisher", publisher),
		}
		for _, h := range m.Headers {
			if h.Key == event.HeaderID {
				attrs = append(attrs, attribute.String(tracing.AttrEventID, string(h.Value)))
			}
		}
		_, spans[i] = tracing.Tracer().Start(tracing.Extract(ctx, m.Headers), "publish "+m.Topic,
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	}
	return spans
}

// end ends the spans with the publish's outcome.
func (s publishSpans) end(err error) {
	for _, sp := range s {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, "publish failed")
		}
		sp.End()
	}
}
