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

// Recover turns a handler panic into an error, so one bad message cannot crash the service.
func Recover() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
				}
			}()
			return next(ctx, m)
		}
	}
}

// Retry calls the handler again with exponential backoff. Zero fields mean defaults.
type Retry struct {
	MaxAttempts     int           // default 5
	InitialInterval time.Duration // default 100ms
	MaxInterval     time.Duration // default 5s
	// ShouldRetry decides per error; default: everything except ErrPermanent.
	ShouldRetry func(error) bool
	Logger      *slog.Logger
}

// Middleware returns the retrying middleware.
func (r Retry) Middleware(next Handler) Handler {
	if r.MaxAttempts == 0 {
		r.MaxAttempts = 5
	}
	if r.InitialInterval == 0 {
		r.InitialInterval = 100 * time.Millisecond
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = 5 * time.Second
	}
	if r.ShouldRetry == nil {
		r.ShouldRetry = func(err error) bool { return !errors.Is(err, ErrPermanent) }
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, m *Message) error {
		delay := r.InitialInterval
		for {
			m.Attempt++
			err := next(ctx, m)
			if err == nil || m.Attempt >= r.MaxAttempts || !r.ShouldRetry(err) {
				return err
			}
			r.Logger.Warn("handler failed, retrying", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
				"event_id", m.Event.ID, "attempt", m.Attempt, "error", err)
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(delay):
			}
			delay = min(delay*2, r.MaxInterval)
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

// DeadLetter publishes a message whose handler failed for good to topic, with its original
// key, value and headers plus the reason, origin and attempt count, and then acknowledges
// it so the partition moves on. If the dead-letter write itself fails the error is
// returned and the message is not acknowledged: nothing is lost.
func DeadLetter(w Writer, topic, consumerName string, logger *slog.Logger) Middleware {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			err := next(ctx, m)
			if err == nil || ctx.Err() != nil {
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
			if werr := w.Write(ctx, dl); werr != nil {
				return fmt.Errorf("cannot dead-letter (%v) after: %w", werr, err)
			}
			logger.Error("message dead-lettered", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
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

// Middleware returns the metrics middleware for one consumer.
func (mt *Metrics) Middleware(consumerName string) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			start := time.Now()
			err := next(ctx, m)
			outcome := "ok"
			if err != nil {
				outcome = "error"
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
				logger.Warn("handler failed", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
					"event_id", m.Event.ID, "event_type", m.Event.Type, "error", err)
			} else if logger.Enabled(ctx, slog.LevelDebug) {
				logger.Debug("handled", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
					"event_id", m.Event.ID, "event_type", m.Event.Type)
			}
			return err
		}
	}
}
