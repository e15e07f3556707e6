package store

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/tracing"
)

// txSpans are the spans of one batch transaction, one per event: a batch mixes the
// traces of many messages, and each message's trace should show the transaction that
// stored it (with the seq it got). Each is a child of its event's consumer span, and the
// event's message.stored (its outbox row, so whichever of Direct and the relay publishes
// it) carries it as traceparent: the stored event's consumers continue from it.
type txSpans struct {
	spans   []trace.Span
	byEvent map[string]trace.Span
}

// startTxSpans starts the spans and sets each item's traceParent; nil when tracing is off.
func startTxSpans(ctx context.Context, items []item) *txSpans {
	if !tracing.Enabled() || len(items) == 0 {
		return nil
	}
	t := &txSpans{spans: make([]trace.Span, len(items)), byEvent: make(map[string]trace.Span, len(items))}
	for i := range items {
		it := &items[i]
		_, sp := tracing.Tracer().Start(trace.ContextWithSpanContext(ctx, it.trace), "persistence store",
			trace.WithAttributes(
				attribute.String(tracing.AttrRoom, it.room),
				attribute.String(tracing.AttrMessageID, it.env.ID),
				attribute.String(tracing.AttrEventID, it.env.ID),
				attribute.Int("kchat.batch_size", len(items)),
			))
		it.traceParent = tracing.FormatTraceParent(sp.SpanContext())
		t.spans[i] = sp
		t.byEvent[it.env.ID] = sp
	}
	return t
}

// end records each stored event's seq and the transaction's outcome, and ends the spans.
func (t *txSpans) end(res result, err error) {
	if t == nil {
		return
	}
	for _, e := range res.stored {
		if sp := t.byEvent[e.eventID]; sp != nil {
			sp.SetAttributes(attribute.Int64(tracing.AttrSeq, e.seq), attribute.String("kchat.kind", e.kind))
		}
	}
	for _, sp := range t.spans {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, "transaction failed")
		}
		sp.End()
	}
}
