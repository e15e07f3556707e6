package consumer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/tracing"
)

const parentTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func tracedBatch(t testing.TB, n int) []*Message {
	t.Helper()
	ms := make([]*Message, n)
	for i := range ms {
		p := event.MessageStored{RoomID: "r1", Seq: int64(i + 1), Kind: event.KindMessage, MessageID: "0190a5f0-0000-7000-8000-000000000001",
			Sender: "u1", SenderName: "ann", Text: "hi", RoomKind: event.RoomKindRoom, SentAt: time.Now().UTC(), StoredAt: time.Now().UTC()}
		e, err := event.New("kchat/test", p, event.WithTraceParent(parentTP))
		if err != nil {
			t.Fatal(err)
		}
		var hs []kafka.Header
		for _, h := range event.Headers(e) {
			hs = append(hs, kafka.Header{Key: h.Key, Value: h.Value})
		}
		ms[i] = &Message{Topic: "chat.stored", Partition: 1, Offset: int64(i), Headers: hs, Event: e, Payload: p}
	}
	return ms
}

// Each message gets a consumer span, a child of its header's traceparent, describing the
// event; Message.Context continues from it; a failed batch marks every span.
func TestStartSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tracing.Use(tp)()

	ms := tracedBatch(t, 2)
	err := errors.New("db down")
	startSpans(context.Background(), "persistence", ms)(&err)
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for i, s := range spans {
		if got := tracing.FormatTraceParent(s.Parent); got != parentTP {
			t.Errorf("span %d parent %s, want %s", i, got, parentTP)
		}
		if s.SpanKind != trace.SpanKindConsumer || s.Name != "process chat.stored" || s.Status.Description != "batch not handled" {
			t.Errorf("span %d: %s %v %v", i, s.Name, s.SpanKind, s.Status)
		}
		attrs := map[string]string{}
		for _, a := range s.Attributes {
			attrs[string(a.Key)] = a.Value.Emit()
		}
		if attrs[tracing.AttrRoom] != "r1" || attrs[tracing.AttrSeq] != []string{"1", "2"}[i] ||
			attrs[tracing.AttrMessageID] == "" || attrs["messaging.consumer.group.name"] != "persistence" {
			t.Errorf("span %d attributes %v", i, attrs)
		}
		if !ms[i].Trace.Equal(s.SpanContext) {
			t.Errorf("message %d Trace %v, want its span %v", i, ms[i].Trace, s.SpanContext)
		}
		if got := trace.SpanContextFromContext(ms[i].Context(context.Background())); !got.Equal(s.SpanContext) {
			t.Errorf("message %d Context carries %v", i, got)
		}
	}
}

// With tracing off a batch costs nothing: no span, no allocation, no Trace.
func TestStartSpans_off(t *testing.T) {
	ms := tracedBatch(t, 100)
	var err error
	if n := testing.AllocsPerRun(100, func() { startSpans(context.Background(), "persistence", ms)(&err) }); n != 0 {
		t.Fatalf("%v allocations per batch with tracing off", n)
	}
	if ms[0].Trace.IsValid() || ms[0].Context(context.Background()) != context.Background() {
		t.Fatal("a trace without tracing")
	}
}

// BenchmarkStartSpans is the consumer's per-batch tracing cost (100 messages), off and on
// (SDK with a batching exporter that drops everything, so export is not measured).
func BenchmarkStartSpans(b *testing.B) {
	ms := tracedBatch(b, 100)
	var err error
	b.Run("off", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			startSpans(context.Background(), "persistence", ms)(&err)
		}
	})
	b.Run("on", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer tp.Shutdown(context.Background())
		defer tracing.Use(tp)()
		b.ReportAllocs()
		for b.Loop() {
			startSpans(context.Background(), "persistence", ms)(&err)
		}
	})
}
