package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
)

// Decode parses the CloudEvents envelope into m.Event. Garbage, an unknown type or an
// invalid event is permanent: retrying cannot make it parse.
func Decode() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			if err := decodeInto(m); err != nil {
				return err
			}
			return next(ctx, m)
		}
	}
}

// Recover turns a handler panic into a permanent error, so one bad message cannot crash
// the service: a panic is a bug that the same message triggers again on every retry.
func Recover() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = Permanent(fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack()))
				}
			}()
			return next(ctx, m)
		}
	}
}

// Retry calls the handler again after a transient failure, with exponential backoff and
// jitter, until it succeeds: a transient failure (see IsPermanent) is never given up on,
// so that a message is dead-lettered for what it is and not for how long a dependency was
// down. A permanent failure is returned at once. While it retries, the runner fetches
// nothing new (at most one batch waits, fetched ahead), so the partition keeps its order.
// Retrying ends early only when ctx ends or the runner shuts down; the message is then
// left uncommitted and redelivered. Zero fields mean defaults.
//
// m.Attempt counts the handler's invocations for the message, whichever path (a whole
// batch, the isolation of one message, a runner without batches) it took.
type Retry struct {
	InitialInterval time.Duration // default 100ms
	MaxInterval     time.Duration // default 10s
	// ShouldRetry decides per error; default: everything not permanent (IsPermanent).
	ShouldRetry func(error) bool
	Logger      *slog.Logger
}

// Middleware returns the retrying middleware.
func (r Retry) Middleware(next Handler) Handler {
	if r.InitialInterval == 0 {
		r.InitialInterval = 100 * time.Millisecond
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = 10 * time.Second
	}
	if r.ShouldRetry == nil {
		r.ShouldRetry = func(err error) bool { return !IsPermanent(err) }
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, m *Message) error {
		b := backoff.New(r.InitialInterval, r.MaxInterval)
		for {
			m.Attempt++
			err := next(ctx, m)
			if err == nil || !r.ShouldRetry(err) || ctx.Err() != nil {
				return err
			}
			d := b.Next()
			r.Logger.Warn("handler failed transiently, retrying", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
				"event_id", m.Event.ID, "attempt", m.Attempt, "retry_in", d, "error", err)
			if werr := wait(ctx, d); werr != nil {
				return errors.Join(err, werr)
			}
		}
	}
}

// Writer is what DeadLetter needs from a producer.
type Writer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Dead-letter headers, added to the original ones.
const (
	HeaderDLQReason    = "dlq_reason"
	HeaderDLQTopic     = "dlq_topic"
	HeaderDLQPartition = "dlq_partition"
	HeaderDLQOffset    = "dlq_offset"
	HeaderDLQAttempts  = "dlq_attempts"
	HeaderDLQConsumer  = "dlq_consumer"
)

// DeadLetter publishes a message whose handler failed permanently (IsPermanent) to topic,
// with its original key, value and headers plus the reason, origin and attempt count, and
// then acknowledges it so the partition moves on. A transient failure is returned as it
// is, never dead-lettered. A failed dead-letter write (a broker down, a topic not yet
// known to the producer) is retried with backoff until it succeeds, without running the
// handler again; only a shutdown ends it, with an error: the message is not acknowledged
// and nothing is lost.
func DeadLetter(w Writer, topic, consumerName string, logger *slog.Logger) Middleware {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			err := next(ctx, m)
			if err == nil || ctx.Err() != nil || !IsPermanent(err) {
				return err
			}
			headers := append([]kafka.Header{}, m.Headers...)
			headers = append(headers,
				kafka.Header{Key: HeaderDLQReason, Value: []byte(err.Error())},
				kafka.Header{Key: HeaderDLQTopic, Value: []byte(m.Topic)},
				kafka.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(m.Partition))},
				kafka.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
				kafka.Header{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(max(m.Attempt, 1)))},
				kafka.Header{Key: HeaderDLQConsumer, Value: []byte(consumerName)},
			)
			dl := kafka.Message{Topic: topic, Key: m.Key, Value: m.Value, Headers: headers}
			b := backoff.New(100*time.Millisecond, 10*time.Second)
			for {
				werr := w.Write(ctx, dl)
				if werr == nil {
					break
				}
				d := b.Next()
				logger.Warn("dead-letter write failed, retrying", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
					"event_id", m.Event.ID, "dlq", topic, "retry_in", d, "error", werr)
				if serr := wait(ctx, d); serr != nil {
					// Not wrapping err: the message is not dead-lettered, and this is no
					// reason to run its handler again.
					return fmt.Errorf("cannot dead-letter (%v; %v) after: %v", werr, serr, err)
				}
			}
			m.DeadLettered = true
			logger.ErrorContext(m.Context(ctx), "message dead-lettered", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
				"event_id", m.Event.ID, "attempts", m.Attempt, "error", err, "dlq", topic)
			return nil
		}
	}
}

// Metrics counts handled messages and observes handler latency, labelled by consumer and outcome.
type Metrics struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lag      *prometheus.GaugeVec
}

// NewMetrics registers the consumer metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_consumer_messages_total", Help: "Messages handled, by consumer, topic and outcome.",
		}, []string{"consumer", "topic", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kchat_consumer_handle_seconds", Help: "Handler latency.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"consumer", "topic"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kchat_consumer_lag", Help: "Messages behind the end of the log, as last reported by the reader.",
		}, []string{"consumer", "topic"}),
	}
	if reg != nil {
		reg.MustRegister(m.handled, m.duration, m.lag)
	}
	return m
}

// Outcomes of kchat_consumer_messages_total. Middleware outside DeadLetter sees a
// dead-lettered message as acknowledged; it is counted apart because the alert on dead
// letters (deploy/prometheus/rules) reads it.
const (
	OutcomeOK           = "ok"
	OutcomeError        = "error"
	OutcomeDeadLettered = "dead_lettered"
)

// Expect creates consumerName's series for topics at zero. A counter series that first
// appears at 1 has no increase in PromQL, so without this the first dead letter after a
// start would raise no alert.
func (mt *Metrics) Expect(consumerName string, topics ...string) {
	for _, t := range topics {
		for _, o := range []string{OutcomeOK, OutcomeError, OutcomeDeadLettered} {
			mt.handled.WithLabelValues(consumerName, t, o)
		}
	}
}

// Middleware returns the metrics middleware for one consumer.
func (mt *Metrics) Middleware(consumerName string) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			start := time.Now()
			err := next(ctx, m)
			outcome := OutcomeOK
			switch {
			case err != nil:
				outcome = OutcomeError
			case m.DeadLettered:
				outcome = OutcomeDeadLettered
			}
			mt.handled.WithLabelValues(consumerName, m.Topic, outcome).Inc()
			mt.duration.WithLabelValues(consumerName, m.Topic).Observe(time.Since(start).Seconds())
			return err
		}
	}
}

// Logging logs each message at debug level and failures at warn, with the event id.
func Logging(logger *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			err := next(ctx, m)
			if err != nil {
				logger.WarnContext(m.Context(ctx), "handler failed", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
					"event_id", m.Event.ID, "event_type", m.Event.Type, "error", err)
			} else if logger.Enabled(ctx, slog.LevelDebug) {
				logger.DebugContext(m.Context(ctx), "handled", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
					"event_id", m.Event.ID, "event_type", m.Event.Type)
			}
			return err
		}
	}
}
