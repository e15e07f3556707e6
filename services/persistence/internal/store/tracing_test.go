package store_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/tracing"
	"github.com/kchat/kchat/services/persistence/internal/chattest"
)

// With tracing on, each stored event gets a span around the batch's transaction, a child
// of its consumer span, with the seq it got; its message.stored, in the outbox row's
// value and headers alike, carries that span, so whoever publishes the row continues the
// trace. With tracing off the stored event keeps the submitted one's traceparent.
func TestHandleBatch_tracing(t *testing.T) {
	st, pool := newStore(t)
	consumerSpan := trace.SpanContextFromContext(tracing.ContextWithTraceParent(context.Background(),
		"00-11111111111111111111111111111111-2222222222222222-01"))

	exp := tracetest.NewInMemoryExporter()
	restore := tracing.Use(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	on := chattest.Message(t, "room-a", "u-alice", "traced", "hi")
	ms := chattest.Consumed(t, on)
	ms[0].Trace = consumerSpan
	err := st.HandleBatch(context.Background(), ms)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	off := chattest.Message(t, "room-a", "u-alice", "untraced", "hi")
	if err := st.HandleBatch(context.Background(), chattest.Consumed(t, off)); err != nil {
		t.Fatal(err)
	}

	var span *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "persistence store" {
			span = &s
		}
	}
	if span == nil {
		t.Fatalf("no persistence store span among %d", len(exp.GetSpans()))
	}
	if !span.Parent.Equal(consumerSpan) {
		t.Errorf("parent %v, want the consumer span %v", span.Parent, consumerSpan)
	}
	attrs := map[string]string{}
	for _, a := range span.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs[tracing.AttrSeq] != "1" || attrs[tracing.AttrRoom] != "room-a" || attrs[tracing.AttrMessageID] != on.ID {
		t.Errorf("span attributes %v", attrs)
	}

	for _, tc := range []struct {
		name string
		id   string
		want string
	}{
		{"tracing on: the transaction's span", on.ID, tracing.FormatTraceParent(span.SpanContext)},
		{"tracing off: the submitted event's", off.ID, off.TraceParent},
	} {
		var header string
		var payload []byte
		if err := pool.QueryRow(context.Background(),
			`SELECT headers->>'traceparent', payload FROM outbox WHERE convert_from(payload, 'UTF8')::jsonb->'data'->>'message_id' = $1`, tc.id).
			Scan(&header, &payload); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		e, err := event.Decode(payload)
		if err != nil {
			t.Fatal(err)
		}
		if header != tc.want || e.TraceParent != tc.want {
			t.Errorf("%s: header %q, envelope %q, want %q", tc.name, header, e.TraceParent, tc.want)
		}
	}
}
