package chat

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/tracing"
)

// TraceSend starts the span of one send (a WebSocket send frame or a REST post, named by
// via) when tracing is on: the root of the message's trace. Pass the returned context
// to Send or SendAsync, whose event then carries the span as traceparent, and call end
// with the outcome; the span records the message id once accepted. With tracing off it
// returns ctx and an end that does nothing.
func TraceSend(ctx context.Context, via string, u User, req SendRequest) (context.Context, func(protocol.Ack, error)) {
	if !tracing.Enabled() {
		return ctx, noEnd
	}
	kind := req.Kind
	if kind == "" {
		kind = "message"
	}
	ctx, sp := tracing.Tracer().Start(ctx, "gateway send", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		attribute.String("kchat.via", via),
		attribute.String(tracing.AttrRoom, req.Room),
		attribute.String(tracing.AttrClientMsgID, req.ClientMsgID),
		attribute.String(tracing.AttrUser, u.ID),
		attribute.String("kchat.kind", kind),
	))
	return ctx, func(ack protocol.Ack, err error) {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, "send refused")
		} else {
			sp.SetAttributes(attribute.String(tracing.AttrMessageID, ack.MessageID), attribute.String("kchat.ack", ack.Status))
			if ack.Seq > 0 {
				sp.SetAttributes(attribute.Int64(tracing.AttrSeq, ack.Seq))
			}
		}
		sp.End()
	}
}

func noEnd(protocol.Ack, error) {}
