// Package producer publishes events to Kafka with settings that are safe by default.
package producer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
)

// Config configures a Producer. Zero values mean the defaults documented on each field.
type Config struct {
	Brokers []string
	// BatchTimeout bounds how long a write waits for more messages to batch with
	// (default 2ms; kafka-go's own default of 1s would add a second to every chat message).
	BatchTimeout time.Duration
	// BatchSize caps messages per batch (default 500).
	BatchSize int
	// MaxAttempts bounds retries of a failed write, e.g. while a leader moves (default 10).
	MaxAttempts int
	// WriteTimeout bounds one attempt (default 10s).
	WriteTimeout time.Duration
	// Shards is the number of kafka-go Writers keys are spread over (default 8). A kafka-go
	// Writer sends one batch per partition at a time and never merges the batches queued
	// behind it, so under load a partition moves one small batch per produce round trip;
	// several writers, each owning a fixed share of the keys, keep that many batches in
	// flight per partition while every key still goes through exactly one writer in order.
	Shards int
	Logger *slog.Logger
}

// Producer writes keyed messages with acks=all. It is safe for concurrent use; concurrent
// Publish calls are batched together.
type Producer struct {
	shards []*kafka.Writer
}

// New returns a producer. Partitioning uses Murmur2 on the key, the Java client's default
// partitioner, so a room lands on the same partition whichever client (ours, Kafka's
// console tools, a Kafka Streams job) writes it, and one room keeps one total order.
func New(cfg Config) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("producer: no brokers configured")
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = 2 * time.Millisecond
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 8
	}
	p := &Producer{}
	for range cfg.Shards {
		p.shards = append(p.shards, newWriter(cfg))
	}
	return p, nil
}

func newWriter(cfg Config) *kafka.Writer {
	w := &kafka.Writer{
		Addr:                   kafka.TCP(cfg.Brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           cfg.BatchTimeout,
		BatchSize:              cfg.BatchSize,
		MaxAttempts:            cfg.MaxAttempts,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		WriteTimeout:           cfg.WriteTimeout,
		AllowAutoTopicCreation: false,
		// Asynchronous, so that a call returns once its messages are queued in order and
		// waits (or not: PublishAsync) on its own; completed reports each batch's result.
		Async:       true,
		Completion:  completed,
		Compression: kafka.Lz4,
	}
	if cfg.Logger != nil {
		w.ErrorLogger = kafka.LoggerFunc(func(msg string, args ...any) {
			cfg.Logger.Warn(fmt.Sprintf(msg, args...), "component", "kafka-writer")
		})
	}
	return w
}

// Message builds a Kafka message for an event: the envelope as JSON value, the key, and the
// CloudEvents attributes as headers so that tools (Kafka UI) can filter without decoding.
func Message(topic, key string, e event.Envelope) (kafka.Message, error) {
	value, err := event.Encode(e)
	if err != nil {
		return kafka.Message{}, err
	}
	hs := event.Headers(e)
	headers := make([]kafka.Header, len(hs))
	for i, h := range hs {
		headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	return kafka.Message{Topic: topic, Key: []byte(key), Value: value, Headers: headers}, nil
}

// Publish encodes and writes events to topic under key, returning once every replica in
// the ISR has them (or an error: nothing is reported written that was not).
func (p *Producer) Publish(ctx context.Context, topic, key string, events ...event.Envelope) error {
	msgs, err := messages(topic, key, events)
	if err != nil {
		return err
	}
	return p.Write(ctx, msgs...)
}

// PublishAsync is Publish without the wait: the events are queued for their partition
// before it returns, so calls made one after another keep their order within a key, and
// done is called once, from another goroutine, when all are acknowledged or with the first
// error. An error returned here means nothing was queued and done is not called.
func (p *Producer) PublishAsync(ctx context.Context, topic, key string, done func(error), events ...event.Envelope) error {
	msgs, err := messages(topic, key, events)
	if err != nil {
		return err
	}
	return p.Enqueue(ctx, done, msgs...)
}

func messages(topic, key string, events []event.Envelope) ([]kafka.Message, error) {
	msgs := make([]kafka.Message, len(events))
	for i, e := range events {
		m, err := Message(topic, key, e)
		if err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	return msgs, nil
}

// Write writes prepared messages (each with its Topic set). Messages with the same key keep
// their order; the call returns when all are acknowledged or one failed.
func (p *Producer) Write(ctx context.Context, msgs ...kafka.Message) error {
	result := make(chan error, 1)
	if err := p.Enqueue(ctx, func(err error) { result <- err }, msgs...); err != nil {
		return err
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		// The messages may still be written: the caller must treat them as unknown.
		return ctx.Err()
	}
}

// Enqueue queues prepared messages and returns; see PublishAsync.
func (p *Producer) Enqueue(ctx context.Context, done func(error), msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		done(nil)
		return nil
	}
	c := &completion{done: done}
	c.pending.Store(int32(len(msgs)))
	groups := make(map[int][]kafka.Message, 1)
	order := make([]int, 0, 1)
	for _, m := range msgs {
		m.WriterData = c
		i := p.shardOf(m.Key)
		if _, ok := groups[i]; !ok {
			order = append(order, i)
		}
		groups[i] = append(groups[i], m)
	}
	for n, i := range order {
		if err := p.shards[i].WriteMessages(ctx, groups[i]...); err != nil {
			err = wrapWriteErr(err)
			if n == 0 {
				return err // nothing queued
			}
			// Some groups are queued already: report through done, once they finish too.
			for _, g := range order[n:] {
				for range groups[g] {
					c.finish(err)
				}
			}
			return nil
		}
	}
	return nil
}

// completion counts a call's messages down as their batches finish and reports the first
// error, once, when the last one is done.
type completion struct {
	pending atomic.Int32
	mu      sync.Mutex
	err     error
	done    func(error)
}

func (c *completion) finish(err error) {
	if err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	if c.pending.Add(-1) == 0 {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		c.done(err)
	}
}

// completed is every Writer's Completion hook: each message carries its call's completion.
func completed(msgs []kafka.Message, err error) {
	err = wrapWriteErr(err)
	for _, m := range msgs {
		if c, ok := m.WriterData.(*completion); ok {
			c.finish(err)
		}
	}
}

func wrapWriteErr(err error) error {
	if err != nil {
		return fmt.Errorf("kafka write failed: %w", err)
	}
	return nil
}

// shardOf maps a key to its writer. Any stable hash keeps a key's messages in one writer;
// FNV-1a is cheap and independent of Murmur2, which places the key on a partition.
func (p *Producer) shardOf(key []byte) int {
	if len(p.shards) == 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(len(p.shards)))
}

// Close flushes pending writes and releases connections.
func (p *Producer) Close() error {
	var errs []error
	for _, w := range p.shards {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}
