// Package consumer runs Kafka consumers in the shape of a router: a handler is a plain
// function of one message; retries, dead-lettering, panic recovery, decoding, metrics and
// logging are middleware around it, written once here.
//
// Delivery is at-least-once: a message's offset is committed only after its handler
// returned nil (or it was dead-lettered), so handlers must be idempotent.
package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/event"
)

// Message is one Kafka record on its way through the middleware chain.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []kafka.Header
	Time      time.Time
	// Event is the decoded envelope, set by the Decode middleware.
	Event event.Envelope
	// Payload is Event's decoded and validated data, set with Event by the Decode
	// middleware, so that a handler need not decode it again.
	Payload event.Payload
	// Attempt counts handler invocations for this message, starting at 1.
	Attempt int
	// DeadLettered is set by DeadLetter once the message is on the dead-letter topic, so
	// that middleware outside it can tell a dead-lettered message from a handled one.
	DeadLettered bool
	// Trace is the consumer span the runner started for this message (a child of its
	// traceparent header) when tracing is on (pkg/tracing); invalid when it is off. A
	// batch handler continues a message's trace with Context.
	Trace trace.SpanContext
}

// Context returns ctx positioned at the message's consumer span, so that spans started
// from it and events built with tracing.TraceParent of it continue the message's trace.
// With tracing off it returns ctx itself.
func (m *Message) Context(ctx context.Context) context.Context {
	if !m.Trace.IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, m.Trace)
}

func fromKafka(m kafka.Message) *Message {
	return &Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: m.Headers, Time: m.Time}
}

// Handler processes one message. Returning nil acknowledges it.
type Handler func(ctx context.Context, m *Message) error

// BatchHandler processes messages fetched together, e.g. in one database transaction.
// Returning nil acknowledges all of them.
type BatchHandler func(ctx context.Context, ms []*Message) error

// Middleware wraps a handler.
type Middleware func(Handler) Handler

// Chain applies middleware so that the first one listed is the outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// ErrPermanent marks an error that no retry can fix (a malformed message, a schema
// violation, a broken rule): Retry gives up at once and DeadLetter dead-letters the message.
//
// Whether a failure is permanent is decided once, where the error arises, never by
// counting attempts: everything not marked is transient (a database or broker that is
// down, a timeout) and is retried until it succeeds, because dead-lettering an accepted
// message because a dependency blinked would lose it.
var ErrPermanent = errors.New("permanent failure")

type permanent struct{ err error }

func (p permanent) Error() string        { return p.err.Error() }
func (p permanent) Unwrap() []error      { return []error{p.err, ErrPermanent} }
func (p permanent) Is(target error) bool { return target == ErrPermanent }

// Permanent wraps err so that errors.Is(err, ErrPermanent) and IsPermanent hold.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked permanent at its source: wrapped by
// Permanent, or with an error in its chain that has a method Permanent() bool returning
// true (pkg/event's decoding and validation errors have one, as that package cannot import
// this one). Every other error is transient.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrPermanent) {
		return true
	}
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}
