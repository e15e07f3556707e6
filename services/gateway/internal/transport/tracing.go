package transport

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/tracing"
)

// Trace ties a queued frame to the trace of the event it carries: its socket write
// becomes a span, a child of Parent, with Attrs (room, seq, message id).
type Trace struct {
	Parent trace.SpanContext
	Attrs  []attribute.KeyValue
}

// TraceOf returns the Trace of a frame carrying e, delivered under ctx's span, or nil when
// tracing is off or ctx has no span.
func TraceOf(ctx context.Context, e event.Envelope, p event.Payload) *Trace {
	if !tracing.Enabled() {
		return nil
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return &Trace{Parent: sc, Attrs: tracing.EventAttrs(e, p)}
}

// traceWrites records a span per traced frame of one socket write that began at start.
// Untraced frames (every frame when tracing is off) cost a nil check.
func (c *Conn) traceWrites(items []Item, start time.Time, err error) {
	for i := range items {
		t := items[i].Trace
		if t == nil {
			continue
		}
		_, sp := tracing.Tracer().Start(trace.ContextWithSpanContext(context.Background(), t.Parent), "gateway socket write",
			trace.WithTimestamp(start), trace.WithAttributes(t.Attrs...),
			trace.WithAttributes(attribute.String("kchat.conn_id", c.id), attribute.Int("kchat.frames_in_write", len(items))))
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, "write failed")
		}
		sp.End()
	}
}
